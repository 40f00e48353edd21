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
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from ..choices import SMOOTH_ALPHA
from ..edge.machine import cpu_preset
from ..edge.runtime import softmax
from ..edge.timing import summarize, time_interleaved

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
    fp32_matmuls: dict | None = (
        None  # --int8-fp32: the sensitive MatMuls kept FP32 and what they cost (keep_sensitive_fp32)
    )
    smooth: dict | None = None  # --smooth: the activation smoothing applied before quantizing (smooth_activations)

    def to_dict(self) -> dict:
        return asdict(self)


def detect_preset(target: str) -> tuple[str, str, dict]:
    """(target, preset, isa flags) for --target auto|x86|arm64 on this machine: edge.machine.cpu_preset,
    the rule bench's optimum peer and every results.json's machine record use too."""
    return cpu_preset(target)


def plan_for(
    target: str, preset: str, model_type: str, onnx_path: Path | None = None, static: bool = False
) -> QuantPlan:
    p = QuantPlan(preset=preset, target=target, mode="static-qdq" if static else "dynamic", **PRESETS[preset])
    if static:
        p.per_channel, p.reduce_range = True, preset in ("avx2", "avx512")
    if model_type in ("t5", "mt5", "umt5") and onnx_path is not None:
        p.nodes_to_exclude = t5_ffn_output_nodes(onnx_path)
        if p.nodes_to_exclude:
            p.notes.append(
                f"kept {len(p.nodes_to_exclude)} T5 FFN output projections (wo) in FP32: they overflow in INT8"
            )
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
    # deferred: about a second to import; only quantizing needs it
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    weight_type = getattr(QuantType, plan.weight_type)
    if plan.mode == "dynamic":
        quantize_dynamic(
            str(src),
            str(dst),
            per_channel=plan.per_channel,
            reduce_range=plan.reduce_range,
            weight_type=weight_type,
            nodes_to_exclude=_excluded(plan.nodes_to_exclude),
            op_types_to_quantize=plan.op_types,
            extra_options=EXTRA_OPTIONS,
        )
        return

    class Reader(CalibrationDataReader):
        def __init__(self, feeds):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    # MatMuls only: they carry nearly all the compute, and quantizing the classifier's Gemm bias
    # needs an input scale that a saturated tanh pooler does not always provide.
    quantize_static(
        str(src),
        str(dst),
        Reader(calibration_feeds or []),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        per_channel=plan.per_channel,
        reduce_range=plan.reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=_excluded(plan.nodes_to_exclude),
        extra_options=EXTRA_OPTIONS,
    )


