"""`edgedistill export`: stripped (or student) model -> verified INT8 ONNX bundle."""

from __future__ import annotations

import click

from ..bounds import Int8Fp32, option_type
from ..choices import SMOOTH_ALPHA, Quantize, Target, values
from ..deploy.export import ExportConfig, export_bundle


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("model", type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Bundle directory to write (replaced only if parity holds).")
@click.option("--quantize", type=click.Choice(values(Quantize)), default="int8", show_default=True)
@click.option("--target", type=click.Choice(values(Target)), default="auto", show_default=True,
              help="CPU to tune INT8 for; auto detects AVX-512 VNNI / AVX-VNNI / AVX2 / arm64 here.")
@click.option("--parity-data", type=click.Path(), help="Inputs for the parity check (data file or annotations.jsonl); "
              "default: a sample of the student's training annotations.")
@click.option("--calibration-data", type=click.Path(), help="Inputs to calibrate static (QDQ) INT8; without it INT8 is dynamic.")
@click.option("--max-length", type=option_type("export", "max_length", int),
              help="Token limit of the bundle (default: the student's).")
@click.option("--min-agreement", type=option_type("export", "min_agreement", float), default=0.99, show_default=True,
              help="Fail if INT8 labels agree with torch on fewer inputs.")
@click.option("--parity-samples", type=option_type("export", "parity_samples", int), default=256, show_default=True,
              help="How many inputs the parity check uses.")
@click.option("--int8-fp32", type=Int8Fp32(), default="0", show_default=True, metavar="N|auto",
              help="Keep the N MatMuls whose INT8 moves the output most (each quantized alone, KL vs FP32 on the parity "
              "inputs, batch 1) in FP32; auto: the smallest N of 0,1,2,3,6,12 whose labels agree with FP32 on >= "
              "--min-agreement and whose KL <= 1e-3. Ranking adds 1-2 min to a MiniLM export on 2 cores; the cost in size and "
              "latency is printed and kept in the manifest. Dynamic INT8 of classifiers and multiple choice only.")
@click.option("--smooth", type=option_type("export", "smooth", float),
              default=SMOOTH_ALPHA, show_default=True, metavar="ALPHA",
              help="SmoothQuant before dynamic INT8: divide each MatMul input channel by s and multiply the weight row by "
              "s (same FP32 model), s = max|x|^ALPHA / max|w|^(1-ALPHA) over the parity inputs, so activation outliers "
              "no longer coarsen the INT8 scale of the other channels. Kept only if it lowers the INT8 model's KL to FP32 on "
              "the parity inputs (the export says which). 0 turns it off. e-SNLI and quickstart students: KL 4.8x and "
              "3.8x smaller at alpha 0.8, for 1-3 % batch-1 latency (benchmarks/results/int8_recipe.md).")
@click.option("--threads", type=option_type("export", "threads", int), default=2, show_default=True,
              help="Threads for the latency check.")
@click.option("--zip", "zip_", is_flag=True, help="Also write BUNDLE.zip.")
@click.option("--text-model", is_flag=True, help="Also write text_model.onnx for apps: raw text in, label probabilities out, "
              "tokenized in the graph by onnxruntime-extensions (classification, WordPiece tokenizers); verified like parity.")
def export(model, out, quantize, target, parity_data, calibration_data, max_length, min_agreement, parity_samples, int8_fp32,
           smooth, threads, zip_, text_model):
    """Export MODEL (a dir from `edgedistill strip`, or a student dir) to an ONNX bundle.

    optimum exports the model, onnxruntime fuses the graph and quantizes it to INT8 for the
    target CPU; the bundle is written only if ONNX FP32 matches torch (max |Δlogit| <= 1e-3) and
    INT8 agrees with torch on the labels (>= --min-agreement). Also writes ORT-format models for
    ONNX Runtime Mobile. Load it with `edgedistill.runtime.EdgeModel.load(BUNDLE)`.
    """
    m = export_bundle(ExportConfig(model=model, out=out, quantize=quantize, target=target, parity_data=parity_data,
                                   calibration_data=calibration_data, max_length=max_length, min_agreement=min_agreement,
                                   parity_samples=parity_samples, int8_fp32=int8_fp32, smooth=smooth, threads=threads, zip=zip_,
                                   text_model=text_model), echo=click.echo)
    for line in summary_lines(m, out):
        click.echo(line)


def summary_lines(m: dict, out) -> list[str]:
    """What export prints when the bundle is written (also under `edgedistill run`)."""
    p, lat = m["parity"], m["latency_batch1"]
    rows = [("bundle", out), ("family", m["family"]), ("quantization", f"{m['quantization'].get('mode')} ({m['target']['preset']})"),
            ("size (MB)", f"{m['size_bytes'] / 1e6:.1f} (checkpoint {m['source_size_bytes'] / 1e6:.1f})"),
            ("parity inputs", p["examples"]),
            ("FP32 max |Δlogit|", "–" if p["fp32_max_abs_logit_diff"] is None else f"{p['fp32_max_abs_logit_diff']:.2e}"),
            ("INT8 agreement", "–" if p["int8_agreement"] is None else f"{100 * p['int8_agreement']:.2f} %"),
            ("latency FP32 / INT8 (ms)", f"{lat['fp32_ms']:.2f} / {lat.get('int8_ms', float('nan')):.2f}  (batch 1, seq {lat['seq_len']})")]
    sm = m["quantization"].get("smooth")
    if sm:
        s = sm.get("sites") or {}
        kept = [grp for grp, g in (sm.get("mul_groups") or {}).items() if g["kept"]]
        muls = f" ({', '.join(kept)})" if kept else ""
        where = f" ({s['layernorm'] + s['linear']} folded, {s['mul']} by a Mul at run time{muls})" if s else ""
        rows.append(("smoothed before INT8", (f"{sm['matmuls']} MatMuls, {sm['inputs']} inputs{where} "
                                              f"(--smooth {sm['alpha']:g}): KL vs FP32 {sm['kl_unsmoothed']:.1e} -> "
                                              f"{sm['kl_smoothed']:.1e}")))
    kept = m["quantization"].get("fp32_matmuls")
    if kept:
        r = next(x for x in kept["ladder"] if x["k"] == kept["k"])
        rows.append(("MatMuls kept FP32", f"{kept['k']} (--int8-fp32 {kept['requested']}): KL vs FP32 {r['kl']:.1e}, "
                                          f"p50 x{r['p50_ratio']:.3f} of all-INT8"))
    if "text_model" in m:
        t = m["text_model"]["parity"]
        rows.append(("text model", f"{m['text_model']['file']} ({m['files'][m['text_model']['file']]['bytes'] / 1e6:.1f} MB), labels "
                                   f"{t['labels_equal']}/{t['examples']}, max |Δprob| {t['max_abs_prob_diff']:.1e}"))
    return [""] + [f"  {k:<26}{v}" for k, v in rows]
