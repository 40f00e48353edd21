"""Stripped model -> verified bundle: export, fuse, smooth, quantize, check parity, measure, seal.

    stripped dir --optimum--> ONNX FP32 --ORT fusions--> fused FP32 (the --quantize none bundle)
                              ONNX FP32 --smooth--> same FP32 function --quantize--> INT8 (onnxruntime fuses it at load)
                 --parity (torch vs FP32 vs INT8)--> latency FP32 vs INT8 --> bundle/ (+ .ort)

Everything is built in a temp dir beside the destination and renamed into place only when parity
holds, so a failed export leaves no bundle behind.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from ..annotations import read_annotations
from ..atomic import build_dir
from ..choices import SMOOTH_ALPHA, Quantize, Target, parse
from ..data import load_examples
from ..edge.families import FAMILIES
from ..edge.runtime import EdgeModel, runtime_models
from ..errors import UserError
from ..model_dir import load_config, weights_bytes
from ..task import load_task, task_from_dict
from . import bundle as bundle_mod
from . import text_model
from .cascade import check_cascade, export_cascade
from .onnx_export import export_onnx, family_of, fuse
from .parity import compare, edge_outputs, torch_outputs
from .quantize import (
    FOLD_TOLERANCE,
    MATMUL_OPS,
    MUL_KL_GAIN,
    detect_preset,
    int8_drift,
    keep_sensitive_fp32,
    mul_groups,
    muls_pay,
    output_change,
    output_probs,
    pick_smoothing,
    plan_for,
    quantize,
    rank_mul_groups,
    smooth_activations,
    smoothing_sites,
)
from .static_bundle import export_static, is_static

FP32_TOLERANCE = 1e-3


@dataclass
class ExportConfig:
    model: str
    out: str
    quantize: Quantize = Quantize.INT8
    target: Target = Target.AUTO
    parity_data: str | None = None
    calibration_data: str | None = None
    max_length: int | None = None
    min_agreement: float = 0.99
    parity_samples: int = 256
    threads: int = 2
    zip: bool = False
    text_model: bool = False  # also text_model.onnx: raw text in, probs out (deploy/text_model.py)
    int8_fp32: str = "0"  # N | auto: keep the N most INT8-sensitive MatMuls FP32 (quantize.keep_sensitive_fp32)
    smooth: float = SMOOTH_ALPHA  # SmoothQuant alpha for dynamic INT8 (quantize.smooth_activations); 0: off
    smooth_layernorm: bool = False  # Muls on LayerNorm outputs that cannot fold too (quantize.LAYERNORM_GROUPS)
    seed: int = 0
    cascade: str | None = None  # a static student dir (compress --into static): answers where confident (cascade.py)
    cascade_threshold: str = "auto"  # auto | P in (0, 1]: the static tier answers where its top probability >= P
    cascade_agreement: float = 0.99  # auto: the share of the transformer's answers the cascade keeps on the evidence
    # test hook: called with the staging dir after export, before parity (e.g. to corrupt a weight)
    tamper: object = field(default=None, repr=False)

    def __post_init__(self):
        self.quantize = parse(Quantize, self.quantize, "--quantize")
        self.target = parse(Target, self.target, "--target")


@dataclass
class _Job:
    """What the stages of one export share: the model, its task, the parity inputs and the staging dir."""

    cfg: ExportConfig
    src: Path
    work: Path
    model_dir: Path
    meta: dict
    config: object  # transformers config
    family: str
    task: dict
    max_length: int
    items: list[dict]  # parity inputs
    target: str
    preset: str
    isa: dict
    raw: dict = field(default_factory=dict)  # role -> optimum ONNX FP32
    fused: dict = field(default_factory=dict)  # role -> fused FP32
    base_manifest: dict = field(default_factory=dict)


@dataclass
class _Chosen:
    """The model that will ship, with the evidence for it."""

    dir: Path
    qinfo: dict
    parity: object  # parity.Parity
    latency: dict


def export_bundle(cfg: ExportConfig, echo=print) -> dict:
    src = Path(cfg.model)
    if not src.is_dir():
        raise UserError(f"{src}: model directory not found; pass a stripped dir (edgedistill strip) or a student dir")
    if cfg.cascade and is_static(src):
        raise UserError(f"{src}: --cascade takes the transformer as MODEL; pass the stripped dir, not a static one")
    if cfg.cascade:
        check_cascade(cfg)  # before the transformer's export: a wrong dir or P costs nothing
        manifest = export_cascade(cfg, lambda c: export_bundle(c, echo), echo)
    elif is_static(src):  # compress --into static: its own graph, no optimum
        manifest = export_static(cfg, echo)
    else:
        with tempfile.TemporaryDirectory(prefix="edgedistill-export-") as work:
            job = _job(cfg, src, Path(work))
            _export_and_fuse(job, echo)
            chosen = _choose(job, echo)
            manifest = _write_bundle(job, chosen, echo)
    out = Path(cfg.out)
    if cfg.zip:
        manifest["zip"] = str(bundle_mod.zip_bundle(out))
    loaded = set(runtime_models(manifest).values())
    if "cascade" in manifest:  # the static tier's graph is loaded too
        loaded.add(f"{manifest['cascade']['bundle']}/model.onnx")
    manifest["size_bytes"] = sum(f["bytes"] for n, f in manifest["files"].items() if n in loaded)
    manifest["source_size_bytes"] = weights_bytes(src)
    return manifest


def summary_lines(m: dict, out) -> list[str]:
    """What export prints when the bundle is written (`edgedistill export` and `edgedistill run`)."""
    p, lat = m["parity"], m["latency_batch1"]
    rows = [
        ("bundle", out),
        ("family", m["family"]),
        ("quantization", f"{m['quantization'].get('mode')} ({m['target']['preset']})"),
        ("size (MB)", f"{m['size_bytes'] / 1e6:.1f} (checkpoint {m['source_size_bytes'] / 1e6:.1f})"),
        ("parity inputs", p["examples"]),
        ("FP32 max |Δlogit|", "–" if p["fp32_max_abs_logit_diff"] is None else f"{p['fp32_max_abs_logit_diff']:.2e}"),
        ("INT8 agreement", "–" if p["int8_agreement"] is None else f"{100 * p['int8_agreement']:.2f} %"),
        (
            "latency FP32 / INT8 (ms)",
            f"{lat['fp32_ms']:.2f} / {lat.get('int8_ms', float('nan')):.2f}  (batch 1, seq {lat['seq_len']})",
        ),
    ]
    sm = m["quantization"].get("smooth")
    if sm:
        s = sm.get("sites") or {}
        kept = [grp for grp, g in (sm.get("mul_groups") or {}).items() if g["kept"]]
        muls = f" ({', '.join(kept)})" if kept else ""
        where = f" ({s['layernorm'] + s['linear']} folded, {s['mul']} by a Mul at run time{muls})" if s else ""
        rows.append(
            (
                "smoothed before INT8",
                (
                    f"{sm['matmuls']} MatMuls, {sm['inputs']} inputs{where} "
                    f"(--smooth {sm['alpha']:g}): KL vs FP32 {sm['kl_unsmoothed']:.1e} -> "
                    f"{sm['kl_smoothed']:.1e}"
                ),
            )
        )
    kept = m["quantization"].get("fp32_matmuls")
    if kept:
        r = next(x for x in kept["ladder"] if x["k"] == kept["k"])
        rows.append(
            (
                "MatMuls kept FP32",
                f"{kept['k']} (--int8-fp32 {kept['requested']}): KL vs FP32 {r['kl']:.1e}, "
                f"p50 x{r['p50_ratio']:.3f} of all-INT8",
            )
        )
    if "text_model" in m:
        t = m["text_model"]["parity"]
        rows.append(
            (
                "text model",
                f"{m['text_model']['file']} ({m['files'][m['text_model']['file']]['bytes'] / 1e6:.1f} MB), labels "
                f"{t['labels_equal']}/{t['examples']}, max |Δprob| {t['max_abs_prob_diff']:.1e}",
            )
        )
    if "cascade" in m:
        rows.append(("cascade", _cascade_line(m["cascade"])))
    return [""] + [f"  {k:<26}{v}" for k, v in rows]


def _cascade_line(c: dict) -> str:
    return (
        f"static tier answers {100 * c['share']['static']:.1f} % at P = {c['threshold']:.4g}, keeping "
        f"{100 * c['agreement_with_transformer']:.2f} % of the transformer's answers ({c['evidence']['inputs']} inputs)"
    )


def _job(cfg: ExportConfig, src: Path, work: Path) -> _Job:
    """Read the model, its task and the parity inputs, and pick the CPU preset; UserError for what is missing."""
    # deferred: transformers loads torch; compress imports this module torch-free
    from transformers import AutoTokenizer

    model_dir, meta = _stripped(src, work)
    config = load_config(model_dir)
    try:
        family = family_of(config)
    except ValueError as e:
        raise UserError(f"{src}: {e}") from None
    task = _task_dict(model_dir, config, family)
    tok = AutoTokenizer.from_pretrained(model_dir)
    if not tok.is_fast:
        raise UserError(
            f"{src}: the tokenizer has no fast (tokenizers) version; the device runtime needs tokenizer.json"
        )
    tok.save_pretrained(work / "tok")
    _check_int8_options(cfg, family)
    if cfg.text_model:  # fail now, not after the long export
        text_model.check_supported(family, work / "tok" / "tokenizer.json")
    items = _parity_items(cfg, src, model_dir, meta, task, family)
    target, preset, isa = detect_preset(cfg.target)
    job = _Job(
        cfg,
        src,
        work,
        model_dir,
        meta,
        config,
        family,
        task,
        cfg.max_length or meta.get("max_length") or 128,
        items,
        target,
        preset,
        isa,
    )
    job.base_manifest = {
        "task": task,
        "family": family,
        "max_length": int(job.max_length),
        "labels": [config.id2label[i] for i in range(len(config.id2label))]
        if family == "sequence-classification"
        else None,
        "tokenizer": {"file": "tokenizer.json", "pad_token_id": int(tok.pad_token_id or 0)},
        "models": {},
        "source": {"model": str(src.resolve()), "kind": meta.get("kind", "transformers")},
    }
    if family == "seq2seq":
        job.base_manifest.update(
            decoder_start_token_id=int(config.decoder_start_token_id), eos_token_id=int(config.eos_token_id)
        )
    return job


def _export_and_fuse(job: _Job, echo) -> None:
    echo(f"exporting {job.family} model with optimum ...")
    job.raw = export_onnx(job.model_dir, job.work / "onnx", job.family)
    stats = {}
    for role, path in job.raw.items():
        job.fused[role] = job.work / "fused" / path.name
        job.fused[role].parent.mkdir(exist_ok=True)
        stats[role] = fuse(path, job.fused[role], job.config)
    job.base_manifest.update(models={role: path.name for role, path in job.raw.items()}, fusions=stats)


def _choose(job: _Job, echo) -> _Chosen:
    """Parity of ONNX FP32 (and INT8) against torch, batch-1 latency; UserError when parity fails."""
    cfg = job.cfg
    fp32_dir = _stage(job.work / "fp32", job.fused, job.work / "tok", job.base_manifest, {"mode": "none"})
    if cfg.tamper:
        cfg.tamper(fp32_dir)
    echo(f"parity on {len(job.items)} inputs: torch FP32 vs ONNX FP32 ...")
    torch_out = torch_outputs(job.model_dir, job.family, job.items, job.task.get("choices"), job.max_length)
    fp32 = EdgeModel.load(fp32_dir, threads=cfg.threads, verify=False)
    fp32_out = edge_outputs(fp32, job.items)
    latency = {"fp32_ms": _latency_ms(fp32, job.items, job.max_length)}
    chosen = _Chosen(fp32_dir, {"mode": "none"}, None, latency)
    chosen_out = None
    if cfg.quantize == "int8":
        chosen_out = _int8(job, fp32, fp32_dir, torch_out, fp32_out, chosen, echo)
    chosen.parity = compare(torch_out, fp32_out, chosen_out)
    _report_latency(latency, echo)
    _enforce(chosen.parity, cfg, job.family, chosen.qinfo, job.isa)
    return chosen


def _int8(job: _Job, fp32: EdgeModel, fp32_dir: Path, torch_out, fp32_out, chosen: _Chosen, echo):
    """Quantize, retry with FP32 embeddings if INT8 embeddings cost agreement, keep slower seq2seq
    decoders FP32; sets chosen.dir/qinfo/latency and returns the INT8 outputs on the parity inputs."""
    cfg = job.cfg
    plan = plan_for(
        job.target,
        job.preset,
        job.config.model_type,
        job.raw.get("encoder") or job.raw.get("model"),
        static=bool(cfg.calibration_data),
    )
    calib = _calibration_feeds(cfg, fp32, job.task) if cfg.calibration_data else None
    feeds = [fp32.encode([it]) for it in job.items] if plan.mode == "dynamic" and job.family != "seq2seq" else []
    sources = _smoothed(job, plan, feeds, echo)
    if cfg.int8_fp32 != "0":
        keep_sensitive_fp32(
            sources["model"],
            plan,
            cfg.int8_fp32,
            feeds,
            _full_length_feed(fp32, job.items, job.max_length),
            job.work / "sensitivity",
            cfg.min_agreement,
            cfg.threads,
            echo,
        )
    int8_dir, int8 = _quantized(job, sources, plan, calib, echo)
    int8_out = None  # outputs of the current `int8`, once computed
    if plan.mode == "dynamic" and job.family != "seq2seq":
        int8_out = edge_outputs(int8, job.items)
        agreement = compare(torch_out, fp32_out, int8_out).int8_agreement
        if agreement is not None and agreement < cfg.min_agreement:
            plan.op_types = MATMUL_OPS
            plan.notes.append(
                f"embeddings kept FP32: with INT8 embeddings the labels agreed with torch on "
                f"{100 * agreement:.1f} % of the parity inputs, below {100 * cfg.min_agreement:.1f} %"
            )
            echo(
                f"INT8 agreement {100 * agreement:.1f} % < {100 * cfg.min_agreement:.1f} %: "
                "retrying with FP32 embeddings"
            )
            int8_dir, int8 = _quantized(job, sources, plan, calib, echo)
            int8_out = None
    chosen.latency["int8_ms"] = _latency_ms(int8, job.items, job.max_length)
    if job.family == "seq2seq" and _decoder_slower(int8_dir, fp32_dir, cfg.threads):
        # Small decoder matmuls pay more in (de)quantization than INT8 saves: keep them FP32.
        for role in set(job.fused) - {"encoder"}:
            shutil.copyfile(job.fused[role], int8_dir / job.fused[role].name)
        plan.notes.append("decoders kept FP32: their INT8 version was slower on this CPU")
        int8 = EdgeModel.load(int8_dir, threads=cfg.threads, verify=False)
        chosen.latency["int8_ms"] = _latency_ms(int8, job.items, job.max_length)
    chosen.dir, chosen.qinfo = int8_dir, plan.to_dict()
    return int8_out if int8_out is not None else edge_outputs(int8, job.items)


def _smoothed(job: _Job, plan, feeds: list[dict], echo) -> dict[str, Path]:
    """Role -> the FP32 graph to quantize: the model's with its activations smoothed (--smooth, recorded in the
    plan) where that applies (dynamic INT8 of a classifier or multiple choice: `feeds` given) and lowers the INT8
    drift on the parity inputs, else the export's. The scales fold into the ops making the inputs where they can (no
    run-time cost); explicit Muls for the other inputs ship per group (Q/K/V input, FFN-in, FFN-out), the cheapest
    groups for their drift cut first, only as many as it takes for them to pay (quantize.rank_mul_groups, muls_pay)."""
    cfg, sources = job.cfg, dict(job.raw)
    if not cfg.smooth:
        return sources
    if not feeds:
        plan.notes.append(
            "activations not smoothed: --smooth is for dynamic INT8 of classifiers and multiple choice "
            f"({'static QDQ calibrates its own ranges' if plan.mode != 'dynamic' else 'not seq2seq'})"
        )
        echo(plan.notes[-1])
        return sources
    echo(f"smoothing MatMul inputs (alpha {cfg.smooth:g}) on {len(feeds)} parity inputs ...")
    raw = job.raw["model"]
    sites = smoothing_sites(raw, feeds, cfg.smooth, cfg.threads)
    groups = mul_groups(sites, cfg.smooth_layernorm)
    graphs = _smoothing_candidates(job, raw, feeds, sites, ["folded", *(f"muls_{grp}" for grp in groups)])
    ref = output_probs(raw, feeds, cfg.threads)  # one FP32 reference: smoothing leaves the FP32 function as it was

    def drift(name: str) -> float:
        return int8_drift(graphs[name][0], plan, feeds, job.work / "drift" / name, cfg.threads, ref)

    kl = {name: drift(name) for name in graphs}
    for grp in groups:
        groups[grp]["kl"] = round(kl[f"muls_{grp}"], 8)
    free = min(("unsmoothed", "folded"), key=lambda name: kl.get(name, np.inf))
    kept = []  # the cheapest groups first, until their Muls together pay
    for grp in rank_mul_groups(
        kl[free], {grp: kl[f"muls_{grp}"] for grp in groups}, {grp: g["width"] for grp, g in groups.items()}
    ):
        kept.append(grp)
        name = "muls_" + "+".join(kept)
        if len(kept) > 1:
            graphs.update(_smoothing_candidates(job, raw, feeds, sites, [name], kept))
            kl[name] = drift(name)
        graphs["with_muls"], kl["with_muls"] = graphs[name], kl[name]
        if muls_pay(kl[free], kl[name]):
            break
    for name in [n for n in graphs if n.startswith("muls_")]:
        graphs.pop(name)
        kl.pop(name)
    choice = pick_smoothing(kl)
    for grp in groups:
        groups[grp]["kept"] = choice == "with_muls" and grp in kept
    infos = {name: info for name, (_, info) in graphs.items()}
    plan.notes.append(_smoothing_note(cfg.smooth, choice, kl, infos, len(feeds), groups))
    echo(plan.notes[-1])
    if choice == "unsmoothed":
        return sources
    sources["model"] = graphs[choice][0]
    plan.smooth = _smooth_record(cfg.smooth, choice, graphs[choice][1], kl, len(feeds), groups)
    return sources


def _smooth_record(alpha: float, choice: str, info: dict, kl: dict, n_feeds: int, groups: dict) -> dict:
    """The manifest's quantization.smooth: the graph shipped, its sites, and the drifts it was chosen by."""
    return {
        "alpha": alpha,
        "graph": choice,
        **info,
        "calibration_inputs": n_feeds,
        "kl_unsmoothed": round(kl["unsmoothed"], 8),
        "kl_smoothed": round(kl[choice], 8),
        "kl_folded": _rounded(kl.get("folded")),
        "kl_with_muls": _rounded(kl.get("with_muls")),
        "mul_groups": groups,
        "mul_kl_gain": MUL_KL_GAIN,
    }