# ---------------------------------------------------------------- activation smoothing (--smooth, SmoothQuant)
# Dynamic INT8 quantizes each MatMul input with one scale for the whole tensor, so the few channels with large
# activations (LayerNorm and GELU outliers) set a scale that rounds every other channel coarsely. SmoothQuant
# (Xiao et al. 2023) divides input channel j by s_j and multiplies weight row j by s_j: the FP32 function is
# unchanged, the activation range is flattened, and the weights (per-channel INT8) absorb the difference.
# s_j = max|x_j|^alpha / max|w_j|^(1 - alpha), the activation maxima taken over the parity inputs, batch 1.
# The quickstart's MiniLM student (mean KL(FP32 || INT8) of the output probabilities on its 240 parity inputs,
# scales from 64 of them, every input smoothed): 5.8e-4 unsmoothed; alpha 0.5: 9.9e-4, 0.6: 3.0e-4, 0.7: 1.8e-4,
# 0.8: 1.2e-4, 0.9: 1.5e-4, 1.0: 2.5e-4 (an e-SNLI student's held-out rows: 3.2e-3 unsmoothed, 5.5e-4 at 0.8).
# Default: SMOOTH_ALPHA.
#
# Where the division goes. It costs nothing at run time when it folds into the op that makes the input, along a
# path that is linear per channel: a LayerNorm's gain and bias (SmoothQuant's own recipe, for pre-LN models), or a
# constant weight's columns and its bias through reshapes, transposes and the attention's probabilities x values
# product (BERT's attention output projection reads the value projection that way). Every tensor on that path must
# feed nothing else but Shape: a post-LN model (BERT, MiniLM, MPNet) also adds each LayerNorm's output into the
# residual stream, which the fold would scale too, and GELU is not linear, so its output cannot pass the scale on.
# Elsewhere only an explicit Mul before the MatMul can divide (one more pass over the activations per call). The
# Mul sites are grouped by role (mul_group: the Q/K/V input, FFN-in, FFN-out); the export measures the folded graph
# plus each group's Muls alone, ranks the groups by drift cut per channel multiplied (rank_mul_groups), and adds
# them in that order until the Muls kept cut the folded graph's INT8 drift MUL_KL_GAIN times (muls_pay); if even
# every group that helps does not, no Mul ships (pick_smoothing).
# A LayerNorm's output gets a Mul only when asked for (LAYERNORM_GROUPS, export --smooth-layernorm): where it
# cannot take 1/s into its gain and bias, the residual Add reads it too (a post-LN encoder), and no other op can
# absorb the scale (the next LayerNorm normalizes over channels, so a per-channel scale does not pass through it).
# Those Muls buy the most drift cut (e-SNLI student: KL 6.5e-3 folded -> 3.0e-3) but cost 4 to 15 % of the batch-1
# latency (AVX-512 VNNI), the bundle's parity with optimum's INT8 (docs/measured.md, "Activation smoothing").
# MiniLM-L6 students (post-LN): 6 of 24 inputs fold (the attention outputs'); the KL on the parity inputs, unsmoothed
# / folded / folded + all 18 Muls: quickstart 5.9e-4 / 5.0e-4 / 1.2e-4, e-SNLI (benchmarks/latency.py's student)
# 7.6e-3 / 6.5e-3 / 2.9e-3. Folds + one group's 6 Muls: Q/K/V 4.7e-4 / 9.0e-3, FFN-in 3.7e-4 / 5.7e-3, FFN-out
# 3.4e-4 / 6.2e-3 (no group pays alone; FFN-in + FFN-out, 12 Muls, 1.7e-4 / 3.0e-3, pay together). By default
# both ship folded, no Mul: 4.9e-4 / 6.5e-3; with --smooth-layernorm the 12 Muls.
SMOOTH_CLIP = (1e-3, 1e3)  # s stays in this range: a dead channel (max |x| = 0) must not blow its weight row up
MUL_KL_GAIN = 2.0  # a group of explicit Muls ships only if it divides the INT8 KL to FP32 of the folded graph by this
FOLD_TOLERANCE = 1e-4  # the smoothed FP32 graph's outputs may move this much, relative to the largest |output|
NORMS = {
    "LayerNormalization": (1, 2),
    "SimplifiedLayerNormalization": (1, None),  # op -> its gain and bias inputs
    "SkipLayerNormalization": (2, 3),
    "SkipSimplifiedLayerNormalization": (2, None),
}
SHAPE_ONLY = {"Shape"}  # consumers that read only a tensor's shape, which a per-channel scale keeps
SITE_KINDS = ("layernorm", "linear", "mul", "unsmoothed")  # where a smoothed input's 1/s went (the manifest's count)
LAYERNORM_GROUPS = ("qkv_in", "ffn_in")  # mul_group's roles of a LayerNorm's output: a Mul only if asked for


@dataclass
class SmoothSite:
    """One MatMul input to smooth: the tensor, the MatMuls reading it (node indices), its scales s, and the edits
    that fold 1/s into the op making it ((node index, input index, factor) each), or None when nothing can."""

    tensor: str
    readers: list[int]
    scale: np.ndarray
    fold: str | None = None  # "layernorm" | "linear"
    edits: list | None = None
    group: str = "input"  # its role, for the per-group Mul decision (mul_group)


def mul_group(g: _Graph, tensor: str, readers: list[int]) -> str:
    """The role of a MatMul input, from the op making it: "qkv_in" (a LayerNorm's output read by several MatMuls:
    Q, K and V), "ffn_in" (a LayerNorm's output read by one), "input" (the graph's input), "ffn_out" (anything else:
    in a BERT the GELU's output, the FFN's second MatMul input, as wide as the FFN)."""
    k = g.producer.get(tensor)
    if k is None:
        return "input"
    if g.nodes[k].op_type in NORMS:
        return "qkv_in" if len(readers) > 1 else "ffn_in"
    return "ffn_out"


