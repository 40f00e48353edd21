"""INT8 for the target CPU: onnxruntime's quantizer with a per-target preset, and the known pitfalls.

Presets (dynamic quantization: weights INT8 offline, activations quantized per call):
  avx512_vnni / avx_vnni  signed 8-bit weights, full range: VNNI's dot product does not saturate.
  avx2 / avx512 (no VNNI) reduce_range: 7-bit weights, because the U8S8 multiply-add of AVX2
                          (vpmaddubsw) saturates int16 with full-range weights and silently loses accuracy.
  arm64                   signed 8-bit weights, full range (NEON sdot/udot do not saturate).
Static QDQ (with --calibration-data) uses per-channel weights and calibrated activation ranges.

Pitfalls handled here:
  - T5 v1.1-style gated FFN output projections (`wo`) overflow in INT8: they stay FP32.
  - Seq2seq decoders can get slower when quantized (small matmuls, quantize/dequantize overhead):
    export.py measures and keeps the FP32 decoder when INT8 is not faster.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from ..choices import SMOOTH_ALPHA

# Per-channel weight scales everywhere: as fast as per-tensor (MiniLM-L6, batch 1, seq 128, 2 threads,
# AVX-512 VNNI: 4.34 vs 4.32 ms) and far closer to FP32 (an e-SNLI student's INT8 labels agreed with
# FP32 on 95.7 % of inputs instead of 89.7 %).
PRESETS = {
    "avx512_vnni": {"weight_type": "QInt8", "per_channel": True, "reduce_range": False},
    "avx_vnni": {"weight_type": "QInt8", "per_channel": True, "reduce_range": False},
    "avx512": {"weight_type": "QInt8", "per_channel": True, "reduce_range": True},
    "avx2": {"weight_type": "QInt8", "per_channel": True, "reduce_range": True},
    "arm64": {"weight_type": "QInt8", "per_channel": True, "reduce_range": False},
}
# Dynamic INT8 without the embedding tables: the fallback when INT8 embeddings cost agreement (the
# quantizer gives a whole 30k-row table one scale). The bundle grows (MiniLM: 23 -> 59 MB) but keeps
# the INT8 matmuls, where the time goes.
MATMUL_OPS = ["MatMul", "Attention"]


@dataclass
class QuantPlan:
    preset: str
    target: str  # x86 | arm64
    mode: str = "dynamic"  # dynamic | static-qdq
    weight_type: str = "QInt8"
    per_channel: bool = False
    reduce_range: bool = False
    nodes_to_exclude: list[str] = field(default_factory=list)
    op_types: list[str] | None = None  # None: every op the quantizer knows, embeddings included
    notes: list[str] = field(default_factory=list)
    fp32_matmuls: dict | None = None  # --int8-fp32: the sensitive MatMuls kept FP32 and what they cost (keep_sensitive_fp32)
    smooth: dict | None = None  # --smooth: the activation smoothing applied before quantizing (smooth_activations)

    def to_dict(self) -> dict:
        return asdict(self)


def detect_preset(target: str) -> tuple[str, str, dict]:
    """(target, preset, isa flags) for --target auto|x86|arm64 on this machine: edge.machine.cpu_preset,
    the rule bench's optimum peer and every results.json's machine record use too."""
    from ..edge.machine import cpu_preset

    return cpu_preset(target)


def plan_for(target: str, preset: str, model_type: str, onnx_path: Path | None = None, static: bool = False) -> QuantPlan:
    p = QuantPlan(preset=preset, target=target, mode="static-qdq" if static else "dynamic", **PRESETS[preset])
    if static:
        p.per_channel, p.reduce_range = True, preset in ("avx2", "avx512")
    if model_type in ("t5", "mt5", "umt5") and onnx_path is not None:
        p.nodes_to_exclude = t5_ffn_output_nodes(onnx_path)
        if p.nodes_to_exclude:
            p.notes.append(f"kept {len(p.nodes_to_exclude)} T5 FFN output projections (wo) in FP32: they overflow in INT8")
    if p.reduce_range:
        p.notes.append(f"reduce_range (7-bit weights): {preset} has no VNNI, full-range U8S8 would saturate")
    return p


def t5_ffn_output_nodes(onnx_path: Path) -> list[str]:
    model = onnx.load(str(onnx_path), load_external_data=False)
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and "DenseReluDense/wo" in n.name]


# Fused ops (Attention, SkipLayerNormalization) live in the com.microsoft domain, where ONNX shape
# inference cannot type their outputs; the quantizer then needs to be told they are float.
EXTRA_OPTIONS = {"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT}


def _excluded(names: list[str]) -> list[str] | None:
    """nodes_to_exclude as onnxruntime needs them: its dynamic quantizer first turns each Gemm into a MatMul named
    `<Gemm>_MatMul` plus an Add, so a Gemm (classifier, pooler) is kept FP32 under that name too."""
    return [v for n in names for v in (n, f"{n}_MatMul")] or None


def quantize(src: Path, dst: Path, plan: QuantPlan, calibration_feeds: list[dict] | None = None) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

    weight_type = getattr(QuantType, plan.weight_type)
    if plan.mode == "dynamic":
        quantize_dynamic(str(src), str(dst), per_channel=plan.per_channel, reduce_range=plan.reduce_range,
                         weight_type=weight_type, nodes_to_exclude=_excluded(plan.nodes_to_exclude),
                         op_types_to_quantize=plan.op_types, extra_options=EXTRA_OPTIONS)
        return

    class Reader(CalibrationDataReader):
        def __init__(self, feeds):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    # MatMuls only: they carry nearly all the compute, and quantizing the classifier's Gemm bias
    # needs an input scale that a saturated tanh pooler does not always provide.
    quantize_static(str(src), str(dst), Reader(calibration_feeds or []), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
                    per_channel=plan.per_channel, reduce_range=plan.reduce_range, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, nodes_to_exclude=_excluded(plan.nodes_to_exclude),
                    extra_options=EXTRA_OPTIONS)


# ---------------------------------------------------------------- activation smoothing (--smooth, SmoothQuant)
# Dynamic INT8 quantizes each MatMul input with one scale for the whole tensor, so the few channels with large
# activations (LayerNorm and GELU outliers) set a scale that rounds every other channel coarsely. SmoothQuant
# (Xiao et al. 2023) divides input channel j by s_j and multiplies weight row j by s_j: the FP32 function is
# unchanged, the activation range is flattened, and the weights (per-channel INT8) absorb the difference.
# s_j = max|x_j|^alpha / max|w_j|^(1 - alpha), the activation maxima taken over the parity inputs, batch 1.
# The quickstart's MiniLM student (mean KL(FP32 || INT8) of the output probabilities on its 240 parity inputs,
# scales from 64 of them): 5.8e-4 unsmoothed; alpha 0.5: 9.9e-4, 0.6: 3.0e-4, 0.7: 1.8e-4, 0.8: 1.2e-4,
# 0.9: 1.5e-4, 1.0: 2.5e-4 (an e-SNLI student's held-out rows: 3.2e-3 unsmoothed, 5.5e-4 at 0.8).
# The division is one elementwise Mul per smoothed MatMul input (the weights absorb s offline): batch-1 p50
# x1.01 to x1.03 at 128 tokens, 2 threads (benchmarks/results/int8_recipe.md, on held-out gold). Default: SMOOTH_ALPHA.
SMOOTH_CLIP = (1e-3, 1e3)  # s stays in this range: a dead channel (max |x| = 0) must not blow its weight row up


def smoothable_matmuls(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """MatMul input tensor -> the MatMuls reading it with a 2-D constant weight of their own (Q, K and V share one)."""
    inits = {i.name: i for i in model.graph.initializer}
    uses = Counter(i for n in model.graph.node for i in n.input)
    groups: dict[str, list] = {}
    for n in model.graph.node:
        w = inits.get(n.input[1]) if n.op_type == "MatMul" else None
        if w is not None and len(w.dims) == 2 and uses[n.input[1]] == 1:
            groups.setdefault(n.input[0], []).append(n)
    return groups


def activation_maxima(model: onnx.ModelProto, names: list[str], feeds: list[dict], threads: int = 2) -> dict[str, np.ndarray]:
    """Per-channel max |x| of each named tensor (last axis = channels) over `feeds`, run one call each."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in names:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # fusions would hide the tensors
    session = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    out = {n: None for n in names}
    for f in feeds:
        for name, x in zip(names, session.run(names, f)):
            m = np.abs(x).reshape(-1, x.shape[-1]).max(0)
            out[name] = m if out[name] is None else np.maximum(out[name], m)
    return out