def _smoothing_candidates(
    job: _Job, raw: Path, feeds: list[dict], sites: list, names: list[str], kept: list[str] = ()
) -> dict[str, tuple[Path, dict | None]]:
    """name -> (FP32 graph, what smooth_activations did) for "unsmoothed" and each of `names`: "folded" (where some
    input folds), "muls_GROUP" (the folds and that Mul group's Muls), "muls_G1+G2..." (the folds and the `kept`
    groups' Muls); each smoothed graph checked to compute the FP32 function it came from."""
    cfg = job.cfg
    graphs = {"unsmoothed": (raw, None)} if "folded" in names else {}
    for name in names:
        muls = set(kept) or {name[len("muls_") :]}
        if name != "folded" or any(s.fold for s in sites):
            path = job.work / "smoothed" / name / raw.name
            graphs[name] = (path, smooth_activations(raw, path, sites, muls))
            change = output_change(raw, path, feeds[:16], cfg.threads)
            if change > FOLD_TOLERANCE:  # a wrong fold would ship another model: never quietly
                raise RuntimeError(
                    f"smoothing ({name}) moved the FP32 outputs by {change:.1e} of their scale "
                    f"(> {FOLD_TOLERANCE:g}): a bug in edgedistill's smoothing; "
                    "--smooth 0 exports without it"
                )
    return graphs


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 8)