class _Graph:
    """Producers, consumers and constants of a model's graph (constants: initializers, Constant nodes, and
    Identity of either, as torch's exporter writes shared parameters)."""

    def __init__(self, model: onnx.ModelProto):
        self.model, self.nodes = model, list(model.graph.node)
        self.inits = {i.name: i for i in model.graph.initializer}
        self.consts = {n: numpy_helper.to_array(i) for n, i in self.inits.items()}
        self.producer, self.consumers = {}, {}
        for k, n in enumerate(self.nodes):
            for o in n.output:
                self.producer[o] = k
            for i in n.input:
                self.consumers.setdefault(i, []).append(k)
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
            elif n.op_type == "Identity" and n.input[0] in self.consts:
                self.consts[n.output[0]] = self.consts[n.input[0]]
        self.outputs = {o.name for o in model.graph.output}
        self.uses = Counter(i for n in self.nodes for i in n.input)

    def const(self, k: int, i: int) -> np.ndarray | None:
        n = self.nodes[k]
        return self.consts.get(n.input[i]) if i < len(n.input) and n.input[i] else None

    def scale_const(self, k: int, i: int, factor: np.ndarray) -> None:
        """Multiply node k's constant input i by `factor` (broadcast to its shape): in place where that initializer
        feeds only this input, else as a new initializer of its own."""
        n, name = self.nodes[k], self.nodes[k].input[i]
        value = self.consts[name]
        value = (value * np.broadcast_to(factor, value.shape)).astype(value.dtype)
        if name not in self.inits or self.uses[name] > 1:
            self.uses[name] -= 1
            name = n.input[i] = _fresh(f"{name}_smoothed", self.consts)
            self.inits[name] = self.model.graph.initializer.add()
            self.uses[name] = 1
        self.inits[name].CopyFrom(numpy_helper.from_array(value, name))
        self.consts[name] = value


def _fresh(base: str, taken) -> str:
    name, k = base, 1
    while name in taken:
        name, k = f"{base}{k}", k + 1
    return name


def smoothable_matmuls(g: _Graph) -> dict[str, list[int]]:
    """MatMul input tensor -> the MatMuls (node indices) reading it with a 2-D constant weight of their own, an
    initializer (Q, K and V share one input)."""
    groups: dict[str, list] = {}
    for k, n in enumerate(g.nodes):
        w = g.inits.get(n.input[1]) if n.op_type == "MatMul" else None
        if w is not None and len(w.dims) == 2 and g.uses[n.input[1]] == 1:
            groups.setdefault(n.input[0], []).append(k)
    return groups


def _absorber(g: _Graph, k: int, t: str) -> bool:
    """Whether node k, which makes tensor t, can take a per-channel 1/s into its constants: a LayerNorm over the
    last axis (its gain and bias), a MatMul by a constant matrix (its columns), a Mul by a constant."""
    n = g.nodes[k]
    if n.op_type in NORMS:
        gain, bias = NORMS[n.op_type]
        axis = next((a.i for a in n.attribute if a.name == "axis"), -1)
        return (
            n.output[0] == t
            and axis == -1
            and g.const(k, gain) is not None
            and (bias is None or len(n.input) <= bias or not n.input[bias] or g.const(k, bias) is not None)
        )
    if n.op_type == "MatMul":
        w = g.const(k, 1)
        return w is not None and w.ndim == 2 and g.const(k, 0) is None
    return n.op_type == "Mul" and sum(g.const(k, i) is not None for i in (0, 1)) == 1