def smooth_activations(src: Path, dst: Path, feeds: list[dict], alpha: float = SMOOTH_ALPHA, threads: int = 2) -> dict:
    """Write to `dst` the FP32 graph with every smoothable MatMul's input divided per channel by s (a Mul before
    it) and its weight rows multiplied by s; return what was done, for the plan and the manifest."""
    from onnx import numpy_helper

    model = onnx.load(str(src))
    groups = smoothable_matmuls(model)
    maxima = activation_maxima(model, list(groups), feeds, threads)
    inits = {i.name: i for i in model.graph.initializer}
    nodes = list(model.graph.node)
    for x, readers in groups.items():
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in readers]
        w_max = np.max([np.abs(w).max(1) for w in weights], 0)
        a_max = maxima[x]
        s = np.where((a_max > 0) & (w_max > 0), a_max ** alpha / np.maximum(w_max, 1e-12) ** (1 - alpha), 1.0)
        s = np.clip(s, *SMOOTH_CLIP).astype(np.float32)
        for n, w in zip(readers, weights):
            inits[n.input[1]].CopyFrom(numpy_helper.from_array((w * s[:, None]).astype(w.dtype), n.input[1]))
        model.graph.initializer.append(numpy_helper.from_array((1 / s).astype(np.float32), f"{x}_smooth_inv_scale"))
        nodes.insert(nodes.index(readers[0]), onnx.helper.make_node("Mul", [x, f"{x}_smooth_inv_scale"], [f"{x}_smoothed"],
                                                                    name=f"{x}_smooth"))
        for n in readers:
            n.input[0] = f"{x}_smoothed"
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return {"alpha": alpha, "matmuls": sum(len(r) for r in groups.values()), "inputs": len(groups), "calibration_inputs": len(feeds)}


