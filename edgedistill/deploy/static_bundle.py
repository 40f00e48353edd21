"""Static students (compress --into static) and their bundles.

A static student is a model2vec-style classifier: one embedding per token (distilled by model2vec from a sentence
transformer, then trained), the mean over the input's tokens, a linear head. Its dir holds edgedistill.json (kind
"static"), task.yaml, tokenizer.json (model2vec's: no special tokens added) and static.safetensors (`embeddings`
[vocab, dim], `head.weight` [labels, dim], `head.bias` [labels]), all FP32.

Its bundle is a sequence-classification bundle like any other, so EdgeModel, predict, eval, bench and export/js run
it unchanged: one ONNX graph, input_ids and attention_mask in, logits out (the runtime's softmax gives the probs):

    input_ids --Gather(embeddings)--> [b, s, d] --x mask, sum over s, / token count--> [b, d] --Gemm(head)--> logits

The embeddings ship FP16 (Gather, then Cast to FP32) where that keeps the answers of FP32 on the parity inputs
(label agreement >= --min-agreement), else FP32. Parity is numpy FP32 (this module's `static_logits`, the reference)
against the ONNX FP32 graph and the shipped one.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from ..annotations import read_annotations
from ..atomic import build_dir
from ..data import load_examples
from ..edge.runtime import EdgeModel
from ..errors import UserError
from ..model_dir import read_meta
from ..task import load_task, task_from_dict
from . import bundle as bundle_mod
from .parity import compare, edge_outputs

STATIC_KIND = "static"
STATIC_WEIGHTS = "static.safetensors"
OPSET = 17
FP32_TOLERANCE = 1e-4  # numpy FP32 vs the ONNX FP32 graph: the same sums in another order


def is_static(model_dir) -> bool:
    return read_meta(model_dir).get("kind") == STATIC_KIND


def load_static(model_dir) -> dict[str, np.ndarray]:
    """The static student's arrays (FP32): embeddings, head.weight, head.bias."""
    f = Path(model_dir) / STATIC_WEIGHTS
    if not f.exists():
        raise UserError(f"{model_dir}: a static student dir without {STATIC_WEIGHTS}; re-run compress --into static")
    return {k: v.astype(np.float32) for k, v in load_file(str(f)).items()}


def static_tokenizer(model_dir, max_length: int) -> Tokenizer:
    """The static student's tokenizer, cutting inputs at max_length tokens as the bundle runtime does."""
    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tok.enable_truncation(max_length)
    tok.no_padding()
    return tok


def static_logits(weights: dict[str, np.ndarray], ids: list[list[int]]) -> np.ndarray:
    """The reference forward in numpy FP32: the mean of each input's token embeddings (zeros for an input with no
    token), then the linear head."""
    emb = weights["embeddings"]
    means = np.stack([emb[i].mean(0) if len(i) else np.zeros(emb.shape[1], np.float32) for i in ids])
    return means @ weights["head.weight"].T + weights["head.bias"]


def static_graph(weights: dict[str, np.ndarray], fp16: bool) -> onnx.ModelProto:
    """input_ids, attention_mask (int64 [batch, seq]) -> logits (float [batch, labels])."""
    emb = weights["embeddings"].astype(np.float16 if fp16 else np.float32)
    nodes = [helper.make_node("Gather", ["embeddings", "input_ids"], ["gathered"], axis=0)]
    if fp16:
        nodes.append(helper.make_node("Cast", ["gathered"], ["tokens"], to=TensorProto.FLOAT))
    nodes += [
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "last"], ["mask3"]),
        helper.make_node("Mul", ["tokens" if fp16 else "gathered", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "seq_axis"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "seq_axis"], ["count0"], keepdims=0),
        helper.make_node("Max", ["count0", "one"], ["count"]),
        helper.make_node("Div", ["summed", "count"], ["mean"]),
        helper.make_node("Gemm", ["mean", "head_weight", "head_bias"], ["logits"], transB=1),
    ]
    inits = [
        numpy_helper.from_array(emb, "embeddings"),
        numpy_helper.from_array(np.array([-1], np.int64), "last"),
        numpy_helper.from_array(np.array([1], np.int64), "seq_axis"),
        numpy_helper.from_array(np.array([1.0], np.float32), "one"),
        numpy_helper.from_array(weights["head.weight"].astype(np.float32), "head_weight"),
        numpy_helper.from_array(weights["head.bias"].astype(np.float32), "head_bias"),
    ]
    n_labels = weights["head.bias"].shape[0]
    graph = helper.make_graph(
        nodes,
        "edgedistill_static",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_labels])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgedistill")
    model.ir_version = 8  # onnxruntime 1.14+ (and onnxruntime-web) load IR 8
    onnx.checker.check_model(model)
    return model