def _passes(g: _Graph, k: int) -> int | None:
    """The input through which node k passes a per-channel scale of its output on (the scale may move to other
    axes, see _scale_back), or None: Identity, Reshape, Transpose, an Add of a constant bias, and a MatMul's
    right-hand side (probabilities x values: the contracted axis is not a channel axis)."""
    n = g.nodes[k]
    if n.op_type in ("Identity", "Reshape", "Transpose"):
        return 0
    if n.op_type == "Add" and sum(g.const(k, i) is not None for i in (0, 1)) == 1:
        return 0 if g.const(k, 1) is not None else 1
    if n.op_type == "MatMul" and g.const(k, 1) is None:
        return 1
    return None


def fold_path(g: _Graph, tensor: str, readers: list[int]) -> list[tuple[int, int, str]] | None:
    """From the op making `tensor` back to the op that can absorb its 1/s: (node, input the path goes on through or
    -1 for the absorber, the node's output on the path) each; None when a tensor on the way feeds anything else
    (Shape aside) or an op on the way is not linear per channel."""
    path, t, allowed = [], tensor, set(readers)
    while True:
        others = [c for c in g.consumers.get(t, []) if c not in allowed and g.nodes[c].op_type not in SHAPE_ONLY]
        if t in g.outputs or others:
            return None
        k = g.producer.get(t)
        if k is None:
            return None
        if _absorber(g, k, t):
            return path + [(k, -1, t)]
        i = _passes(g, k)
        if i is None:
            return None
        path.append((k, i, t))
        t, allowed = g.nodes[k].input[i], {k}


def _reshape_back(sc: np.ndarray, pairs: set) -> np.ndarray | None:
    """A scale on a Reshape's output as a scale on its input: only when, on every input seen, the Reshape refactors
    the same trailing block of constant axes (e.g. [.., T, 384] <-> [.., T, 12, 32]) and the scale lives in it."""
    blocks = set()
    for a, x in pairs:
        i = 0
        while i < min(len(a), len(x)) and a[i] == x[i]:
            i += 1
        blocks.add((len(a), len(x), a[i:], x[i:]))
    if len(blocks) != 1 or len(pairs) < 2:  # with one shape seen, the block could hold an axis that varies
        return None
    rank_a, rank_x, tail_a, tail_x = blocks.pop()
    lead = rank_x - len(tail_x)
    if sc.ndim != rank_x or not tail_x or any(d != 1 for d in sc.shape[:lead]):
        return None
    return np.broadcast_to(sc.reshape(sc.shape[lead:]), tail_x).reshape((1,) * (rank_a - len(tail_a)) + tail_a)


def _scale_back(g: _Graph, k: int, i: int, sc: np.ndarray, shapes: dict) -> np.ndarray | None:
    """The scale that node k's output carries (sc, shaped to broadcast over it) as a scale on its input i."""
    n = g.nodes[k]
    if n.op_type == "Identity" or n.op_type == "Add":
        return sc
    if n.op_type == "Transpose":
        perm = next(list(a.ints) for a in n.attribute if a.name == "perm")
        return np.transpose(sc, np.argsort(perm))
    if n.op_type == "Reshape":
        return _reshape_back(sc, {(a, x) for a, x in zip(shapes[n.input[0]], shapes[n.output[0]])})
    # MatMul, path on the right-hand side: the scale must not vary along the contracted axis, and where it varies
    # the right-hand side must have the output's extent (not broadcast)
    rhs, out = shapes[n.input[1]], shapes[n.output[0]]
    full = all(sb == so for b, o in zip(rhs, out) for sb, so, d in zip(b, o, sc.shape) if d > 1)
    return sc if sc.ndim >= 2 and sc.shape[-2] == 1 and full and {len(s) for s in rhs} == {sc.ndim} else None


def _unchanged_shape(const: np.ndarray, sc: np.ndarray) -> bool:
    """Whether dividing a constant by sc keeps its shape (a scalar 0.5 would grow into a vector)."""
    return _squeezed_front(np.broadcast_shapes(const.shape, sc.shape)) == _squeezed_front(const.shape)


def _squeezed_front(shape: tuple) -> tuple:
    """shape without its leading 1s."""
    return tuple(shape)[next((j for j, d in enumerate(shape) if d != 1), len(shape)) :]