def _smoothing_note(alpha: float, choice: str, kl: dict, infos: dict, n_feeds: int, groups: dict) -> str:
    """What smoothing did, in words: where the scales went and the INT8 drift of each graph measured."""

    def where(info: dict) -> str:
        s = info["sites"]
        return (
            f"{s['layernorm']} MatMul inputs folded into a LayerNorm, {s['linear']} into a linear op, "
            f"{s['mul']} divided by an explicit Mul, {s['unsmoothed']} left unsmoothed"
        )

    measured = "; ".join(f"{name.replace('_', ' ')} {v:.1e}" for name, v in kl.items())
    per_group = "; ".join(
        f"{grp} Muls ({g['inputs']}) {g['kl']:.1e}{' kept' if g['kept'] else ''}" for grp, g in groups.items()
    )
    drift = (
        f"INT8 vs FP32 KL on the parity inputs: {measured}"
        + (f"; folds + {per_group}" if groups else "")
        + f" (Mul groups added best cut per channel first, kept only once they cut it {MUL_KL_GAIN:g}x)"
    )
    if choice == "unsmoothed":
        return (
            f"activations not smoothed: alpha {alpha:g} did not lower the drift enough; {drift}; try another --smooth"
        )
    cost = "no run-time cost" if choice == "folded" else f"{infos[choice]['sites']['mul']} Muls at run time"
    return (
        f"activations smoothed before INT8 (SmoothQuant, alpha {alpha:g}; {cost}): {where(infos[choice])}; "
        f"scales from {n_feeds} parity inputs; {drift}"
    )


