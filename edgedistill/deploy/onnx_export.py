"""PyTorch -> ONNX with optimum's exporter, then onnxruntime's transformer graph fusions.

Fusion first, quantization after (edgedistill/deploy/quantize.py): fused Attention / SkipLayerNorm /
BiasGelu nodes quantize into QAttention and integer MatMuls, which is where INT8 speed comes from.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ..edge.families import FAMILIES
from ..model_dir import load_config

# onnxruntime.transformers.optimizer knows these encoder graphs; others keep ORT's generic optimizations.
FUSION_MODEL_TYPE = {
    "bert": "bert",
    "roberta": "bert",
    "distilbert": "bert",
    "xlm-roberta": "bert",
    "electra": "bert",
    "mpnet": "bert",
    "deberta-v2": "bert",
    "t5": "t5",
    "mt5": "t5",
    "bart": "bart",
}


def family_of(config) -> str:
    archs = " ".join(config.architectures or [])
    if "ForMultipleChoice" in archs:
        return "multiple-choice"
    if "ForSequenceClassification" in archs:
        return "sequence-classification"
    if config.is_encoder_decoder or "ForConditionalGeneration" in archs:
        return "seq2seq"
    raise ValueError(
        f"unsupported architecture {config.architectures}; expected a sequence-classification, "
        "multiple-choice or seq2seq model (e.g. a dir written by `edgedistill strip`)"
    )


def export_onnx(model_dir: Path, out_dir: Path, family: str, opset: int | None = None) -> dict[str, Path]:
    """optimum export of a transformers dir; returns {role: onnx path}."""
    # deferred: optimum/torch/onnx load only to export; evaluate and bench import this module without them
    from optimum.exporters.onnx import main_export

    logging.getLogger("optimum").setLevel(logging.ERROR)
    kwargs = {"opset": opset} if opset else {}
    task, files = FAMILIES[family].optimum_task, dict(FAMILIES[family].onnx_files)
    if family == "seq2seq" and not has_past(load_config(model_dir)):
        # optimum exports bert2bert (EncoderDecoderModel with a BERT decoder) without past keys/values:
        # the runtime then re-reads the whole answer so far at each step, cheap for answers of a few tokens.
        task = task.removesuffix("-with-past")
        files.pop("decoder_with_past")
    from ..distill.student import MEAN_FORWARDS, exportable, load_label_model, pooling_of

    if pooling_of(load_config(model_dir)) in MEAN_FORWARDS:
        # transformers' own class for this dir would read [CLS]: export the model as trained (its forward
        # means the token states; the graph's inputs and outputs are optimum's for the task, as for any BERT)
        from optimum.exporters.onnx import onnx_export_from_model

        model = exportable(load_label_model(model_dir, family))
        onnx_export_from_model(
            model,
            str(out_dir),
            task=task,
            do_validation=False,
            custom_onnx_configs=with_token_types(model, task),
            **kwargs,
        )
    else:
        main_export(str(model_dir), str(out_dir), task=task, do_validation=False, **kwargs)
    return {role: out_dir / name for role, name in files.items()}


def with_token_types(model, task: str) -> dict | None:
    """custom_onnx_configs for a two-tower multiple-choice student whose encoder has no token types of its own
    (MPNet): optimum's config for it with token_type_ids among the graph's inputs, which say where the question
    ends (`student.segment_inputs`); None where optimum's own config has them (BERT) or the head needs none."""
    # deferred: optimum/torch/onnx load only to export; evaluate and bench import this module without them
    from optimum.exporters.tasks import TasksManager

    from ..distill.student import TWO_TOWER, pooling_of

    if pooling_of(model.config) != TWO_TOWER or task != "multiple-choice":
        return None
    own = TasksManager.get_exporter_config_constructor("onnx", model=model, task=task)(model.config)
    if "token_type_ids" in own.inputs:
        return None

    class WithTokenTypes(type(own)):
        @property
        def inputs(self):
            inputs = super().inputs
            return {**inputs, "token_type_ids": inputs["input_ids"]}

    return {"model": WithTokenTypes(model.config, task=task)}


def has_past(config) -> bool:
    """Whether optimum can export this seq2seq model's decoder with past keys/values."""
    # deferred: optimum/torch/onnx load only to export; evaluate and bench import this module without them
    from ..distill.student import DECODER_CAPABLE

    return not (config.model_type == "encoder-decoder" and config.decoder.model_type in DECODER_CAPABLE)


def fuse(onnx_path: Path, out_path: Path, config) -> dict:
    """Apply onnxruntime's transformer fusions; returns the fused-op counts (what actually fused)."""
    # deferred: optimum/torch/onnx load only to export; evaluate and bench import this module without them
    from onnxruntime.transformers.optimizer import optimize_model

    model_type = FUSION_MODEL_TYPE.get(config.model_type)
    if model_type is None or model_type != "bert":
        # Decoder graphs with past and unknown encoders: ORT's session-time optimizer still runs.
        shutil.copyfile(onnx_path, out_path)
        return {}
    heads = getattr(config, "num_attention_heads", 0)
    hidden = getattr(config, "hidden_size", 0)
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    model = optimize_model(str(onnx_path), model_type=model_type, num_heads=heads, hidden_size=hidden, opt_level=0)
    model.save_model_to_file(str(out_path))
    return {k: v for k, v in model.get_fused_operator_statistics().items() if v}
