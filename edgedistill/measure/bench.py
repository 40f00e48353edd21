"""Measure a bundle against the ways a user could otherwise run the same model, side by side.

Variants (each loaded once per thread count, all with the same number of threads):
  torch-fp32    the stripped student in PyTorch, eager, as transformers loads it (the baseline)
  torch-int8    torch.ao.quantization.quantize_dynamic on its nn.Linear layers (what a torch user tries first)
  ort-fp32      a plain optimum export of the same student, ONNX Runtime with default session options
  optimum-int8  optimum's stock dynamic INT8 recipe for this CPU, on that plain export (what a HF user picks)
  bundle        the edgedistill bundle, through edgedistill.runtime

How it measures, and why:
- The timed call is the model alone on pre-tokenized inputs of exactly (batch, seq) tokens: every
  position holds real text (inputs from --data are packed end to end), since tokenization is the same
  for every variant and padding would flatter none of them.
- Variants are interleaved: per shape, each gets a time slice in turn, round after round, until each
  has run --min-time seconds and --min-iters calls, so a noisy neighbour hits all of them alike.
  Warm-up calls are not counted.
- Memory and cold start come from a fresh process per variant (`python -m edgedistill.measure.bench --child`):
  spawn -> imports -> load -> first prediction from text is the cold start, and the process's peak RSS
  after it also ran the largest shape is the memory figure.
- Accuracy is each variant's own predictions on --data against the task's gold field.

Inputs, timing, the fresh-process protocol and answer comparison are the torch-free core's
(edgedistill/edge/: feeds, timing, process, answers), which the device kit export/run_bundle.py runs
too. This module imports only the standard library, numpy and that core at the top, so the child
process that measures the bundle never pays for torch.
"""

from __future__ import annotations

import gc
import inspect
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from ..data import Example, load_examples
from ..edge.answers import accuracy
from ..edge.expressions import choices_for
from ..edge.families import FAMILIES
from ..edge.feeds import DEFAULT_CHOICES, encode_examples, fit, load_tokenizer, shape_feeds, synthetic_texts
from ..edge.process import child_entry, child_measure, fresh_for_threads, measured_fields
from ..edge.process import fresh_process as spawn_child
from ..edge.timing import summarize, time_interleaved
from ..errors import UserError
from ..model_dir import weights_bytes
from ..task import TaskSpec, task_from_dict

VARIANTS = {
    "torch-fp32": "PyTorch FP32 eager: the stripped student as transformers loads it",
    "torch-int8": "PyTorch dynamic INT8: torch.ao.quantization.quantize_dynamic(nn.Linear, qint8)",
    "ort-fp32": "ONNX Runtime FP32: plain optimum export, default session options",
    "optimum-int8": "optimum default INT8: ORTQuantizer + AutoQuantizationConfig.<cpu preset>(is_static=False)",
    "bundle": "edgedistill bundle: optimized + INT8 ONNX via edgedistill.runtime",
}
BASELINE = "torch-fp32"
SCHEMA_VERSION = 1
TIMED_CALL = (
    "model forward on pre-tokenized inputs of exactly batch x seq real tokens (tokenization excluded)",
    "encoder forward + first decoder step on pre-tokenized inputs of exactly batch x seq real tokens "
    "(tokenization and the rest of generation excluded; accuracy uses full greedy generation)",
)
# optimum's AutoQuantizationConfig recipe for each preset of edgedistill.edge.machine.isa_preset. optimum
# has no avx_vnni recipe: its avx512_vnni one (signed weights, full range, no reduce_range) is the
# VNNI recipe, and VNNI's dot product is the same on 256-bit vectors.
OPTIMUM_RECIPE = {
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx512_vnni",
    "avx512": "avx512",
    "avx2": "avx2",
    "arm64": "arm64",
}