def _quantized(job: _Job, sources: dict[str, Path], plan, calib, echo) -> tuple[Path, EdgeModel]:
    echo(
        f"quantizing to INT8 ({plan.mode}, preset {plan.preset}"
        + (f", {'/'.join(plan.op_types)} only" if plan.op_types else "")
        + ") ..."
    )
    int8_files = {}
    # INT8 goes on the unfused graph; onnxruntime fuses the quantized graph itself at load.
    # Static QDQ: our contrib-op fusions (Attention, SkipLayerNorm) would hide tensors from
    # calibration. Dynamic: quantizing our fused Attention ops (QAttention) measured slower and
    # further from FP32 (MiniLM e-SNLI student, batch 1, seq 128: 8.1 vs 7.3 ms on 1 thread,
    # 4.2 vs 3.9 ms on 2; labels agreeing with FP32 95.7 vs 97.0 %).
    for role, path in sources.items():
        int8_files[role] = job.work / "int8" / path.name
        int8_files[role].parent.mkdir(exist_ok=True)
        quantize(path, int8_files[role], plan, calib if role in ("model", "encoder") else None)
    int8_dir = _stage(job.work / "int8", int8_files, job.work / "tok", job.base_manifest, plan.to_dict())
    return int8_dir, EdgeModel.load(int8_dir, threads=job.cfg.threads, verify=False)


