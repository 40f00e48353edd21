"""`edgedistill bench`: the bundle against torch and ONNX Runtime peers, or one report from many runs."""

from __future__ import annotations

import shlex

import click

from ..bounds import option_type, problem
from ..errors import UserError


def _ints(ctx, param, value):
    if value is None:
        return None
    try:
        out = [int(x) for x in str(value).split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give integers separated by commas, e.g. 1,8,32") from None
    why = "no value; give integers separated by commas, e.g. 1,8,32" if not out else problem("bench", param.name, out)
    if why:
        raise click.BadParameter(f"{value!r}: {why}")
    return out


class _RecordsArgs(click.Command):
    """Keeps the arguments it was invoked with: results.json records the exact command, and sys.argv is
    only that command when run from a shell (not under `edgedistill run` or a test runner)."""

    def parse_args(self, ctx, args):
        ctx.meta["edgedistill.measure.bench.args"] = list(args)
        return super().parse_args(ctx, args)


@click.command(cls=_RecordsArgs, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("bundle", required=False, type=click.Path())
@click.option("--torch", "torch_dir", type=click.Path(file_okay=False),
              help="The stripped student the bundle came from. Enables the torch FP32/INT8 and ORT FP32/optimum peers; "
                   "without it only the bundle is measured.")
@click.option("--data", type=click.Path(dir_okay=False),
              help="Gold-labelled examples of the task (JSONL/CSV/...): accuracy per variant, and real text for the timed inputs.")
@click.option("--limit", type=option_type("bench", "limit", int), default=500, show_default=True,
              help="Use at most this many examples of --data for accuracy.")
@click.option("--batch-sizes", callback=_ints, default="1,8,32", show_default=True, help="Batch sizes, comma-separated.")
@click.option("--seq-lens", callback=_ints, default="32,128,256", show_default=True,
              help="Sequence lengths in tokens, comma-separated; inputs are exactly this long.")
@click.option("--threads", callback=_ints, default="2", show_default=True,
              help="Thread counts, comma-separated; every variant gets the same (torch.set_num_threads, ORT intra-op threads).")
@click.option("--min-time", type=option_type("bench", "min_time", float), default=2.0, show_default=True,
              help="Seconds of timed calls per variant and shape, at least.")
@click.option("--min-iters", type=option_type("bench", "min_iters", int), default=10, show_default=True,
              help="Timed calls per variant and shape, at least.")
@click.option("--warmup", type=option_type("bench", "warmup", float), default=0.3, show_default=True,
              help="Seconds of untimed warm-up per variant and shape.")
@click.option("--variants", default=None, help="Only these variants, comma-separated (torch-fp32, torch-int8, ort-fp32, optimum-int8, bundle).")
@click.option("--no-fresh-process", is_flag=True, help="Skip the new-process measurements (peak RSS, cold start).")
@click.option("--merge", "merge_files", multiple=True, type=click.Path(dir_okay=False),
              help="Instead of measuring, combine these results.json files (repeat the flag, or list them after --merge) into one report.")
@click.option("--title", default=None, help="Title of report.md.")
@click.option("--note", default=None, help="A line for report.md (and results.json) saying how the subject was made, e.g. the script that ran this.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Directory for results.json, report.md, latency.png, tradeoff.png.")
@click.argument("more", nargs=-1, type=click.Path(dir_okay=False))
def bench(bundle, torch_dir, data, limit, batch_sizes, seq_lens, threads, min_time, min_iters, warmup, variants,
          no_fresh_process, merge_files, title, note, out, more):
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
        from ..measure.bench import VARIANTS, BenchSettings, run_bench

        names = list(VARIANTS) if not variants else [v.strip() for v in variants.split(",") if v.strip()]
        settings = BenchSettings(batch_sizes=batch_sizes, seq_lens=seq_lens, threads=threads, min_time=min_time,
                                 min_iters=min_iters, warmup=warmup, limit=limit,
                                 fresh_process=not no_fresh_process, variants=names)
        doc = run_bench(bundle, torch_dir, data, settings, command=argv,
                        echo=lambda m: click.echo(m, err=True))
    if note:
        doc["note"] = note
    paths = write_outputs(doc, out, title=title)
    click.echo("")
    for line in summary_lines(doc):
        click.echo(line)
    click.echo(f"\nReport: {paths['report']}  (results.json, latency.png, tradeoff.png beside it)")
