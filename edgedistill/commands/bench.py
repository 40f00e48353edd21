"""`edgedistill bench`: the bundle against torch and ONNX Runtime peers, or one report from many runs."""

from __future__ import annotations

import shlex

import click

from ..errors import UserError
from ..measure.bench import BenchConfig, run_bench
from ..options import field_option


class _RecordsArgs(click.Command):
    """Keeps the arguments it was invoked with: results.json records the exact command, and sys.argv is
    only that command when run from a shell (not under `edgedistill run` or a test runner)."""

    def parse_args(self, ctx, args):
        ctx.meta["edgedistill.measure.bench.args"] = list(args)
        return super().parse_args(ctx, args)


@click.command(cls=_RecordsArgs, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("bundle", required=False, type=click.Path())
@click.option(
    "--torch",
    "torch_dir",
    type=click.Path(file_okay=False),
    help="The stripped student the bundle came from. Enables the torch FP32/INT8 and ORT FP32/optimum peers; "
    "without it only the bundle is measured.",
)
@click.option(
    "--data",
    type=click.Path(dir_okay=False),
    help="Gold-labelled examples of the task (JSONL/CSV/...): accuracy per variant, and real text for the timed "
    "inputs.",
)
@field_option("bench", BenchConfig, "limit", help="Use at most this many examples of --data for accuracy.")
@field_option("bench", BenchConfig, "batch_sizes", help="Batch sizes, comma-separated.")
@field_option(
    "bench",
    BenchConfig,
    "seq_lens",
    help="Sequence lengths in tokens, comma-separated; inputs are exactly this long.",
)
@field_option(
    "bench",
    BenchConfig,
    "threads",
    help="Thread counts, comma-separated; every variant gets the same (torch.set_num_threads, ORT intra-op threads).",
)
@field_option("bench", BenchConfig, "min_time", help="Seconds of timed calls per variant and shape, at least.")
@field_option("bench", BenchConfig, "min_iters", help="Timed calls per variant and shape, at least.")
@field_option("bench", BenchConfig, "warmup", help="Seconds of untimed warm-up per variant and shape.")
@field_option(
    "bench",
    BenchConfig,
    "variants",
    help="Only these variants (torch-fp32, torch-int8, ort-fp32, optimum-int8, bundle).",
)
@field_option(
    "bench", BenchConfig, "fresh_process", help="Also measure peak RSS and cold start, each variant in a new process."
)
@click.option(
    "--merge",
    "merge_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Instead of measuring, combine these results.json files (repeat the flag, or list them after --merge) into "
    "one report.",
)
@click.option("--title", default=None, help="Title of report.md.")
@click.option(
    "--note",
    default=None,
    help="A line for report.md (and results.json) saying how the subject was made, e.g. the script that ran this.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory for results.json, report.md, latency.png, tradeoff.png.",
)
@click.argument("more", nargs=-1, type=click.Path(dir_okay=False))
def bench(bundle, torch_dir, data, merge_files, title, note, out, more, **settings):
    """Measure BUNDLE side by side with the ways you could otherwise run the same model.

    \b
    Variants, all with the same thread count and interleaved so machine noise hits them alike:
      torch FP32 (baseline), torch dynamic INT8, ORT FP32 (plain optimum export),
      optimum's default INT8 recipe for this CPU, and the bundle.
    Per variant and shape: p50/p90/p99 latency, throughput, and (from a fresh process) peak
    memory and cold start; per variant: file size and accuracy on --data. Ratios vs torch FP32.

    \b
    Examples:
      edgedistill bench RUN/bundle --torch RUN/stripped --data test.jsonl --out RUN/bench
      edgedistill bench RUN/bundle --threads 1,2 --batch-sizes 1 --seq-lens 128 --out /tmp/b
      edgedistill bench --merge x86/results.json arm64/results.json --out compare/

    Writes OUT/results.json (schema: edgedistill/measure/bench_schema.json), OUT/report.md, OUT/latency.png
    and OUT/tradeoff.png. export/run_bundle.py writes the same results.json on a device without torch.
    """
    from ..measure.bench_report import load_results, merge, summary_lines, write_outputs

    argv = ["edgedistill", "bench", *click.get_current_context().meta["edgedistill.measure.bench.args"]]
    if merge_files or (bundle and bundle.endswith(".json")):
        files = list(merge_files) + ([bundle] if bundle else []) + list(more)
        if len(files) < 1:
            raise UserError("--merge: give at least one results.json (usually two or more)")
        doc = merge([load_results(f) for f in files], command=shlex.join(argv))
    else:
        if not bundle:
            raise UserError("give a BUNDLE directory to measure, or --merge A.json B.json to combine results")
        if more:
            raise UserError(f"unexpected arguments {list(more)}; only --merge takes several files")
        doc = run_bench(
            bundle, torch_dir, data, BenchConfig(**settings), command=argv, echo=lambda m: click.echo(m, err=True)
        )
    if note:
        doc["note"] = note
    paths = write_outputs(doc, out, title=title)
    click.echo("")
    for line in summary_lines(doc):
        click.echo(line)
    click.echo(f"\nReport: {paths['report']}  (results.json, latency.png, tradeoff.png beside it)")