def int8_drift(src: Path, plan: QuantPlan, feeds: list[dict], work: Path, threads: int = 2,
               ref: list[np.ndarray] | None = None) -> float:
    """Mean KL(FP32 || INT8) of the output probabilities on `feeds`, one call each: the FP32 graph `src` (or its
    probabilities `ref`, when the caller has them) against the plan's INT8 of it. What smoothing must lower to be
    kept, and what ranks the MatMuls for --int8-fp32."""
    work.mkdir(parents=True, exist_ok=True)
    quantize(src, work / "int8.onnx", plan)
    ref = output_probs(src, feeds, threads) if ref is None else ref
    return mean_kl(ref, output_probs(work / "int8.onnx", feeds, threads))


# ---------------------------------------------------------------- sensitive MatMuls kept FP32 (--int8-fp32)
# Dynamic INT8 errors add up per MatMul (e-SNLI MiniLM student: the single-MatMul KLs sum to 0.0030,
# all-INT8 gives 0.0033) and a few FFN MatMuls of the first layers carry most of it, so quantizing
# each weight MatMul alone ranks them, and keeping the top k FP32 removes their share.
FP32_LADDER = (0, 1, 2, 3, 6, 12)  # k tried by --int8-fp32 auto, smallest first
# --int8-fp32 auto stops at the first k whose mean KL(FP32 || INT8) of the output probabilities on the
# parity inputs is at most this (and whose labels agree with FP32 on >= --min-agreement).
KL_BUDGET = 1e-3
WEIGHT_OPS = ["MatMul", "Gemm"]
RANK_FEEDS = 64  # parity inputs the ranking runs (38 weight MatMuls/Gemms of a MiniLM x 64 inputs: 70-110 s on 2 shared cores)


