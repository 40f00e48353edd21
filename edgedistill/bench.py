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
- Memory and cold start come from a fresh process per variant (`python -m edgedistill.bench --child`):
  spawn -> imports -> load -> first prediction from text is the cold start, and the process's peak RSS
  after it also ran the largest shape is the memory figure.
- Accuracy is each variant's own predictions on --data against the task's gold field.

This module imports only the standard library and numpy at the top, so the child process that
measures the bundle never pays for torch.
"""

from __future__ import annotations

import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .edge.families import FAMILIES
from .errors import UserError

VARIANTS = {
    "torch-fp32": "PyTorch FP32 eager: the stripped student as transformers loads it",
    "torch-int8": "PyTorch dynamic INT8: torch.ao.quantization.quantize_dynamic(nn.Linear, qint8)",
    "ort-fp32": "ONNX Runtime FP32: plain optimum export, default session options",
    "optimum-int8": "optimum default INT8: ORTQuantizer + AutoQuantizationConfig.<cpu preset>(is_static=False)",
    "bundle": "edgedistill bundle: optimized + INT8 ONNX via edgedistill.runtime",
}
BASELINE = "torch-fp32"
SCHEMA_VERSION = 1
TIMED_CALL = ("model forward on pre-tokenized inputs of exactly batch x seq real tokens (tokenization excluded)",
              "encoder forward + first decoder step on pre-tokenized inputs of exactly batch x seq real tokens "
              "(tokenization and the rest of generation excluded; accuracy uses full greedy generation)")
PAUSE_S = 0.03  # between time slices of different variants (see time_interleaved)


@dataclass
class BenchSettings:
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
# Inputs: one tokenizer (the bundle's tokenizer.json) builds the same feeds for every variant.


def load_tokenizer(path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def _pad(tok) -> tuple[int, str]:
    if tok.padding:
        return tok.padding["pad_id"], tok.padding["pad_token"]
    for t in ("[PAD]", "<pad>", "<PAD>", "<|pad|>"):
        i = tok.token_to_id(t)
        if i is not None:
            return i, t
    return 0, tok.id_to_token(0) or "[PAD]"


def encode(tok, firsts, seconds=None, max_length: int = 512, pad_to: int | None = None) -> dict[str, np.ndarray]:
    """input_ids / attention_mask / token_type_ids, truncated to max_length, padded to pad_to (or longest)."""
    pad_id, pad_token = _pad(tok)
    tok.enable_truncation(max_length=max_length, strategy="longest_first")
    tok.enable_padding(pad_id=pad_id, pad_token=pad_token, length=pad_to)
    encs = tok.encode_batch(list(zip(firsts, seconds)) if seconds is not None else list(firsts))
    return {
        "input_ids": np.array([e.ids for e in encs], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64),
    }


def encode_examples(tok, family: str, examples, max_length: int) -> dict[str, np.ndarray]:
    """Feeds for predicting examples: (n, seq) for classification, (n, choices, seq) for multiple choice."""
    if family == "multiple-choice":
        n, c = len(examples), len(examples[0].choices)
        if any(len(e.choices) != c for e in examples):
            raise ValueError("examples in one batch must have the same number of choices")
        feeds = encode(tok, [e.input for e in examples for _ in e.choices], [ch for e in examples for ch in e.choices], max_length)
        return {k: v.reshape(n, c, -1) for k, v in feeds.items()}
    return encode(tok, [e.input for e in examples], None, max_length)


def synthetic_texts(tok, n: int = 64, words: int = 24, seed: int = 0) -> list[str]:
    """Sentences of random whole-word vocabulary entries, for when no --data is given."""
    rng = random.Random(seed)
    vocab = sorted(w for w in tok.get_vocab() if w.isalpha() and w.islower() and len(w) > 1)
    if not vocab:
        vocab = ["the", "a", "is"]
    return [" ".join(rng.choice(vocab) for _ in range(words)) for _ in range(n)]


def shape_feeds(tok, family: str, texts: list[str], choices: list[list[str]] | None, batch: int, seq: int,
                offset: int = 0) -> dict[str, np.ndarray]:
    """Feeds of exactly (batch, seq) tokens (or (batch, choices, seq)); texts are packed end to end so
    that every position is real text, then truncated to seq."""
    def packed(start):
        parts, ntok, i = [], 0, start
        while ntok < seq:
            t = texts[i % len(texts)]
            parts.append(t)
            ntok += max(1, len(tok.encode(t, add_special_tokens=False).ids))
            i += 1
        return " ".join(parts), i

    firsts, i = [], offset
    for _ in range(batch):
        text, i = packed(i)
        firsts.append(text)
    if family == "multiple-choice":
        c = len(choices[0]) if choices else 4
        pool = choices or [["yes", "no", "maybe", "true"]]
        opts = [pool[(offset + b) % len(pool)][:c] for b in range(batch)]
        feeds = encode(tok, [f for f in firsts for _ in range(c)], [o for os_ in opts for o in os_], seq, pad_to=seq)
        return {k: v.reshape(batch, c, seq) for k, v in feeds.items()}
    return encode(tok, firsts, None, seq, pad_to=seq)


# ---------------------------------------------------------------------------------------------
# Variants: everything a runner needs is in a plain dict of paths, so a child process can load it too.


class Runner:
    """One loaded variant. `prepare` converts numpy feeds once per shape; `call` is the timed op."""

    name = "?"

    max_new_tokens = 32  # seq2seq answers: greedy, at most this many tokens

    def __init__(self, family: str, labels, tok, max_length: int):
        self.family, self.labels, self.tok, self.max_length = family, labels, tok, max_length

    def prepare(self, feeds):
        return feeds

    def call(self, x):
        raise NotImplementedError

    def logits(self, feeds) -> np.ndarray:
        raise NotImplementedError

    def predict(self, examples, batch_size: int = 32) -> list[str]:
        out = []
        for i in range(0, len(examples), batch_size):
            chunk = examples[i:i + batch_size]
            if self.family == "multiple-choice":  # group by number of choices so each batch stacks
                groups: dict[int, list] = {}
                for e in chunk:
                    groups.setdefault(len(e.choices), []).append(e)
                preds = {}
                for group in groups.values():
                    best = self.logits(encode_examples(self.tok, self.family, group, self.max_length)).reshape(len(group), -1).argmax(-1)
                    preds.update({id(e): e.choices[int(b)] for e, b in zip(group, best)})
                out += [preds[id(e)] for e in chunk]
            else:
                best = self.logits(encode_examples(self.tok, self.family, chunk, self.max_length)).argmax(-1)
                out += [self.labels[int(b)] for b in best]
        return out


class TorchRunner(Runner):
    def __init__(self, model, *args):
        import inspect

        super().__init__(*args)
        self.model = model
        self.names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in inspect.signature(model.forward).parameters]

    def prepare(self, feeds):
        import torch

        x = {k: torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in self.names if k in feeds}
        if self.family == "seq2seq":  # the timed call: encoder + first decoder step, as EdgeModel.run does
            x["decoder_input_ids"] = torch.full((x["input_ids"].shape[0], 1), self.model.config.decoder_start_token_id)
        return x

    def predict(self, examples, batch_size: int = 32) -> list[str]:
        if self.family != "seq2seq":
            return super().predict(examples, batch_size)
        import torch

        out = []
        for i in range(0, len(examples), batch_size):
            x = self.prepare(encode_examples(self.tok, self.family, examples[i:i + batch_size], self.max_length))
            x.pop("decoder_input_ids")
            with torch.inference_mode():
                gen = self.model.generate(**x, do_sample=False, num_beams=1, max_new_tokens=self.max_new_tokens)
            out += [self.tok.decode([int(t) for t in row], skip_special_tokens=True).strip() for row in gen]
        return out

    def call(self, x):
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
        ref = feeds["input_ids"]
        return {n: np.ascontiguousarray(feeds[n]) if n in feeds else np.zeros_like(ref) for n, _ in self.inputs}

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

    def prepare(self, feeds):
        ref = feeds["input_ids"]
        return {n: np.ascontiguousarray(feeds[n]) if n in feeds else np.zeros_like(ref) for n in self.input_names}

    def call(self, x):
        return self.model.run(x)

    def logits(self, feeds):
        return np.asarray(self.call(self.prepare(feeds)))

    def predict(self, examples, batch_size: int = 32) -> list[str]:
        items = [e.row if e.row is not None else e.input for e in examples]
        if self.family == "seq2seq":  # same answer budget as the torch variants
            return [a.strip() for i in range(0, len(items), batch_size)
                    for a in self.model.generate(items[i:i + batch_size], max_new_tokens=self.max_new_tokens)]
        preds = self.model.predict(items, batch_size=batch_size)
        return [p.get("label", p.get("answer")) for p in preds]


def ort_session(path, threads: int):
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
        try:
            from edgedistill.runtime import EdgeModel
        except ImportError:
            from edge_runtime import EdgeModel
        finally:
            sys.path.pop(0)
        return BundleRunner(EdgeModel.load(paths["bundle"], threads=threads), family, labels, tok, max_length)
    if name in ("ort-fp32", "optimum-int8"):
        return OrtRunner(ort_session(paths[name], threads), family, labels, tok, max_length)
    import torch

    torch.set_num_threads(threads)
    model = _torch_model(paths["torch"], family)
    if name == "torch-int8":
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    labels = [model.config.id2label[i] for i in range(len(model.config.id2label))] if family == "sequence-classification" else labels
    return TorchRunner(model, family, labels, tok, max_length)


def _torch_model(path, family: str):
    from .edge.families import auto_model_class

    return auto_model_class(family).from_pretrained(str(path)).eval()


def _weights_bytes(d: Path) -> int:
    files = [p for p in d.iterdir() if p.suffix in (".safetensors", ".bin") and "optimizer" not in p.name and "training" not in p.name]
    return sum(p.stat().st_size for p in files)


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
    bundle = Path(bundle)
    mpath = bundle / "manifest.json"
    if not mpath.exists():
        raise UserError(f"{bundle}: not a bundle (no manifest.json); pass the directory `edgedistill export` wrote")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{mpath}:{e.lineno}: manifest is not valid JSON ({e.msg}); re-run edgedistill export") from None
    family = manifest.get("family")
    if family not in FAMILIES:
        raise UserError(f"{mpath}: family: {family!r} is not one of {', '.join(FAMILIES)}")
    task = None
    if isinstance(manifest.get("task"), dict):
        from dataclasses import fields

        from .task import TaskSpec, task_from_dict

        known = {f.name for f in fields(TaskSpec)} - {"source"}
        task = task_from_dict({k: v for k, v in manifest["task"].items() if k in known}, source=f"{mpath}: task")
    labels = manifest.get("labels") or (manifest.get("task") or {}).get("labels")
    if torch_dir is not None:
        torch_dir = Path(torch_dir)
        if not (torch_dir / "config.json").exists():
            raise UserError(f"{torch_dir}: --torch must be a transformers model dir (the stripped student); no config.json there")
        meta = torch_dir / "edgedistill.json"
        if meta.exists():
            kind = json.loads(meta.read_text()).get("kind")
            if kind == "student":
                raise UserError(f"{torch_dir}: --torch is a student checkpoint; strip it first (edgedistill strip) and pass the stripped dir")
    return Subject(bundle, manifest, family, int(manifest.get("max_length") or 512), labels, task, torch_dir)


def prepare_variants(subject: Subject, names: list[str], work: Path, echo=print) -> tuple[dict, dict]:
    """Make the files each variant loads (exports, quantized copies) under `work`.

    Returns (paths for load_variant, {variant: {status, reason, size_bytes, files}})."""
    from .machine import isa_features, isa_preset

    info = {n: {"name": n, "description": VARIANTS[n], "status": "ok", "reason": None} for n in names}
    paths = {"family": subject.family, "max_length": subject.max_length, "labels": subject.labels,
             "tokenizer": str(subject.tokenizer), "bundle": str(subject.bundle),
             "torch": str(subject.torch_dir) if subject.torch_dir else None}
    if "bundle" in info:
        models = subject.manifest.get("models") or {}
        onnx_files = [subject.bundle / f for f in models.values()] or sorted(subject.bundle.glob("*.onnx"))
        info["bundle"].update(size_bytes=sum(_onnx_bytes(p) for p in onnx_files), files=[p.name for p in onnx_files],
                              package_bytes=sum(p.stat().st_size for p in subject.bundle.rglob("*") if p.is_file()),
                              quantization=subject.manifest.get("quantization"), target=subject.manifest.get("target"))
    torch_names = [n for n in names if n != "bundle"]
    if subject.family == "seq2seq":
        for n in ("ort-fp32", "optimum-int8"):
            if n in info:
                info[n].update(status="skipped", reason="seq2seq: a plain ONNX export has no generation loop to predict with; "
                               "the torch variants and the bundle (whose runtime has one) are measured")
    if subject.torch_dir is None:
        for n in torch_names:
            info[n].update(status="skipped", reason="needs --torch STUDENT_DIR (the stripped student) to build this variant")
        return paths, info
    if "torch-fp32" in info:
        info["torch-fp32"].update(size_bytes=_weights_bytes(subject.torch_dir), files=[str(subject.torch_dir)])
    if "torch-int8" in info:
        try:
            import torch

            model = torch.ao.quantization.quantize_dynamic(_torch_model(subject.torch_dir, subject.family), {torch.nn.Linear}, dtype=torch.qint8)
            torch.save(model.state_dict(), work / "torch_int8.pt")
            info["torch-int8"].update(size_bytes=(work / "torch_int8.pt").stat().st_size, files=["torch_int8.pt (state_dict)"])
        except Exception as e:  # noqa: BLE001 - e.g. no quantized engine on this CPU: report, don't die
            info["torch-int8"].update(status="skipped", reason=f"quantize_dynamic failed: {type(e).__name__}: {e}")
    if any(info.get(n, {}).get("status") == "ok" for n in ("ort-fp32", "optimum-int8")):
        onnx_dir = work / "ort-fp32"
        try:
            from optimum.exporters.onnx import main_export

            echo("exporting the plain ONNX FP32 peer with optimum ...")
            main_export(str(subject.torch_dir), onnx_dir, task=FAMILIES[subject.family].optimum_task, do_validation=False)
            paths["ort-fp32"] = str(onnx_dir / "model.onnx")
            if "ort-fp32" in info:
                info["ort-fp32"].update(size_bytes=_onnx_bytes(onnx_dir / "model.onnx"), files=["model.onnx"])
        except Exception as e:  # noqa: BLE001
            for n in ("ort-fp32", "optimum-int8"):
                if n in info:
                    info[n].update(status="skipped", reason=f"optimum export failed: {type(e).__name__}: {e}")
    if "optimum-int8" in info and info["optimum-int8"]["status"] == "ok":
        try:
            from optimum.onnxruntime import ORTQuantizer
            from optimum.onnxruntime.configuration import AutoQuantizationConfig

            preset = isa_preset(isa_features()["isa"])
            qconfig = getattr(AutoQuantizationConfig, preset)(is_static=False)
            echo(f"quantizing it with optimum's default recipe (AutoQuantizationConfig.{preset}(is_static=False)) ...")
            ORTQuantizer.from_pretrained(onnx_dir).quantize(quantization_config=qconfig, save_dir=work / "optimum-int8")
            qpath = next((work / "optimum-int8").glob("*quantized*.onnx"))
            paths["optimum-int8"] = str(qpath)
            info["optimum-int8"].update(size_bytes=_onnx_bytes(qpath), files=[qpath.name], preset=preset,
                                        quantization={"per_channel": qconfig.per_channel, "reduce_range": qconfig.reduce_range,
                                                      "format": str(qconfig.format), "mode": str(qconfig.mode)})
        except Exception as e:  # noqa: BLE001
            info["optimum-int8"].update(status="skipped", reason=f"optimum quantization failed: {type(e).__name__}: {e}")
    return paths, info


# ---------------------------------------------------------------------------------------------
# Timing


def _ms(ns) -> float:
    return ns / 1e6


def time_interleaved(runners: dict[str, Runner], prepared: dict[str, object], settings: BenchSettings,
                     on_round=None) -> dict[str, dict]:
    """Time each runner's `call` on its prepared inputs, interleaved in time slices.

    Returns {name: {"times_ns": [...]} or {"error": str}}."""
    out = {n: {"times_ns": []} for n in runners}
    live = dict(runners)
    for n, r in list(live.items()):  # warm-up: caches, lazy allocations, thread pools; not counted
        try:
            t_end, k = time.perf_counter() + settings.warmup, 0
            while k < 2 or time.perf_counter() < t_end:
                r.call(prepared[n])
                k += 1
        except Exception as e:  # noqa: BLE001 - one variant failing a shape must not stop the others
            out[n] = {"error": f"{type(e).__name__}: {e}"}
            live.pop(n)
    slice_s = min(0.5, max(0.05, settings.min_time / 10))
    cap_s = max(10 * settings.min_time, 30.0)  # a very slow variant stops here even short of min_iters
    spent = {n: 0 for n in live}
    gc.collect()
    gc_was = gc.isenabled()
    gc.disable()
    try:
        rnd = 0
        while True:
            pending = [n for n in live if (spent[n] < settings.min_time * 1e9 or len(out[n]["times_ns"]) < settings.min_iters)
                       and not (spent[n] > cap_s * 1e9 and len(out[n]["times_ns"]) >= 3)]
            if not pending:
                break
            shift = rnd % len(pending)  # rotate who goes first, so no variant always follows the same one
            for n in pending[shift:] + pending[:shift]:
                # Let the previous variant's thread pool stop spinning before this one's slice: in an
                # app only one model runs, so its idle workers must not steal cores from the next.
                time.sleep(PAUSE_S)
                r, x, times = live[n], prepared[n], out[n]["times_ns"]
                t_end = time.perf_counter_ns() + int(slice_s * 1e9)
                while True:
                    t0 = time.perf_counter_ns()
                    r.call(x)
                    dt = time.perf_counter_ns() - t0
                    times.append(dt)
                    spent[n] += dt
                    if t0 + dt >= t_end:
                        break
            rnd += 1
            if on_round:
                on_round()
    finally:
        if gc_was:
            gc.enable()
    return out


def summarize(times_ns: list[int], batch: int) -> dict:
    ms = np.array(times_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"iterations": int(ms.size), "p50_ms": round(float(p50), 4), "p90_ms": round(float(p90), 4),
            "p99_ms": round(float(p99), 4), "mean_ms": round(float(ms.mean()), 4), "min_ms": round(float(ms.min()), 4),
            "throughput_items_s": round(batch * 1000.0 / float(ms.mean()), 3)}


# ---------------------------------------------------------------------------------------------
# Fresh process: cold start and peak RSS.


def _peak_rss_mb() -> float:
    """This process's peak resident memory. On Linux VmHWM, because ru_maxrss also counts the
    parent's memory image the child was forked from (it survives exec)."""
    try:
        for line in open("/proc/self/status", encoding="ascii"):
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)  # bytes on macOS, KiB elsewhere
    except ImportError:  # Windows
        import psutil

        return round(psutil.Process().memory_info().peak_wset / 2**20, 1)