def _absorb(g: _Graph, k: int, sc: np.ndarray) -> list | None:
    """The edits (node, input, factor) that make node k's output come out divided by sc, or None."""
    n = g.nodes[k]
    last_only = all(d == 1 for d in sc.shape[:-1])
    if n.op_type in NORMS:
        present = [i for i in NORMS[n.op_type] if i is not None and i < len(n.input) and n.input[i]]
        return [(k, i, 1 / sc.reshape(-1)) for i in present] if last_only else None
    if n.op_type == "MatMul":
        return [(k, 1, 1 / sc.reshape(1, -1))] if last_only else None
    i = 0 if g.const(k, 0) is not None else 1  # Mul by a constant
    return [(k, i, _fit(1 / sc, g.const(k, i)))] if _unchanged_shape(g.const(k, i), sc) else None


def _fit(factor: np.ndarray, const: np.ndarray) -> np.ndarray:
    """factor, broadcastable to const's shape (without leading axes const does not have)."""
    return factor.reshape(factor.shape[factor.ndim - const.ndim :]) if factor.ndim > const.ndim else factor


def fold_edits(g: _Graph, path: list, s: np.ndarray, shapes: dict) -> list | None:
    """The edits that fold the 1/s of the path's first tensor into the path's absorber, with the constant biases on
    the way divided too; None when a Reshape or MatMul on the way would mix the channels with other axes."""
    first = path[0][2]
    sc, edits = s.reshape((1,) * (len(shapes[first][0]) - 1) + (-1,)), []
    for k, i, _ in path[:-1]:
        if g.nodes[k].op_type == "Add":
            b = 1 - i
            if not _unchanged_shape(g.const(k, b), sc):
                return None
            edits.append((k, b, _fit(1 / sc, g.const(k, b))))
        sc = _scale_back(g, k, i, sc, shapes)
        if sc is None:
            return None
    tail = _absorb(g, path[-1][0], sc)
    return None if tail is None else edits + tail


def activation_stats(
    model: onnx.ModelProto, maxima: list[str], shaped: list[str], feeds: list[dict], threads: int = 2
) -> tuple[dict[str, np.ndarray], dict[str, list[tuple]]]:
    """Per-channel max |x| of each tensor in `maxima` (last axis = channels) and the shapes every tensor in either
    list had, over `feeds`, run one call each."""
    names = list(dict.fromkeys(maxima + shaped))
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in names:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # fusions would hide the tensors
    session = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    top = {n: None for n in maxima}
    shapes = {n: [] for n in names}
    for f in feeds:
        for name, x in zip(names, session.run(names, f)):
            shapes[name].append(tuple(x.shape))
            if name in top:
                m = np.abs(x).reshape(-1, x.shape[-1]).max(0)
                top[name] = m if top[name] is None else np.maximum(top[name], m)
    return top, shapes


def _scales(a_max: np.ndarray, weights: list[np.ndarray], alpha: float) -> np.ndarray:
    w_max = np.max([np.abs(w).max(1) for w in weights], 0)
    s = np.where((a_max > 0) & (w_max > 0), a_max**alpha / np.maximum(w_max, 1e-12) ** (1 - alpha), 1.0)
    return np.clip(s, *SMOOTH_CLIP).astype(np.float32)


def smoothing_sites(src: Path, feeds: list[dict], alpha: float = SMOOTH_ALPHA, threads: int = 2) -> list[SmoothSite]:
    """Every smoothable MatMul input of the graph at `src`: its scales (activation maxima over `feeds`, the weights
    as they are) and, where its path allows, the edits that fold 1/s into the op making it."""
    g = _Graph(onnx.load(str(src)))
    groups = smoothable_matmuls(g)
    paths = {x: fold_path(g, x, readers) for x, readers in groups.items()}
    shaped = [t for p in paths.values() if p for _, _, t in p]  # each step's output, so every step's input too
    maxima, shapes = activation_stats(g.model, list(groups), shaped, feeds, threads)
    sites = []
    for x, readers in groups.items():
        s = _scales(maxima[x], [g.const(k, 1) for k in readers], alpha)
        edits = fold_edits(g, paths[x], s, shapes) if paths[x] else None
        fold = None if edits is None else "layernorm" if g.nodes[paths[x][-1][0]].op_type in NORMS else "linear"
        sites.append(SmoothSite(x, readers, s, fold, edits, mul_group(g, x, readers)))
    return sites