def _write_bundle(job: _Job, chosen: _Chosen, echo) -> dict:
    """The manifest, and the bundle directory renamed into place (models, tokenizer, .ort copies, runtime)."""
    cfg, base = job.cfg, job.base_manifest
    if chosen.qinfo["mode"] != "none":
        base["fusions"] = {"applied": "by onnxruntime at load (INT8 graph)", "fp32_offline": base["fusions"]}
    manifest = {
        **base,
        "quantization": chosen.qinfo,
        "parity": {
            **chosen.parity.to_dict(),
            "fp32_tolerance": FP32_TOLERANCE,
            "min_agreement": cfg.min_agreement,
            "data": str(cfg.parity_data or "annotations sample"),
        },
        "target": {
            "requested": cfg.target,
            "arch": job.target,
            "preset": job.preset,
            "isa": {k: v for k, v in job.isa.items() if v},
        },
        "latency_batch1": {**chosen.latency, "seq_len": int(job.max_length), "threads": cfg.threads},
        "opset": _opset(chosen.dir / next(iter(base["models"].values()))),
    }
    with build_dir(Path(cfg.out)) as tmp:
        for name in base["models"].values():
            shutil.copyfile(chosen.dir / name, tmp / name)
        shutil.copyfile(job.work / "tok" / "tokenizer.json", tmp / "tokenizer.json")
        manifest["io"] = {role: bundle_mod.io_spec(tmp / name) for role, name in manifest["models"].items()}
        bundle_mod.add_ort_models(tmp, manifest, echo)
        if cfg.text_model:
            text_model.add(tmp, chosen.dir, job.work / "tok", manifest, job.items, echo)
        bundle_mod.finish(tmp, manifest)
    return manifest