def export_static(cfg, echo=print) -> dict:
    """`edgedistill export STATIC_DIR`: the bundle of a static student (cfg: export's ExportConfig), with the usual
    manifest, hashes and parity check; UserError (nothing written) when parity fails."""
    src = Path(cfg.model)
    meta = read_meta(src)
    if meta.get("family") != "sequence-classification":
        raise UserError(f"{src}: a static student of family {meta.get('family')}; static bundles are classifiers")
    if cfg.text_model:
        raise UserError(f"{src}: --text-model is not available for static students yet; export without it")
    weights = load_static(src)
    max_length = int(cfg.max_length or meta["max_length"])
    tok = static_tokenizer(src, max_length)
    base = _base_manifest(src, meta, weights, max_length, _pad_id(tok))
    items = _parity_items(cfg, src, meta, base["task"])
    reference = static_logits(weights, [e.ids for e in tok.encode_batch([it["input"] for it in items])])
    ref_out = (reference.astype(np.float64), [meta["labels"][int(i)] for i in reference.argmax(1)])
    with build_dir(Path(cfg.out)) as work:
        stages = _stage_graphs(work, src, weights, base, cfg.threads)
        fp32_out = edge_outputs(stages["fp32"], items)
        fp16_parity = compare(ref_out, fp32_out, edge_outputs(stages["fp16"], items))
        keep_fp16 = cfg.quantize != "none" and fp16_parity.int8_agreement >= cfg.min_agreement
        chosen = "fp16" if keep_fp16 else "fp32"
        parity = fp16_parity if keep_fp16 else compare(ref_out, fp32_out)
        if parity.fp32_max_abs_logit_diff > FP32_TOLERANCE or parity.fp32_agreement < 1.0:
            raise UserError(
                f"{src}: parity failed: the ONNX graph's logits differ from the static student's by "
                f"{parity.fp32_max_abs_logit_diff:.2e} (tolerance {FP32_TOLERANCE:g}); no bundle written"
            )
        latency = {"fp32_ms": _latency_ms(stages["fp32"], items)}
        if keep_fp16:
            latency["int8_ms"] = _latency_ms(stages["fp16"], items)
        echo(
            f"static student: {base['static']['vocabulary']:,} token embeddings x {base['static']['dim']}; "
            f"FP16 embeddings keep {100 * fp16_parity.int8_agreement:.2f} % of FP32's answers on {len(items)} "
            f"inputs (--min-agreement {100 * cfg.min_agreement:g} %): shipping {chosen.upper()}"
        )
        manifest = _manifest(cfg, base, keep_fp16, fp16_parity, parity, latency)
        for name in ("model.onnx", "tokenizer.json"):
            shutil.copyfile(work / f".stage-{chosen}" / name, work / name)
        for name in list(stages):
            stages[name] = None
            shutil.rmtree(work / f".stage-{name}")
        manifest["io"] = {"model": bundle_mod.io_spec(work / "model.onnx")}
        bundle_mod.add_ort_models(work, manifest, echo)
        bundle_mod.finish(work, manifest)
    return manifest