def weight_matmuls(onnx_path: Path) -> list[str]:
    """Names of the MatMuls (and Gemms: pooler, classifier) with a constant weight: the ones dynamic INT8
    quantizes (MatMulConstBOnly)."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    consts = {i.name for i in model.graph.initializer}
    consts |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in model.graph.node if n.op_type in WEIGHT_OPS and n.input[1] in consts]


def _session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def output_probs(path: Path, feeds: list[dict], threads: int = 2) -> list[np.ndarray]:
    """The probabilities the ONNX model at `path` outputs for each of `feeds` (see _probs)."""
    return _probs(_session(path, threads), feeds)


def _probs(session, feeds: list[dict]) -> list[np.ndarray]:
    """Output probabilities, one input per call (as an app asks; dynamic INT8 depends on the batch): one array per
    input, since multiple-choice inputs may have different numbers of choices."""
    from ..edge.runtime import softmax

    outs = [session.run(None, f)[0].reshape(-1).astype(np.float64) for f in feeds]
    return [softmax(x) if x.size else x for x in outs]


def mean_kl(p, q) -> float:
    """Mean KL(p || q) over the inputs: p and q hold one probability array per input (a list, or a 2-D array's rows)."""
    eps = 1e-12
    return float(np.mean([(a * (np.log(a + eps) - np.log(b + eps))).sum() for a, b in zip(p, q)]))


def _agreement(p: list[np.ndarray], q: list[np.ndarray]) -> float:
    """Share of the inputs (with something to choose from) whose most probable answer is the same."""
    return float(np.mean([a.argmax() == b.argmax() for a, b in zip(p, q) if a.size]))


def _with_fp32(plan: QuantPlan, keep: list[str], matmuls_only: bool = False) -> QuantPlan:
    from dataclasses import replace

    return replace(plan, nodes_to_exclude=list(dict.fromkeys(plan.nodes_to_exclude + keep)),
                   op_types=WEIGHT_OPS if matmuls_only else plan.op_types, notes=[], fp32_matmuls=None)


def rank_sensitivity(src: Path, plan: QuantPlan, feeds: list[dict], work: Path, threads: int = 2) -> list[dict]:
    """[{node, kl}] for every weight MatMul, most INT8-sensitive first: the mean KL(FP32 || INT8) of the
    output probabilities when only that MatMul is quantized (with the plan's settings), batch 1."""
    if plan.mode != "dynamic":
        raise ValueError("sensitivity ranking is for dynamic INT8; static QDQ (--calibration-data) has its own ranges")
    ref = output_probs(src, feeds, threads)
    names = weight_matmuls(src)
    out = [{"node": name, "kl": int8_drift(src, _with_fp32(plan, [n for n in names if n != name], matmuls_only=True),
                                           feeds, work, threads, ref)} for name in names]
    return sorted(out, key=lambda r: -r["kl"])


def fp32_ladder(src: Path, plan: QuantPlan, ranking: list[dict], ks, feeds: list[dict], timing_feed: dict, work: Path,
                threads: int = 2) -> list[dict]:
    """For each k: the plan's INT8 model with the k most sensitive MatMuls FP32, against FP32 on `feeds`
    (label agreement, mean KL), its size, and its batch-1 p50 relative to the first k, timed interleaved."""
    from types import SimpleNamespace

    from ..edge.timing import summarize, time_interleaved

    ref = output_probs(src, feeds, threads)
    total = sum(r["kl"] for r in ranking) or 1.0
    rows, runners = [], {}
    work.mkdir(parents=True, exist_ok=True)
    for k in ks:
        keep = [r["node"] for r in ranking[:k]]
        dst = work / f"fp32-top{k}.onnx"
        quantize(src, dst, _with_fp32(plan, keep))
        s = _session(dst, threads)
        q = _probs(s, feeds)
        rows.append({"k": k, "nodes": keep, "agreement": _agreement(ref, q), "kl": mean_kl(ref, q),
                     "kl_share_removed": sum(r["kl"] for r in ranking[:k]) / total, "size_mb": dst.stat().st_size / 1e6})
        runners[k] = SimpleNamespace(call=lambda f, s=s: s.run(None, f))
    timed = time_interleaved(runners, {k: timing_feed for k in runners}, SimpleNamespace(min_time=1.0, min_iters=20, warmup=0.2))
    p50 = {k: summarize(t["times_ns"], 1)["p50_ms"] for k, t in timed.items()}
    for r in rows:
        r["p50_ratio"] = p50[r["k"]] / p50[ks[0]]
    return rows


def pick_k(ladder: list[dict], min_agreement: float, kl_budget: float = KL_BUDGET) -> dict:
    """The smallest k that agrees with FP32 on >= min_agreement and whose KL is within the budget;
    the ladder's best (largest k) when none does, flagged `met: False` for the note."""
    for r in ladder:
        if r["agreement"] >= min_agreement and r["kl"] <= kl_budget:
            return {**r, "met": True}
    return {**ladder[-1], "met": False}


def keep_sensitive_fp32(src: Path, plan: QuantPlan, setting: str, feeds: list[dict], timing_feed: dict, work: Path,
                        min_agreement: float, threads: int = 2, echo=print) -> None:
    """--int8-fp32 N|auto: rank the weight MatMuls, choose k, and put the chosen nodes into the plan's
    nodes_to_exclude, with what they cost in plan.fp32_matmuls and a note."""
    echo(f"ranking {len(weight_matmuls(src))} MatMuls by INT8 sensitivity on {min(len(feeds), RANK_FEEDS)} parity inputs ...")
    ranking = rank_sensitivity(src, plan, feeds[:RANK_FEEDS], work, threads)
    ks = [k for k in FP32_LADDER if k <= len(ranking)] if setting == "auto" else [0, min(int(setting), len(ranking))]
    ladder = fp32_ladder(src, plan, ranking, ks, feeds, timing_feed, work, threads)
    for r in ladder:
        echo(f"  top {r['k']:>2} FP32: labels agree with FP32 on {100 * r['agreement']:.1f} %, KL {r['kl']:.2e}, "
             f"{r['size_mb']:.1f} MB, p50 x{r['p50_ratio']:.3f} of all-INT8")
    chosen = pick_k(ladder, min_agreement) if setting == "auto" else {**ladder[-1], "met": None}
    plan.nodes_to_exclude = list(dict.fromkeys(plan.nodes_to_exclude + chosen["nodes"]))
    base = ladder[0]
    plan.fp32_matmuls = {"requested": setting, "k": chosen["k"], "nodes": chosen["nodes"], "kl_budget": KL_BUDGET if setting == "auto" else None,
                         "ranking": [{"node": r["node"], "kl": round(r["kl"], 10)} for r in ranking],
                         "ladder": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items() if k != "nodes"} for r in ladder]}
    if chosen["k"]:
        plan.notes.append(f"kept the {chosen['k']} most INT8-sensitive MatMuls FP32 ({', '.join(chosen['nodes'])}): "
                          f"{100 * chosen['kl_share_removed']:.0f} % of the single-MatMul KL removed, KL vs FP32 "
                          f"{base['kl']:.2e} -> {chosen['kl']:.2e}, labels agreeing with FP32 {100 * base['agreement']:.1f} -> "
                          f"{100 * chosen['agreement']:.1f} %, +{chosen['size_mb'] - base['size_mb']:.1f} MB, "
                          f"batch-1 p50 x{chosen['p50_ratio']:.3f}")
    if chosen["met"] is False:
        plan.notes.append(f"--int8-fp32 auto: no k in {ks} met agreement >= {100 * min_agreement:.1f} % and KL <= {KL_BUDGET:g}; "
                          f"kept the top {chosen['k']}")
    echo(f"keeping {chosen['k']} MatMul(s) FP32" + ("" if chosen["met"] is not False else " (no k met the target; the largest tried)"))