# ---------------------------------------------------------------- pieces


def _stripped(src: Path, work: Path) -> tuple[Path, dict]:
    """The plain transformers dir to export, stripping a student on the fly."""
    meta = json.loads((src / "edgedistill.json").read_text()) if (src / "edgedistill.json").exists() else {}
    if meta.get("kind") == "student":
        # deferred: loads torch; only a student dir, stripped here first, needs it
        from ..distill.strip import strip_student

        stripped = work / "stripped"
        strip_student(src, stripped)
        meta = {**json.loads((stripped / "edgedistill.json").read_text()), "student": str(src)}
        return stripped, meta
    if not (src / "config.json").exists():
        raise UserError(
            f"{src}: no config.json; pass a dir written by `edgedistill strip` (or any transformers model dir)"
        )
    return src, meta


def _task_dict(model_dir: Path, config, family: str) -> dict:
    if (model_dir / "task.yaml").exists():
        return load_task(model_dir / "task.yaml").to_dict()
    # A bare transformers model: the input is the text itself.
    kind = FAMILIES[family].task_type
    d = {"name": config.name_or_path.rstrip("/").split("/")[-1] or "model", "type": kind, "input": "{text}"}
    if family == "multiple-choice":
        d["choices"] = "choices"
    return d


def _parity_items(cfg, src: Path, model_dir: Path, meta: dict, task: dict, family: str) -> list[dict]:
    """Inputs for parity: --parity-data, else the annotations the student was trained on."""
    path = Path(cfg.parity_data) if cfg.parity_data else _training_annotations(src, model_dir, meta)
    if path is None:
        raise UserError(
            f"{src}: no --parity-data given and no training annotations found next to the model; "
            "pass --parity-data FILE with 200+ inputs like those the app will see"
        )
    first = path.read_text(encoding="utf-8").lstrip()[:2000] if path.exists() else ""
    choices_field = task.get("choices") or "choices"
    if '"status"' in first.split("\n")[0] and '"input"' in first.split("\n")[0]:
        rows = [{"input": a.input, choices_field: a.choices} for a in read_annotations(path)]
    else:
        spec = task_from_dict({k: v for k, v in task.items() if k != "gold"}, source=str(path))
        rows = [{"input": e.input, choices_field: e.choices} for e in load_examples(spec, path)]
    random.Random(cfg.seed).shuffle(rows)
    rows = rows[: cfg.parity_samples]
    if family != "multiple-choice":
        rows = [{"input": r["input"]} for r in rows]
    return rows