def _rss_mb() -> float | None:
    try:
        import psutil

        return round(psutil.Process().memory_info().rss / 2**20, 1)
    except ImportError:
        return None


def _example_to_json(e) -> dict:
    return {"id": e.id, "input": e.input, "choices": e.choices, "gold": e.gold, "row": e.row}


def child_main(spec: dict) -> dict:
    """Runs in the fresh process: load, first prediction, then the largest shape; report the clock and memory."""
    from .data import Example

    t_started = time.time()
    runner = load_variant(spec["variant"], spec["paths"], spec["threads"])
    t_loaded = time.time()
    example = Example(**spec["example"])
    runner.predict([example], batch_size=1)
    t_first = time.time()
    rss_loaded = _rss_mb()
    batch, seq = spec["shape"]
    x = runner.prepare(shape_feeds(runner.tok, spec["paths"]["family"], spec["texts"], spec["choices"], batch, seq))
    for _ in range(2):
        runner.call(x)
    return {"t_started": t_started, "t_loaded": t_loaded, "t_first": t_first, "rss_after_first_mb": rss_loaded,
            "peak_rss_mb": _peak_rss_mb()}


def fresh_process(variant: str, paths: dict, threads: int, example, texts, choices, shape) -> dict:
    """Spawn a new Python that loads `variant` and predicts; wall time and peak RSS as that process saw them."""
    spec = {"variant": variant, "paths": paths, "threads": threads, "example": _example_to_json(example),
            "texts": texts[:64], "choices": choices[:8] if choices else None, "shape": list(shape)}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f, default=str)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    try:
        t_spawn = time.time()
        proc = subprocess.run([sys.executable, "-m", "edgedistill.bench", "--child", f.name], capture_output=True, text=True, env=env)
        t_exit = time.time()
    finally:
        os.unlink(f.name)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"threads": threads, "error": f"child exited {proc.returncode}: " + " | ".join(tail)}
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"threads": threads, "shape": list(shape),
            "cold_start_s": round(r["t_first"] - t_spawn, 3), "startup_s": round(r["t_started"] - t_spawn, 3),
            "load_s": round(r["t_loaded"] - r["t_started"], 3), "first_predict_s": round(r["t_first"] - r["t_loaded"], 3),
            "rss_after_first_mb": r["rss_after_first_mb"], "peak_rss_mb": r["peak_rss_mb"], "process_s": round(t_exit - t_spawn, 3)}