@dataclass
class BenchConfig:
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32])
    seq_lens: list[int] = field(default_factory=lambda: [32, 128, 256])
    threads: list[int] = field(default_factory=lambda: [2])
    min_time: float = 2.0  # seconds of timed calls per variant and shape, at least
    min_iters: int = 10  # timed calls per variant and shape, at least
    warmup: float = 0.3  # seconds of untimed calls per variant and shape (and at least 2 calls)
    limit: int | None = 500  # examples of --data used for accuracy (None: all)
    fresh_process: bool = True  # measure peak RSS and cold start in a new process per variant
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    seed: int = 0


# ---------------------------------------------------------------------------------------------
# Variants: everything a runner needs is in a plain dict of paths, so a child process can load it too.


class Runner:
    """One loaded variant. `prepare` converts numpy feeds once per shape; `call` is the timed op."""

    name = "?"

    max_new_tokens = 32  # seq2seq answers: greedy, at most this many tokens
    # Items per call in the accuracy pass: 1 for dynamic INT8, whose answer to an item depends on the
    # items beside it (edge.runtime.answer_batch_size), so each variant answers as an app calls it.
    batch_size = 32

    def __init__(self, family: str, labels, tok, max_length: int):
        self.family, self.labels, self.tok, self.max_length = family, labels, tok, max_length

    def prepare(self, feeds):
        return feeds

    def call(self, x):
        raise NotImplementedError

    def logits(self, feeds) -> np.ndarray:
        raise NotImplementedError

    def predict(self, examples, batch_size: int | None = None) -> list[str]:
        out = []
        batch_size = batch_size or self.batch_size
        for i in range(0, len(examples), batch_size):
            chunk = examples[i : i + batch_size]
            if self.family == "multiple-choice":  # group by number of choices so each batch stacks
                groups: dict[int, list] = {}
                for e in chunk:
                    groups.setdefault(len(e.choices), []).append(e)
                preds = {}
                for group in groups.values():
                    best = (
                        self.logits(encode_examples(self.tok, self.family, group, self.max_length))
                        .reshape(len(group), -1)
                        .argmax(-1)
                    )
                    preds.update({id(e): e.choices[int(b)] for e, b in zip(group, best)})
                out += [preds[id(e)] for e in chunk]
            else:
                best = self.logits(encode_examples(self.tok, self.family, chunk, self.max_length)).argmax(-1)
                out += [self.labels[int(b)] for b in best]
        return out


class TorchRunner(Runner):
    def __init__(self, model, *args):
        super().__init__(*args)
        self.model = model
        self.names = [
            n
            for n in ("input_ids", "attention_mask", "token_type_ids")
            if n in inspect.signature(model.forward).parameters
        ]

    def prepare(self, feeds):
        # deferred: the fresh-process child imports this module and loads only its variant's libraries
        import torch

        x = {k: torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in self.names if k in feeds}
        if self.family == "seq2seq":  # the timed call: encoder + first decoder step, as EdgeModel.run does
            x["decoder_input_ids"] = torch.full((x["input_ids"].shape[0], 1), self.model.config.decoder_start_token_id)
        return x

    def predict(self, examples, batch_size: int | None = None) -> list[str]:
        batch_size = batch_size or self.batch_size
        if self.family != "seq2seq":
            return super().predict(examples, batch_size)
        # deferred: the fresh-process child imports this module and loads only its variant's libraries
        import torch

        out = []
        for i in range(0, len(examples), batch_size):
            x = self.prepare(encode_examples(self.tok, self.family, examples[i : i + batch_size], self.max_length))
            x.pop("decoder_input_ids")
            with torch.inference_mode():
                gen = self.model.generate(**x, do_sample=False, num_beams=1, max_new_tokens=self.max_new_tokens)
            out += [self.tok.decode([int(t) for t in row], skip_special_tokens=True).strip() for row in gen]
        return out

    def call(self, x):
        # deferred: the fresh-process child imports this module and loads only its variant's libraries
        import torch

        with torch.inference_mode():
            return self.model(**x).logits

    def logits(self, feeds):
        return self.call(self.prepare(feeds)).float().numpy()


class OrtRunner(Runner):
    def __init__(self, session, *args):
        super().__init__(*args)
        self.session = session
        self.inputs = [(i.name, i.shape) for i in session.get_inputs()]

    def prepare(self, feeds):
        return fit(feeds, [n for n, _ in self.inputs])

    def call(self, x):
        return self.session.run(None, x)[0]

    def logits(self, feeds):
        return self.call(self.prepare(feeds))