def smooth_activations(src: Path, dst: Path, sites: list[SmoothSite], muls: bool | Collection[str]) -> dict:
    """Write to `dst` the FP32 graph at `src` with each site's MatMul weight rows multiplied by s and its input
    divided by s: folded where the site can fold, by an explicit Mul before the MatMuls elsewhere when `muls` (True:
    every site but a LayerNorm's output; a collection of groups: the sites of those groups, LAYERNORM_GROUPS only
    when named), else not at all. Returns what was done (the manifest's count of inputs per kind), for the plan."""
    g = _Graph(onnx.load(str(src)))
    inserts, kinds = [], Counter()
    for site in sites:
        kind = site.fold or ("mul" if _mul_at(site, muls) else "unsmoothed")
        kinds[kind] += 1
        if kind == "unsmoothed":
            continue
        for k in site.readers:
            g.scale_const(k, 1, site.scale[:, None])
        for k, i, factor in site.edits or []:
            g.scale_const(k, i, factor)
        if kind == "mul":
            inserts.append(site)
    nodes = list(g.model.graph.node)
    for site in inserts:
        x = site.tensor
        inv = numpy_helper.from_array((1 / site.scale).astype(np.float32), f"{x}_smooth_inv_scale")
        g.model.graph.initializer.append(inv)
        nodes.insert(
            nodes.index(g.nodes[site.readers[0]]),
            onnx.helper.make_node("Mul", [x, f"{x}_smooth_inv_scale"], [f"{x}_smoothed"], name=f"{x}_smooth"),
        )
        for k in site.readers:
            g.nodes[k].input[0] = f"{x}_smoothed"
    del g.model.graph.node[:]
    g.model.graph.node.extend(nodes)
    _drop_unused_initializers(g.model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(g.model, str(dst))
    smoothed = [s for s in sites if s.fold or _mul_at(s, muls)]
    return {
        "matmuls": sum(len(s.readers) for s in smoothed),
        "inputs": len(smoothed),
        "sites": {k: kinds[k] for k in SITE_KINDS},
    }


def _mul_at(site: SmoothSite, muls: bool | Collection[str]) -> bool:
    """Whether `muls` (True: every site but a LayerNorm's output; groups: theirs) puts a Mul before this site."""
    if muls is True:
        return site.group not in LAYERNORM_GROUPS
    return not isinstance(muls, bool) and site.group in muls


def mul_groups(sites: list[SmoothSite], layernorm: bool = False) -> dict[str, dict]:
    """Group -> its unfoldable sites' count ("inputs"), and "width": the channels its Muls multiply per token (their
    run-time cost: an FFN output is 4x wider than the other inputs of a BERT), in the order first met; a LayerNorm's
    output (LAYERNORM_GROUPS) is a group only with `layernorm` (export --smooth-layernorm)."""
    out: dict[str, dict] = {}
    for s in sites:
        if not s.fold and (layernorm or s.group not in LAYERNORM_GROUPS):
            grp = out.setdefault(s.group, {"inputs": 0, "width": 0})
            grp["inputs"] += 1
            grp["width"] += int(s.scale.size)
    return out


def rank_mul_groups(kl_free: float, kl_groups: dict[str, float], widths: dict[str, int]) -> list[str]:
    """The Mul groups that lower the INT8 drift on their own (`kl_groups`: the folds and that group's Muls, against
    `kl_free` without any), best first by drift cut per unit of run-time cost: log(kl_free / kl) / width. The export
    adds them in this order until the Muls kept pay (muls_pay), so it ships the cheapest set that does."""
    cut = {grp: np.log(kl_free / kl) / widths[grp] for grp, kl in kl_groups.items() if 0 < kl < kl_free}
    return sorted(cut, key=lambda grp: -cut[grp])


def muls_pay(kl_free: float, kl_muls: float) -> bool:
    """Explicit Muls are worth their run-time cost when they divide the drift of the graph without them by
    MUL_KL_GAIN."""
    return kl_muls * MUL_KL_GAIN <= kl_free


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    """Initializers a fold replaced with a copy of its own (a parameter torch's exporter shared) and nothing reads."""
    used = {i for n in model.graph.node for i in n.input} | {v.name for v in [*model.graph.input, *model.graph.output]}
    keep = [i for i in model.graph.initializer if i.name in used]
    if len(keep) < len(model.graph.initializer):
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)