# ---------------------------------------------------------------------------------------------
# The whole run


def run_bench(bundle, torch_dir=None, data=None, settings: BenchSettings | None = None, command=None,
              echo=print, progress: bool = True) -> dict:
    """Measure every variant; returns the results document (see bench_schema.json)."""
    from tqdm.auto import tqdm

    from .machine import LoadMeter, machine_record

    s = settings or BenchSettings()
    for key in ("batch_sizes", "seq_lens", "threads"):
        vals = getattr(s, key)
        if not vals or any(not isinstance(v, int) or v < 1 for v in vals):
            raise UserError(f"--{key.replace('_', '-')}: give positive integers separated by commas, e.g. 1,8,32")
    unknown = [v for v in s.variants if v not in VARIANTS]
    if unknown:
        raise UserError(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    subject = read_subject(bundle, torch_dir)
    machine = machine_record(threads=s.threads, command=command)
    meter = LoadMeter()
    tok = load_tokenizer(subject.tokenizer)

    examples, data_info = [], {"path": None, "examples": 0, "with_gold": 0, "inputs": "synthetic"}
    if data is not None:
        from .data import load_examples

        if subject.task is None:
            raise UserError(f"{subject.bundle / 'manifest.json'}: task: the manifest has no task, so --data cannot be read")
        examples = load_examples(subject.task, data, limit=s.limit)
        data_info = {"path": str(data), "examples": len(examples), "with_gold": sum(e.gold is not None for e in examples),
                     "inputs": "real"}
    texts = [e.input for e in examples] or synthetic_texts(tok, seed=s.seed)
    choices = [e.choices for e in examples if e.choices] or None
    probe = examples[0] if examples else _synthetic_example(subject, texts[0])

    work = Path(tempfile.mkdtemp(prefix="edgedistill-bench-"))
    try:
        paths, info = prepare_variants(subject, s.variants, work, echo=echo)
        ok = [n for n in s.variants if info[n]["status"] == "ok"]
        for n in s.variants:
            if info[n]["status"] != "ok":
                echo(f"skipping {n}: {info[n]['reason']}")

        # Accuracy: once per variant (thread count does not change predictions).
        gold = [e for e in examples if e.gold is not None]
        if gold:
            for n in tqdm(ok, desc="accuracy", unit="variant", disable=not progress):
                try:
                    r = load_variant(n, paths, max(s.threads))
                    preds = r.predict(gold)
                    hits = [_hit(subject, p, e.gold) for p, e in zip(preds, gold)]
                    info[n].update(accuracy=round(sum(hits) / len(gold), 5), accuracy_n=len(gold))
                except Exception as e:  # noqa: BLE001
                    info[n].update(status="failed", reason=f"predict failed: {type(e).__name__}: {e}")
            ok = [n for n in ok if info[n]["status"] == "ok"]

        # Latency: per thread count, all variants loaded side by side, every shape interleaved.
        shapes = [(b, q) for b in s.batch_sizes for q in s.seq_lens]
        rows = []
        bar = tqdm(total=len(s.threads) * len(shapes), desc="latency", unit="shape", disable=not progress)
        for t in s.threads:
            runners = {}
            for n in ok:
                try:
                    runners[n] = load_variant(n, paths, t)
                except Exception as e:  # noqa: BLE001
                    rows += [_failed_row(n, b, q, t, f"load failed: {type(e).__name__}: {e}") for b, q in shapes]
            for i, (b, q) in enumerate(shapes):
                bar.set_postfix_str(f"threads={t} batch={b} seq={q}")
                feeds = shape_feeds(tok, subject.family, texts, choices, b, q, offset=i)
                prepared = {n: r.prepare(feeds) for n, r in runners.items()}
                timed = time_interleaved(runners, prepared, s, on_round=lambda: bar.refresh())
                for n, res in timed.items():
                    if "error" in res:
                        rows.append(_failed_row(n, b, q, t, res["error"]))
                    else:
                        rows.append({"variant": n, "batch_size": b, "seq_len": q, "threads": t, "status": "ok",
                                     **summarize(res["times_ns"], b)})
                bar.update(1)
            del runners
            gc.collect()
        bar.close()

        # Memory and cold start, one fresh process at a time so they do not compete.
        if s.fresh_process:
            largest = (max(s.batch_sizes), max(s.seq_lens))
            jobs = [(n, t) for n in ok for t in s.threads]
            for n, t in tqdm(jobs, desc="fresh process", unit="run", disable=not progress):
                info[n].setdefault("fresh_process", []).append(fresh_process(n, paths, t, probe, texts, choices, largest))
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)

    variants = [info[n] for n in s.variants]
    _join(rows, info)
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "run",
        "tool": "edgedistill bench",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "load": meter.result(),
        "subject": {"bundle": str(subject.bundle), "torch": str(subject.torch_dir) if subject.torch_dir else None,
                    "family": subject.family, "task": (subject.manifest.get("task") or {}).get("name"),
                    "labels": subject.labels, "max_length": subject.max_length},
        "data": data_info,
        "settings": asdict(s),
        "baseline": BASELINE,
        "timed_call": TIMED_CALL[subject.family == "seq2seq"],
        "variants": variants,
        "results": rows,
    }