class BundleRunner(Runner):
    """The bundle through its own runtime: feeds go to EdgeModel.run, predictions to EdgeModel.predict."""

    def __init__(self, model, *args):
        super().__init__(*args)
        self.model = model
        self.input_names = model.input_names  # what its graph takes (e.g. no token_type_ids)
        self.batch_size = getattr(model, "batch_size", 32)  # a bundle exported before answer_batch_size: as it ran then

    def prepare(self, feeds):
        return fit(feeds, self.input_names)

    def call(self, x):
        return self.model.run(x)

    def logits(self, feeds):
        return np.asarray(self.call(self.prepare(feeds)))

    def predict(self, examples, batch_size: int | None = None) -> list[str]:
        batch_size = batch_size or self.batch_size
        items = [e.row if e.row is not None else e.input for e in examples]
        if self.family == "seq2seq":  # same answer budget as the torch variants
            return [
                a.strip()
                for i in range(0, len(items), batch_size)
                for a in self.model.generate(items[i : i + batch_size], max_new_tokens=self.max_new_tokens)
            ]
        preds = self.model.predict(items, batch_size=batch_size)
        return [p.get("label", p.get("answer")) for p in preds]


def ort_session(path, threads: int):
    # deferred: the fresh-process child imports this module and loads only its variant's libraries
    import onnxruntime as ort

    so = ort.SessionOptions()  # defaults, except the thread count every variant shares
    so.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def load_variant(name: str, paths: dict, threads: int) -> Runner:
    """Load one variant from the files `prepare_variants` made. Imports only what that variant needs."""
    family, max_length = paths["family"], paths["max_length"]
    tok = load_tokenizer(paths["tokenizer"])
    labels = paths.get("labels")
    if name == "bundle":
        sys.path.insert(0, str(paths["bundle"]))  # a bundle carries its own runtime copy
        # deferred: the fresh-process child imports this module and loads only its variant's libraries
        try:
            from edgedistill.runtime import EdgeModel
        except ImportError:
            from edge_runtime import EdgeModel
        finally:
            sys.path.pop(0)
        return BundleRunner(EdgeModel.load(paths["bundle"], threads=threads), family, labels, tok, max_length)
    if name in ("ort-fp32", "optimum-int8"):
        return _answering(name, OrtRunner(ort_session(paths[name], threads), family, labels, tok, max_length))
    import torch

    torch.set_num_threads(threads)
    model = _torch_model(paths["torch"], family)
    if name == "torch-int8":
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    labels = (
        [model.config.id2label[i] for i in range(len(model.config.id2label))]
        if family == "sequence-classification"
        else labels
    )
    return _answering(name, TorchRunner(model, family, labels, tok, max_length))


DYNAMIC_INT8 = {
    "optimum-int8",
    "torch-int8",
}  # peers whose activations are quantized per call, as a dynamic INT8 bundle's


def _answering(name: str, runner: Runner) -> Runner:
    """The runner, answering one item per call if it is dynamic INT8 (edge.runtime.answer_batch_size's reason)."""
    if name in DYNAMIC_INT8:
        runner.batch_size = 1
    return runner


def _torch_model(path, family: str):
    # deferred: the fresh-process child imports this module and loads only its variant's libraries
    from ..distill.student import load_label_model

    return load_label_model(str(path), family).eval()


def _onnx_bytes(path: Path) -> int:
    """An ONNX model and its external data files, if any."""
    total = path.stat().st_size
    for p in path.parent.iterdir():
        if p.name.startswith(path.name + "_data") or p.name == path.name + ".data" or p.suffix == ".onnx_data":
            total += p.stat().st_size
    return total


# ---------------------------------------------------------------------------------------------
# The subject: the bundle, its manifest, and (optionally) the stripped student it came from.