def output_change(src: Path, dst: Path, feeds: list[dict], threads: int = 2) -> float:
    """max |Δ| of the first output of the graph `dst` against `src` over `feeds`, relative to the largest |output|
    of `src`: how far smoothing moved the FP32 function (FOLD_TOLERANCE)."""
    a, b = _session(src, threads), _session(dst, threads)
    ref = [a.run(None, f)[0] for f in feeds]
    diff = max(float(np.abs(b.run(None, f)[0] - r).max()) for f, r in zip(feeds, ref))
    return diff / max(max(float(np.abs(r).max()) for r in ref), 1e-12)


def pick_smoothing(kl: dict[str, float]) -> str:
    """Which graph to quantize, from the INT8 drift (KL to FP32) measured for "unsmoothed" and for the candidates
    built: "folded" (every fold, nothing at run time) ships when it lowers the drift; "with_muls" (the folds, and
    explicit Muls for the groups of inputs kept) only when the Muls pay (muls_pay) against the better of those."""
    free = "folded" if kl.get("folded", np.inf) < kl["unsmoothed"] else "unsmoothed"
    return "with_muls" if muls_pay(kl[free], kl.get("with_muls", np.inf)) else free


def int8_drift(
    src: Path, plan: QuantPlan, feeds: list[dict], work: Path, threads: int = 2, ref: list[np.ndarray] | None = None
) -> float:
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
RANK_FEEDS = (
    64  # parity inputs the ranking runs (38 weight MatMuls/Gemms of a MiniLM x 64 inputs: 70-110 s on 2 shared cores)
)


