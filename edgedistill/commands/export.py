"""`edgedistill export`: stripped (or student) model -> verified INT8 ONNX bundle."""

from __future__ import annotations

import click

from ..bounds import CascadeThreshold, Int8Fp32
from ..deploy.cascade import shipped_cascade
from ..deploy.export import ExportConfig, export_bundle, summary_lines
from ..options import field_option


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("model", type=click.Path())
@field_option(
    "export",
    ExportConfig,
    "out",
    type=click.Path(file_okay=False),
    help="Bundle directory to write (replaced only if parity holds).",
)
@field_option("export", ExportConfig, "quantize")
@field_option(
    "export",
    ExportConfig,
    "target",
    help="CPU to tune INT8 for; auto detects AVX-512 VNNI / AVX-VNNI / AVX2 / arm64 here.",
)
@field_option(
    "export",
    ExportConfig,
    "parity_data",
    type=click.Path(),
    help="Inputs for the parity check (data file or annotations.jsonl); "
    "default: a sample of the student's training annotations.",
)
@field_option(
    "export",
    ExportConfig,
    "calibration_data",
    type=click.Path(),
    help="Inputs to calibrate static (QDQ) INT8; without it INT8 is dynamic.",
)
@field_option("export", ExportConfig, "max_length", help="Token limit of the bundle (default: the student's).")
@field_option("export", ExportConfig, "min_agreement", help="Fail if INT8 labels agree with torch on fewer inputs.")
@field_option("export", ExportConfig, "parity_samples", help="How many inputs the parity check uses.")
@field_option(
    "export",
    ExportConfig,
    "int8_fp32",
    type=Int8Fp32(),
    metavar="N|auto",
    help="Keep the N MatMuls whose INT8 moves the output most (each quantized alone, KL vs FP32 on the parity "
    "inputs, batch 1) in FP32; auto: the smallest N of 0,1,2,3,6,12 whose labels agree with FP32 on >= "
    "--min-agreement and whose KL <= 1e-3. Ranking adds 1-2 min to a MiniLM export on 2 cores; the cost in size and "
    "latency is printed and kept in the manifest. Dynamic INT8 of classifiers and multiple choice only.",
)
@field_option(
    "export",
    ExportConfig,
    "smooth",
    metavar="ALPHA",
    help="SmoothQuant before dynamic INT8: divide each MatMul input channel by s and multiply the weight row by "
    "s (same FP32 model), s = max|x|^ALPHA / max|w|^(1-ALPHA) over the parity inputs, so activation outliers "
    "no longer coarsen the INT8 scale of the other channels. 1/s folds into the op making the input where the path "
    "is linear (no run-time cost); an explicit Mul divides other inputs only where it halves the drift, and never a "
    "LayerNorm's output (see --smooth-layernorm). Kept only if it lowers the INT8 model's KL to FP32 on the parity "
    "inputs (the export says which). 0 turns it off.",
)
@field_option(
    "export",
    ExportConfig,
    "smooth_layernorm",
    help="Also divide LayerNorm outputs by an explicit Mul where they cannot fold (a post-LayerNorm encoder such as "
    "MiniLM: the residual reads them too), where that halves the drift: e-SNLI student KL 6.5e-3 -> 3.0e-3 for about "
    "5 % of the batch-1 latency (docs/measured.md). For a student whose INT8 labels miss --min-agreement.",
)
@field_option("export", ExportConfig, "threads", help="Threads for the latency check.")
@field_option("export", ExportConfig, "zip", help="Also write BUNDLE.zip.")
@field_option(
    "export",
    ExportConfig,
    "text_model",
    help="Also write text_model.onnx for apps: raw text in, label probabilities out, "
    "tokenized in the graph by onnxruntime-extensions (classification, WordPiece tokenizers); verified like parity.",
)
@field_option(
    "export",
    ExportConfig,
    "cascade",
    type=click.Path(file_okay=False),
    metavar="STATIC_DIR",
    help="Also ship this static student (compress MODEL --into static) in front of MODEL: it answers where its top "
    "probability is >= --cascade-threshold, the transformer elsewhere (EdgeModel and export/js run it). Default: "
    "the cascade compress --latency-budget shipped in MODEL (MODEL/cascade/, at its P), if it did.",
)
@field_option(
    "export",
    ExportConfig,
    "cascade_threshold",
    type=CascadeThreshold(),
    metavar="auto|P",
    help="The static tier's P; auto: the smallest P keeping the transformer's answers on >= --cascade-agreement of "
    "the parity inputs (--parity-data, held out; else a sample of the training annotations, which the export notes).",
)
@field_option(
    "export", ExportConfig, "cascade_agreement", help="auto: share of the transformer's answers the cascade keeps."
)
def export(model, **kw):
    """Export MODEL (a dir from `edgedistill strip`, or a student dir) to an ONNX bundle.

    optimum exports the model, onnxruntime fuses the graph and quantizes it to INT8 for the
    target CPU; the bundle is written only if ONNX FP32 matches torch (max |Δlogit| <= 1e-3) and
    INT8 agrees with torch on the labels (>= --min-agreement). Also writes ORT-format models for
    ONNX Runtime Mobile. Load it with `edgedistill.runtime.EdgeModel.load(BUNDLE)`.
    """
    m = export_bundle(shipped_cascade(ExportConfig(model=model, **kw)), echo=click.echo)
    for line in summary_lines(m, kw["out"]):
        click.echo(line)