@dataclass
class Subject:
    bundle: Path
    manifest: dict
    family: str
    max_length: int
    labels: list[str] | None
    task: object  # TaskSpec or None
    torch_dir: Path | None

    @property
    def tokenizer(self) -> Path:
        return self.bundle / ((self.manifest.get("tokenizer") or {}).get("file") or "tokenizer.json")


def read_subject(bundle, torch_dir=None) -> Subject:
    # deferred: the fresh-process child imports this module and loads only its variant's libraries
    from ..edge.runtime import BundleError, read_manifest

    bundle = Path(bundle)
    mpath = bundle / "manifest.json"
    try:
        manifest = read_manifest(bundle)  # the runtime's own checks: present, valid JSON, a format it reads
    except BundleError as e:
        raise UserError(str(e)) from None
    family = manifest.get("family")
    if family not in FAMILIES:
        raise UserError(f"{mpath}: family: {family!r} is not one of {', '.join(FAMILIES)}")
    task = None
    if isinstance(manifest.get("task"), dict):
        known = {f.name for f in fields(TaskSpec)} - {"source"}
        task = task_from_dict({k: v for k, v in manifest["task"].items() if k in known}, source=f"{mpath}: task")
    labels = manifest.get("labels") or (manifest.get("task") or {}).get("labels")
    if torch_dir is not None and manifest.get("static"):
        raise UserError(
            f"{bundle}: a static student's bundle (compress --into static): --torch does not apply, its torch and ORT "
            "peers are transformers; drop --torch to measure the bundle alone"
        )
    if torch_dir is not None:
        torch_dir = Path(torch_dir)
        if not (torch_dir / "config.json").exists():
            raise UserError(
                f"{torch_dir}: --torch must be a transformers model dir (the stripped student); no config.json there"
            )
        meta = torch_dir / "edgedistill.json"
        if meta.exists():
            kind = json.loads(meta.read_text()).get("kind")
            if kind == "student":
                raise UserError(
                    f"{torch_dir}: --torch is a student checkpoint; strip it first (edgedistill strip) and pass the "
                    "stripped dir"
                )
    return Subject(bundle, manifest, family, int(manifest.get("max_length") or 512), labels, task, torch_dir)


def prepare_variants(subject: Subject, names: list[str], work: Path, echo=print) -> tuple[dict, dict]:
    """Make the files each variant loads (exports, quantized copies) under `work`.

    Returns (paths for load_variant, {variant: {status, reason, size_bytes, files}}). A variant that
    cannot apply is `skipped` (no --torch; the ORT peers of a seq2seq model); one whose build raised is
    `failed`, and then no "fastest variant" claim can be made (bench_report.targets)."""
    info = {n: {"name": n, "description": VARIANTS[n], "status": "ok", "reason": None} for n in names}
    paths = {
        "family": subject.family,
        "max_length": subject.max_length,
        "labels": subject.labels,
        "tokenizer": str(subject.tokenizer),
        "bundle": str(subject.bundle),
        "torch": str(subject.torch_dir) if subject.torch_dir else None,
    }
    if "bundle" in info:
        _bundle_info(subject, info["bundle"])
    if subject.family == "seq2seq":
        for n in ("ort-fp32", "optimum-int8"):
            if n in info:
                info[n].update(
                    status="skipped",
                    reason="seq2seq: a plain ONNX export has no generation loop to predict with; "
                    "the torch variants and the bundle (whose runtime has one) are measured",
                )
    if subject.manifest.get("cascade") and "bundle" in info:
        echo(f"the bundle is a cascade: {info['bundle']['cascade']['timed']}")
    if subject.torch_dir is None:
        why = _no_peers(subject, info, echo)
        for n in names:
            if n != "bundle":
                info[n].update(status="skipped", reason=why)
        return paths, info
    if "torch-fp32" in info:
        info["torch-fp32"].update(size_bytes=weights_bytes(subject.torch_dir), files=[str(subject.torch_dir)])
    if "torch-int8" in info:
        _build(info["torch-int8"], "quantize_dynamic", lambda: _torch_int8(subject, work, info["torch-int8"]))
    ort_peers = [n for n in ("ort-fp32", "optimum-int8") if info.get(n, {}).get("status") == "ok"]
    if ort_peers:
        echo("exporting the plain ONNX FP32 peer with optimum ...")
        try:
            paths["ort-fp32"] = str(_ort_fp32(subject, work / "ort-fp32"))
            if "ort-fp32" in info:
                info["ort-fp32"].update(size_bytes=_onnx_bytes(Path(paths["ort-fp32"])), files=["model.onnx"])
        except Exception as e:  # noqa: BLE001 - a peer that cannot be built is reported, not fatal
            for n in ort_peers:
                info[n].update(status="failed", reason=f"optimum export failed: {type(e).__name__}: {e}")
    if info.get("optimum-int8", {}).get("status") == "ok":
        _build(
            info["optimum-int8"],
            "optimum quantization",
            lambda: paths.update(
                {"optimum-int8": str(_optimum_int8(work / "ort-fp32", work, info["optimum-int8"], echo))}
            ),
        )
    return paths, info