def _base_manifest(src: Path, meta: dict, weights: dict, max_length: int, pad_id: int) -> dict:
    """The manifest keys both staged graphs (FP32, FP16 embeddings) share."""
    return {
        "task": load_task(src / "task.yaml").to_dict(),
        "family": "sequence-classification",
        "max_length": max_length,
        "labels": list(meta["labels"]),
        "tokenizer": {"file": "tokenizer.json", "pad_token_id": pad_id},
        "models": {"model": "model.onnx"},
        "source": {"model": str(src.resolve()), "kind": STATIC_KIND},
        "static": {
            "vocabulary": int(weights["embeddings"].shape[0]),
            "dim": int(weights["embeddings"].shape[1]),
            "engine": meta.get("static", {}).get("engine"),
        },
    }


def _stage_graphs(work: Path, src: Path, weights: dict, base: dict, threads: int) -> dict:
    """The FP32 and FP16-embedding graphs, each staged as a loadable bundle in WORK/.stage-NAME, loaded."""
    stages = {}
    for name, fp16 in (("fp32", False), ("fp16", True)):
        d = work / f".stage-{name}"
        d.mkdir()
        onnx.save(static_graph(weights, fp16), d / "model.onnx")
        shutil.copyfile(src / "tokenizer.json", d / "tokenizer.json")
        (d / "manifest.json").write_text(
            json.dumps({**base, "quantization": {"mode": name}, "format_version": 1, "files": {}})
        )
        stages[name] = EdgeModel.load(d, threads=threads, verify=False)
    return stages


def _manifest(cfg, base: dict, keep_fp16: bool, fp16_parity, parity, latency: dict) -> dict:
    """The shipped bundle's manifest: the shared keys, the precision chosen, parity, target and latency."""
    return {
        **base,
        "quantization": {
            "mode": "fp16-embeddings" if keep_fp16 else "none",
            "fp16_agreement": fp16_parity.int8_agreement,
            "requested": str(cfg.quantize),
        },
        "parity": {
            **parity.to_dict(),
            "fp32_tolerance": FP32_TOLERANCE,
            "min_agreement": cfg.min_agreement,
            "reference": "numpy FP32 (deploy/static_bundle.static_logits)",
            "data": str(cfg.parity_data or "annotations sample"),
        },
        "target": {"requested": str(cfg.target), "arch": "any", "preset": "static (no INT8 preset)", "isa": {}},
        "latency_batch1": {**latency, "seq_len": "the input's own", "threads": cfg.threads},
        "opset": OPSET,
    }


def _pad_id(tok: Tokenizer) -> int:
    for name in ("[PAD]", "<pad>", "[pad]"):
        if (i := tok.token_to_id(name)) is not None:
            return int(i)
    return 0  # no pad token: padded positions are masked out of the mean, whichever id they hold


def _parity_items(cfg, src: Path, meta: dict, task: dict) -> list[dict]:
    """--parity-data's inputs, else those of the annotations the trained student (meta's source) learned from."""
    path = Path(cfg.parity_data) if cfg.parity_data else _annotations_of(meta)
    if path is None:
        raise UserError(
            f"{src}: no --parity-data given and no training annotations found through its source student; "
            "pass --parity-data FILE with 200+ inputs like those the app will see"
        )
    first = path.read_text(encoding="utf-8").lstrip().split("\n")[0]
    if '"status"' in first and '"input"' in first:
        rows = [{"input": a.input} for a in read_annotations(path)]
    else:
        spec = task_from_dict({k: v for k, v in task.items() if k != "gold"}, source=str(path))
        rows = [{"input": e.input} for e in load_examples(spec, path)]
    random.Random(cfg.seed).shuffle(rows)
    return rows[: cfg.parity_samples]


def _annotations_of(meta: dict) -> Path | None:
    for d in (meta.get("source"), meta.get("distilled_from")):
        train = Path(d) / "train.json" if d else None
        if train and train.exists():
            t = json.loads(train.read_text())
            ann = t.get("annotations") or t.get("config", {}).get("annotations")
            if ann and Path(ann).exists():
                return Path(ann)
    return None


def _latency_ms(model: EdgeModel, items: list[dict], runs: int = 30) -> float:
    """Median batch-1 time of one predict call on real inputs (tokenizing included)."""
    for it in items[:3]:
        model.predict([it])
    times = []
    for i in range(runs):
        t = time.perf_counter()
        model.predict([items[i % len(items)]])
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))