def _training_annotations(src: Path, model_dir: Path, meta: dict) -> Path | None:
    for d in (src, model_dir, Path(meta.get("source") or src), Path(meta.get("student") or src)):
        train = d / "train.json"
        if train.exists():
            ann = json.loads(train.read_text()).get("annotations") or json.loads(train.read_text()).get(
                "config", {}
            ).get("annotations")
            if ann and Path(ann).exists():
                return Path(ann)
    return None


def _stage(dest: Path, files: dict[str, Path], tok_dir: Path, manifest: dict, quant: dict) -> Path:
    """A loadable (unsealed) bundle dir, so parity runs through the real runtime."""
    dest.mkdir(parents=True, exist_ok=True)
    for role, path in files.items():
        target = dest / manifest["models"][role]
        if path != target:
            shutil.copyfile(path, target)
    shutil.copyfile(tok_dir / "tokenizer.json", dest / "tokenizer.json")
    (dest / "manifest.json").write_text(
        json.dumps({**manifest, "quantization": quant, "format_version": 1, "files": {}})
    )
    return dest


def _check_int8_options(cfg: ExportConfig, family: str) -> None:
    """--smooth is an alpha in [0, 1]; --int8-fp32 is N >= 0 or auto, for dynamic INT8 of a classifier or
    multiple-choice model; fail before the export."""
    v = cfg.int8_fp32 = str(cfg.int8_fp32).strip().lower()
    if v != "auto" and not v.isdigit():
        raise UserError(f"--int8-fp32 {cfg.int8_fp32!r}: pass a number of MatMuls to keep FP32 (0 = none) or auto")
    if not 0 <= cfg.smooth <= 1:
        raise UserError(
            f"--smooth {cfg.smooth:g}: pass a SmoothQuant alpha in [0, 1] ({SMOOTH_ALPHA:g} is the default; 0 turns "
            "smoothing off)"
        )
    if v == "0":
        return
    if cfg.quantize != "int8":
        raise UserError(
            f"--int8-fp32 {v} picks MatMuls to keep out of INT8; it needs --quantize int8 (drop it for --quantize none)"
        )
    if cfg.calibration_data:
        raise UserError(
            f"--int8-fp32 {v} ranks MatMuls under dynamic INT8; drop --calibration-data (static QDQ) or --int8-fp32"
        )
    if family == "seq2seq":
        raise UserError(
            f"--int8-fp32 {v} ranks MatMuls by their effect on the output probabilities of a classifier or "
            "multiple-choice model; seq2seq bundles already keep sensitive parts FP32 (T5 wo, slower decoders): drop it"
        )