def _no_peers(subject: Subject, info: dict, echo) -> str:
    """Why the peers are skipped without --torch; says so of a static student's bundle."""
    if subject.manifest.get("static"):
        echo("measuring the bundle alone: the torch/ORT peers do not apply to a static student (no transformer)")
        return "a static student (compress --into static): no transformer to run in torch or ORT"
    return "needs --torch STUDENT_DIR (the stripped student) to build this variant"


def _build(info: dict, what: str, fn) -> None:
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - e.g. no quantized engine on this CPU: report, don't die
        info.update(status="failed", reason=f"{what} failed: {type(e).__name__}: {e}")


def _bundle_info(subject: Subject, info: dict) -> None:
    # deferred: the fresh-process child imports this module and loads only its variant's libraries
    from ..edge.runtime import runtime_models

    models = runtime_models(subject.manifest)  # the app-only text model is no variant of the bundle's model
    onnx_files = [subject.bundle / f for f in models.values()] or sorted(subject.bundle.glob("*.onnx"))
    cascade = subject.manifest.get("cascade")
    if cascade:  # export --cascade: the static tier's graph ships too
        onnx_files += sorted((subject.bundle / cascade["bundle"]).glob("*.onnx"))
    info.update(
        size_bytes=sum(_onnx_bytes(p) for p in onnx_files),
        files=[str(p.relative_to(subject.bundle)) for p in onnx_files],
        package_bytes=sum(p.stat().st_size for p in subject.bundle.rglob("*") if p.is_file()),
        quantization=subject.manifest.get("quantization"),
        target=subject.manifest.get("target"),
    )
    if cascade:
        info["cascade"] = {k: cascade.get(k) for k in ("threshold", "share", "agreement_with_transformer")} | {
            "timed": "latency rows time the transformer tier (EdgeModel.run); accuracy is the cascade's predict"
        }


def _torch_int8(subject: Subject, work: Path, info: dict) -> None:
    # deferred: the fresh-process child imports this module and loads only its variant's libraries
    import torch

    model = torch.ao.quantization.quantize_dynamic(
        _torch_model(subject.torch_dir, subject.family), {torch.nn.Linear}, dtype=torch.qint8
    )
    torch.save(model.state_dict(), work / "torch_int8.pt")
    info.update(size_bytes=(work / "torch_int8.pt").stat().st_size, files=["torch_int8.pt (state_dict)"])


def _ort_fp32(subject: Subject, onnx_dir: Path) -> Path:
    # deferred: the fresh-process child imports this module and loads only its variant's libraries
    from ..deploy.onnx_export import export_onnx

    return export_onnx(Path(subject.torch_dir), Path(onnx_dir), subject.family)["model"]


def optimum_recipe(isa: dict | None = None) -> tuple[str, str]:
    """(preset, AutoQuantizationConfig method) for this CPU: the preset `edgedistill export` quantizes the
    bundle for here (edge.machine.cpu_preset), so the optimum peer is tuned for the same kernels."""
    # deferred: the fresh-process child imports this module and loads only its variant's libraries
    from ..edge.machine import cpu_preset

    _, preset, _ = cpu_preset("auto", isa)
    return preset, OPTIMUM_RECIPE[preset]


