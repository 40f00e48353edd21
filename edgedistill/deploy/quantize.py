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

from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx

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


def quantize(src: Path, dst: Path, plan: QuantPlan, calibration_feeds: list[dict] | None = None) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

    weight_type = getattr(QuantType, plan.weight_type)
    if plan.mode == "dynamic":
        quantize_dynamic(str(src), str(dst), per_channel=plan.per_channel, reduce_range=plan.reduce_range,
                         weight_type=weight_type, nodes_to_exclude=plan.nodes_to_exclude or None,
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
                    weight_type=QuantType.QInt8, nodes_to_exclude=plan.nodes_to_exclude or None,
                    extra_options=EXTRA_OPTIONS)