def weight_matmuls(onnx_path: Path) -> list[str]:
    """Names of the MatMuls (and Gemms: pooler, classifier) with a constant weight: the ones dynamic INT8
    quantizes (MatMulConstBOnly)."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    consts = {i.name for i in model.graph.initializer}
    consts |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in model.graph.node if n.op_type in WEIGHT_OPS and n.input[1] in consts]


def _session(path: Path, threads: int):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def output_probs(path: Path, feeds: list[dict], threads: int = 2) -> list[np.ndarray]:
    """The probabilities the ONNX model at `path` outputs for each of `feeds` (see _probs)."""
    return _probs(_session(path, threads), feeds)


def _probs(session, feeds: list[dict]) -> list[np.ndarray]:
    """Output probabilities, one input per call (as an app asks; dynamic INT8 depends on the batch): one array per
    input, since multiple-choice inputs may have different numbers of choices."""
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
    return replace(
        plan,
        nodes_to_exclude=list(dict.fromkeys(plan.nodes_to_exclude + keep)),
        op_types=WEIGHT_OPS if matmuls_only else plan.op_types,
        notes=[],
        fp32_matmuls=None,
    )


def rank_sensitivity(src: Path, plan: QuantPlan, feeds: list[dict], work: Path, threads: int = 2) -> list[dict]:
    """[{node, kl}] for every weight MatMul, most INT8-sensitive first: the mean KL(FP32 || INT8) of the
    output probabilities when only that MatMul is quantized (with the plan's settings), batch 1."""
    if plan.mode != "dynamic":
        raise ValueError("sensitivity ranking is for dynamic INT8; static QDQ (--calibration-data) has its own ranges")
    ref = output_probs(src, feeds, threads)
    names = weight_matmuls(src)
    out = [
        {
            "node": name,
            "kl": int8_drift(
                src, _with_fp32(plan, [n for n in names if n != name], matmuls_only=True), feeds, work, threads, ref
            ),
        }
        for name in names
    ]
    return sorted(out, key=lambda r: -r["kl"])


def fp32_ladder(
    src: Path,
    plan: QuantPlan,
    ranking: list[dict],
    ks,
    feeds: list[dict],
    timing_feed: dict,
    work: Path,
    threads: int = 2,
) -> list[dict]:
    """For each k: the plan's INT8 model with the k most sensitive MatMuls FP32, against FP32 on `feeds`
    (label agreement, mean KL), its size, and its batch-1 p50 relative to the first k, timed interleaved."""
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
        rows.append(
            {
                "k": k,
                "nodes": keep,
                "agreement": _agreement(ref, q),
                "kl": mean_kl(ref, q),
                "kl_share_removed": sum(r["kl"] for r in ranking[:k]) / total,
                "size_mb": dst.stat().st_size / 1e6,
            }
        )
        runners[k] = SimpleNamespace(call=lambda f, s=s: s.run(None, f))
    timed = time_interleaved(
        runners, {k: timing_feed for k in runners}, SimpleNamespace(min_time=1.0, min_iters=20, warmup=0.2)
    )
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


def keep_sensitive_fp32(
    src: Path,
    plan: QuantPlan,
    setting: str,
    feeds: list[dict],
    timing_feed: dict,
    work: Path,
    min_agreement: float,
    threads: int = 2,
    echo=print,
) -> None:
    """--int8-fp32 N|auto: rank the weight MatMuls, choose k, and put the chosen nodes into the plan's
    nodes_to_exclude, with what they cost in plan.fp32_matmuls and a note."""
    echo(
        f"ranking {len(weight_matmuls(src))} MatMuls by INT8 sensitivity on {min(len(feeds), RANK_FEEDS)} parity "
        "inputs ..."
    )
    ranking = rank_sensitivity(src, plan, feeds[:RANK_FEEDS], work, threads)
    ks = [k for k in FP32_LADDER if k <= len(ranking)] if setting == "auto" else [0, min(int(setting), len(ranking))]
    ladder = fp32_ladder(src, plan, ranking, ks, feeds, timing_feed, work, threads)
    for r in ladder:
        echo(
            f"  top {r['k']:>2} FP32: labels agree with FP32 on {100 * r['agreement']:.1f} %, KL {r['kl']:.2e}, "
            f"{r['size_mb']:.1f} MB, p50 x{r['p50_ratio']:.3f} of all-INT8"
        )
    chosen = pick_k(ladder, min_agreement) if setting == "auto" else {**ladder[-1], "met": None}
    plan.nodes_to_exclude = list(dict.fromkeys(plan.nodes_to_exclude + chosen["nodes"]))
    base = ladder[0]
    plan.fp32_matmuls = {
        "requested": setting,
        "k": chosen["k"],
        "nodes": chosen["nodes"],
        "kl_budget": KL_BUDGET if setting == "auto" else None,
        "ranking": [{"node": r["node"], "kl": round(r["kl"], 10)} for r in ranking],
        "ladder": [
            {k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items() if k != "nodes"} for r in ladder
        ],
    }
    if chosen["k"]:
        plan.notes.append(
            f"kept the {chosen['k']} most INT8-sensitive MatMuls FP32 ({', '.join(chosen['nodes'])}): "
            f"{100 * chosen['kl_share_removed']:.0f} % of the single-MatMul KL removed, KL vs FP32 "
            f"{base['kl']:.2e} -> {chosen['kl']:.2e}, labels agreeing with FP32 {100 * base['agreement']:.1f} -> "
            f"{100 * chosen['agreement']:.1f} %, +{chosen['size_mb'] - base['size_mb']:.1f} MB, "
            f"batch-1 p50 x{chosen['p50_ratio']:.3f}"
        )
    if chosen["met"] is False:
        plan.notes.append(
            f"--int8-fp32 auto: no k in {ks} met agreement >= {100 * min_agreement:.1f} % and KL <= {KL_BUDGET:g}; "
            f"kept the top {chosen['k']}"
        )
    echo(
        f"keeping {chosen['k']} MatMul(s) FP32"
        + ("" if chosen["met"] is not False else " (no k met the target; the largest tried)")
    )