def _optimum_int8(onnx_dir: Path, work: Path, info: dict, echo) -> Path:
    # deferred: the fresh-process child imports this module and loads only its variant's libraries
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    preset, method = optimum_recipe()
    qconfig = getattr(AutoQuantizationConfig, method)(is_static=False)
    recipe = f"AutoQuantizationConfig.{method}(is_static=False)"
    echo(f"quantizing it with optimum's default recipe ({recipe}, for the {preset} preset) ...")
    ORTQuantizer.from_pretrained(onnx_dir).quantize(quantization_config=qconfig, save_dir=work / "optimum-int8")
    qpath = next((work / "optimum-int8").glob("*quantized*.onnx"))
    info.update(
        size_bytes=_onnx_bytes(qpath),
        files=[qpath.name],
        preset=preset,
        recipe=recipe,
        quantization={
            "per_channel": qconfig.per_channel,
            "reduce_range": qconfig.reduce_range,
            "format": str(qconfig.format),
            "mode": str(qconfig.mode),
        },
    )
    return qpath


# ---------------------------------------------------------------------------------------------
# Fresh process: cold start and peak RSS (the protocol is edge/process.py's).


def _example_to_json(e) -> dict:
    return {"id": e.id, "input": e.input, "choices": e.choices, "gold": e.gold, "row": e.row}


def child_main(spec: dict) -> dict:
    """Runs in the fresh process: load, first prediction, then the largest shape; report the clock and memory."""
    example = Example(**spec["example"])

    def largest(runner):
        batch, seq = spec["shape"]
        x = runner.prepare(shape_feeds(runner.tok, spec["paths"]["family"], spec["texts"], spec["choices"], batch, seq))
        for _ in range(2):
            runner.call(x)

    return child_measure(
        lambda: load_variant(spec["variant"], spec["paths"], spec["threads"]),
        lambda runner: runner.predict([example], batch_size=1),
        largest,
    )


def fresh_process(variant: str, paths: dict, threads: int, example, texts, choices, shape) -> dict:
    """Spawn a new Python that loads `variant` and predicts; wall time and peak RSS as that process saw them."""
    spec = {
        "variant": variant,
        "paths": paths,
        "threads": threads,
        "example": _example_to_json(example),
        "texts": texts[:64],
        "choices": choices[:8] if choices else None,
        "shape": list(shape),
    }
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return spawn_child([sys.executable, "-m", "edgedistill.measure.bench"], spec, threads, shape, env=env)


# ---------------------------------------------------------------------------------------------
# The whole run


@dataclass
class Inputs:
    examples: list  # data.Example, from --data (may be empty)
    data_info: dict  # results.json's "data"
    texts: list[str]  # real or synthetic text packed into the timed inputs
    choices: list | None  # options of the timed multiple-choice inputs
    probe: object  # the example a fresh process predicts first


def run_bench(
    bundle,
    torch_dir=None,
    data=None,
    settings: BenchConfig | None = None,
    command=None,
    echo=print,
    progress: bool = True,
) -> dict:
    """Measure every variant; returns the results document (see bench_schema.json)."""
    # deferred: the fresh-process child imports this module and loads only its variant's libraries
    from ..edge.machine import LoadMeter, machine_record

    s = settings or BenchConfig()
    _check_settings(s)
    subject = read_subject(bundle, torch_dir)
    machine = machine_record(threads=s.threads, command=command)
    meter = LoadMeter()
    tok = load_tokenizer(subject.tokenizer)
    inputs = _read_inputs(subject, data, s, tok)
    work = Path(tempfile.mkdtemp(prefix="edgedistill-bench-"))
    try:
        paths, info = prepare_variants(subject, s.variants, work, echo=echo)
        for n in s.variants:
            if info[n]["status"] != "ok":
                echo(f"not measuring {n} ({info[n]['status']}): {info[n]['reason']}")
        ok = [n for n in s.variants if info[n]["status"] == "ok"]
        ok = _measure_accuracy(subject, ok, paths, info, inputs.examples, s, progress)
        rows = _measure_latency(subject, ok, paths, tok, inputs, s, progress)
        if s.fresh_process:
            _measure_fresh(ok, paths, info, inputs, s, progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _join(rows, info)
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "run",
        "tool": "edgedistill bench",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "load": meter.result(),
        "subject": {
            "bundle": str(subject.bundle),
            "torch": str(subject.torch_dir) if subject.torch_dir else None,
            "family": subject.family,
            "task": (subject.manifest.get("task") or {}).get("name"),
            "labels": subject.labels,
            "max_length": subject.max_length,
        },
        "data": inputs.data_info,
        "settings": asdict(s),
        "baseline": BASELINE,
        "timed_call": TIMED_CALL[subject.family == "seq2seq"],
        "variants": [info[n] for n in s.variants],
        "results": rows,
    }