def _hit(subject: Subject, pred, gold) -> bool:
    """A correct prediction: the label / choice text, or for numeric tasks the same number."""
    from .edge.families import answers_match

    return answers_match(subject.task.type if subject.task is not None else None, pred, gold)


def _synthetic_example(subject: Subject, text: str):
    from .data import Example

    choices = ["yes", "no", "maybe", "true"] if subject.family == "multiple-choice" else None
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
    base = {(r["batch_size"], r["seq_len"], r["threads"]): r for r in rows if r["variant"] == BASELINE and r["status"] == "ok"}
    binfo = info.get(BASELINE, {})
    for r in rows:
        v = info[r["variant"]]
        fp = next((f for f in v.get("fresh_process", []) if f.get("threads") == r["threads"] and "error" not in f), {})
        r.update(size_bytes=v.get("size_bytes"), accuracy=v.get("accuracy"), peak_rss_mb=fp.get("peak_rss_mb"),
                 cold_start_s=fp.get("cold_start_s"))
        b = base.get((r["batch_size"], r["seq_len"], r["threads"]))
        bfp = next((f for f in binfo.get("fresh_process", []) if f.get("threads") == r["threads"] and "error" not in f), {})
        r["speedup_vs_torch_fp32"] = _ratio(b and b.get("p50_ms"), r.get("p50_ms"))
        r["size_ratio_vs_torch_fp32"] = _ratio(r.get("size_bytes"), binfo.get("size_bytes"))
        r["accuracy_delta_pt_vs_torch_fp32"] = (None if r.get("accuracy") is None or binfo.get("accuracy") is None
                                                else round(100 * (r["accuracy"] - binfo["accuracy"]), 3))
        r["rss_ratio_vs_torch_fp32"] = _ratio(r.get("peak_rss_mb"), bfp.get("peak_rss_mb"))


def _ratio(a, b):
    return None if not a or not b else round(a / b, 4)


def main(argv=None):  # `python -m edgedistill.bench --child SPEC.json` (the fresh-process half)
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--child":
        spec = json.loads(Path(argv[1]).read_text())
        print(json.dumps(child_main(spec)), flush=True)
        return 0
    print("usage: edgedistill bench ... (this module's own entry point is only the --child worker)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