def _calibration_feeds(cfg, model: EdgeModel, task: dict) -> list[dict]:
    spec = task_from_dict({k: v for k, v in task.items() if k != "gold"}, source=cfg.calibration_data)
    exs = load_examples(spec, cfg.calibration_data)[:200]
    items = [{"input": e.input, spec.choices or "choices": e.choices} for e in exs]
    return [model.encode([it], pad_to=model.max_length) for it in items]


def _full_length_feed(model: EdgeModel, items: list[dict], seq_len: int) -> dict:
    """One input padded to the full sequence length, all of it attended: the batch-1 call latency is timed on."""
    feeds = model.encode(items[:1], pad_to=seq_len)
    feeds["attention_mask"] = np.ones_like(feeds["attention_mask"])
    return feeds


def _latency_ms(model: EdgeModel, items: list[dict], seq_len: int, runs: int = 30) -> float:
    """Median batch-1 latency at the full sequence length: what an app pays per call."""
    feeds = _full_length_feed(model, items, seq_len)
    for _ in range(3):
        model.run(feeds)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        model.run(feeds)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def _decoder_slower(int8_dir: Path, fp32_dir: Path, threads: int) -> bool:
    def timed(path):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feeds = {}
        for i in s.get_inputs():
            shape = [
                d if isinstance(d, int) else 1 if "decoder" in str(d) or "batch" in str(d) else 32 for d in i.shape
            ]
            feeds[i.name] = np.ones(shape, dtype=np.int64 if "int64" in i.type else np.float32)
        for _ in range(3):
            s.run(None, feeds)
        t = time.perf_counter()
        for _ in range(20):
            s.run(None, feeds)
        return time.perf_counter() - t

    # the decoder that runs every step after the first
    name = (
        "decoder_with_past_model.onnx" if (int8_dir / "decoder_with_past_model.onnx").exists() else "decoder_model.onnx"
    )
    return timed(int8_dir / name) > timed(fp32_dir / name)


def _enforce(parity, cfg, family: str, qinfo: dict, isa: dict) -> None:
    problems = []
    if not parity.fp32_max_abs_logit_diff <= FP32_TOLERANCE:  # also catches NaN
        problems.append(
            f"ONNX FP32 differs from torch: max |Δlogit| = {parity.fp32_max_abs_logit_diff:.3g} > {FP32_TOLERANCE} "
            "(an export bug or a corrupted file: re-run the export; check the opset and that the model dir is intact)"
        )
    if parity.int8_agreement is not None and parity.int8_agreement < cfg.min_agreement:
        hints = []
        if (
            qinfo.get("weight_type") == "QInt8"
            and not qinfo.get("reduce_range")
            and not (isa.get("avx512_vnni") or isa.get("avx_vnni"))
            and qinfo.get("target") == "x86"
        ):
            hints.append("U8S8 saturation on a CPU without VNNI: use reduce_range (--target x86 on this CPU picks it)")
        if family == "seq2seq":
            hints.append(
                "T5 v1.1-style FFN output projections (wo) overflow in INT8; they must stay FP32; "
                "or keep the decoder FP32"
            )
        if cfg.smooth and not cfg.smooth_layernorm:
            hints.append("smooth the LayerNorm outputs too with --smooth-layernorm (about 5 % slower)")
        if cfg.int8_fp32 == "0":
            hints.append("keep the most INT8-sensitive MatMuls FP32 with --int8-fp32 auto (slower)")
        hints.append("try static INT8 with --calibration-data FILE, or ship FP32 with --quantize none")
        problems.append(
            f"INT8 labels agree with torch on {100 * parity.int8_agreement:.1f} % of inputs, below "
            f"{100 * cfg.min_agreement:.1f} %. Likely: " + "; ".join(hints)
        )
    if problems:
        raise UserError("parity failed, no bundle written:\n  - " + "\n  - ".join(problems))


def _report_latency(lat: dict, echo) -> None:
    if "int8_ms" not in lat:
        return
    ratio = lat["fp32_ms"] / lat["int8_ms"]
    msg = f"batch-1 latency: ONNX FP32 {lat['fp32_ms']:.2f} ms, INT8 {lat['int8_ms']:.2f} ms ({ratio:.2f}x)"
    if ratio < 1:
        msg += "  WARNING: INT8 is SLOWER than FP32 on this CPU; consider --quantize none (and see `edgedistill bench`)"
    echo(msg)


def _opset(path: Path) -> int:
    m = onnx.load(str(path), load_external_data=False)
    return max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0)