def _check_settings(s: BenchConfig) -> None:
    for key in ("batch_sizes", "seq_lens", "threads"):
        vals = getattr(s, key)
        if not vals or any(not isinstance(v, int) or v < 1 for v in vals):
            raise UserError(f"--{key.replace('_', '-')}: give positive integers separated by commas, e.g. 1,8,32")
    unknown = [v for v in s.variants if v not in VARIANTS]
    if unknown:
        raise UserError(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")


def _read_inputs(subject: Subject, data, s: BenchConfig, tok) -> Inputs:
    examples, data_info = [], {"path": None, "examples": 0, "with_gold": 0, "inputs": "synthetic"}
    if data is not None:
        if subject.task is None:
            raise UserError(
                f"{subject.bundle / 'manifest.json'}: task: the manifest has no task, so --data cannot be read"
            )
        examples = load_examples(subject.task, data, limit=s.limit)
        if subject.family == "multiple-choice" and subject.task.type == "numeric":  # a ranking student's expressions
            examples = [replace(e, choices=choices_for("numeric", e.input)) for e in examples]
        data_info = {
            "path": str(data),
            "examples": len(examples),
            "with_gold": sum(e.gold is not None for e in examples),
            "inputs": "real",
        }
    texts = [e.input for e in examples] or synthetic_texts(tok, seed=s.seed)
    choices = [e.choices for e in examples if e.choices] or None
    probe = examples[0] if examples else _synthetic_example(subject, texts[0])
    return Inputs(examples, data_info, texts, choices, probe)


def _measure_accuracy(
    subject: Subject, ok: list[str], paths: dict, info: dict, examples, s: BenchConfig, progress
) -> list[str]:
    """Accuracy once per variant (thread count does not change predictions); the variants still ok after it."""
    # deferred: the fresh-process child imports this module and loads only its variant's libraries
    from tqdm.auto import tqdm

    from ..console import terminal

    gold = [e for e in examples if e.gold is not None]
    if not gold:
        return ok
    task_type = subject.task.type if subject.task is not None else FAMILIES[subject.family].task_type
    for n in tqdm(ok, desc="accuracy", unit="variant", disable=not progress, file=terminal()):
        try:
            preds = load_variant(n, paths, max(s.threads)).predict(gold)
            info[n].update(accuracy=accuracy(task_type, preds, [e.gold for e in gold]), accuracy_n=len(gold))
        except Exception as e:  # noqa: BLE001
            info[n].update(status="failed", reason=f"predict failed: {type(e).__name__}: {e}")
    return [n for n in ok if info[n]["status"] == "ok"]


def _measure_latency(
    subject: Subject, ok: list[str], paths: dict, tok, inputs: Inputs, s: BenchConfig, progress
) -> list[dict]:
    """Per thread count, all variants loaded side by side, every shape interleaved."""
    # deferred: the fresh-process child imports this module and loads only its variant's libraries
    from tqdm.auto import tqdm

    from ..console import terminal

    shapes = [(b, q) for b in s.batch_sizes for q in s.seq_lens]
    rows = []
    bar = tqdm(total=len(s.threads) * len(shapes), desc="latency", unit="shape", disable=not progress, file=terminal())
    for t in s.threads:
        runners = {}
        for n in ok:
            try:
                runners[n] = load_variant(n, paths, t)
            except Exception as e:  # noqa: BLE001
                rows += [_failed_row(n, b, q, t, f"load failed: {type(e).__name__}: {e}") for b, q in shapes]
        for i, (b, q) in enumerate(shapes):
            bar.set_postfix_str(f"threads={t} batch={b} seq={q}")
            feeds = shape_feeds(tok, subject.family, inputs.texts, inputs.choices, b, q, offset=i)
            prepared = {n: r.prepare(feeds) for n, r in runners.items()}
            timed = time_interleaved(runners, prepared, s, on_round=lambda: bar.refresh())
            for n, res in timed.items():
                if "error" in res:
                    rows.append(_failed_row(n, b, q, t, res["error"]))
                else:
                    rows.append(
                        {
                            "variant": n,
                            "batch_size": b,
                            "seq_len": q,
                            "threads": t,
                            "status": "ok",
                            **summarize(res["times_ns"], b),
                        }
                    )
            bar.update(1)
        del runners
        gc.collect()
    bar.close()
    return rows


def _measure_fresh(ok: list[str], paths: dict, info: dict, inputs: Inputs, s: BenchConfig, progress) -> None:
    """Memory and cold start, one fresh process at a time so they do not compete."""
    # deferred: the fresh-process child imports this module and loads only its variant's libraries
    from tqdm.auto import tqdm

    from ..console import terminal

    largest = (max(s.batch_sizes), max(s.seq_lens))
    jobs = [(n, t) for n in ok for t in s.threads]
    for n, t in tqdm(jobs, desc="fresh process", unit="run", disable=not progress, file=terminal()):
        info[n].setdefault("fresh_process", []).append(
            fresh_process(n, paths, t, inputs.probe, inputs.texts, inputs.choices, largest)
        )


def _synthetic_example(subject: Subject, text: str):
    choices = list(DEFAULT_CHOICES) if subject.family == "multiple-choice" else None
    row = None
    if subject.task is not None:
        row = {f: text for f in subject.task.fields}
        if choices and subject.task.choices:
            row[subject.task.choices] = choices
        text = subject.task.render(row)
    return Example(id="0", input=text, choices=choices, row=row)


def _failed_row(n, b, q, t, error) -> dict:
    return {"variant": n, "batch_size": b, "seq_len": q, "threads": t, "status": "failed", "error": error}


def _join(rows: list[dict], info: dict) -> None:
    """Put each variant's size, accuracy, memory and cold start into its rows, and the ratios vs the baseline."""
    base = {
        (r["batch_size"], r["seq_len"], r["threads"]): r
        for r in rows
        if r["variant"] == BASELINE and r["status"] == "ok"
    }
    binfo = info.get(BASELINE, {})
    for r in rows:
        r.update(measured_fields(info[r["variant"]], r["threads"]))
        b = base.get((r["batch_size"], r["seq_len"], r["threads"]))
        bfp = fresh_for_threads(binfo.get("fresh_process"), r["threads"])
        r["speedup_vs_torch_fp32"] = _ratio(b and b.get("p50_ms"), r.get("p50_ms"))
        r["size_ratio_vs_torch_fp32"] = _ratio(r.get("size_bytes"), binfo.get("size_bytes"))
        r["accuracy_delta_pt_vs_torch_fp32"] = (
            None
            if r.get("accuracy") is None or binfo.get("accuracy") is None
            else round(100 * (r["accuracy"] - binfo["accuracy"]), 3)
        )
        r["rss_ratio_vs_torch_fp32"] = _ratio(r.get("peak_rss_mb"), bfp.get("peak_rss_mb"))


def _ratio(a, b):
    return None if not a or not b else round(a / b, 4)


def main(argv=None):  # `python -m edgedistill.measure.bench --child SPEC.json` (the fresh-process half)
    argv = sys.argv[1:] if argv is None else argv
    rc = child_entry(argv, child_main)
    if rc is not None:
        return rc
    print("usage: edgedistill bench ... (this module's own entry point is only the --child worker)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
