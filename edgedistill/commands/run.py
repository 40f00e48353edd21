"""`edgedistill run`: the whole path from one pipeline.yaml."""

from __future__ import annotations

import click

from ..console import VERBOSE
from ..pipeline import STAGES, describe_config, load_pipeline, run_pipeline, stage_configs


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("pipeline_file", metavar="PIPELINE.yaml", type=click.Path(dir_okay=False))
@click.option(
    "--force", type=click.Choice(STAGES), help="Redo this stage (and every stage after it) even if up to date."
)
@click.option("--until", type=click.Choice(STAGES), help="Stop after this stage.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the config each stage function would be called with (its settings "
    "other than the defaults), and run nothing.",
)
def run(pipeline_file, force, until, dry_run):
    """Run annotate -> train -> strip -> export -> bench -> report from one PIPELINE.yaml.

    Each stage reads the previous stage's artifact from the run directory. A stage whose settings
    and inputs are unchanged since it last finished is skipped, so after a crash or an edit a re-run
    redoes only what changed (and the teacher cache means no request is paid twice).

    See examples/quickstart/pipeline.yaml for every key, with comments.
    """
    pipe = load_pipeline(pipeline_file)
    if dry_run:
        for stage, configs in stage_configs(pipe).items():
            for cfg in configs:
                click.echo(f"[{stage}] {describe_config(cfg)}")
        return
    verbose = click.get_current_context().meta.get(VERBOSE, False)
    rows = run_pipeline(
        pipe, force=force, until=until, echo=click.echo, note=lambda m: click.secho(m, fg="cyan"), verbose=verbose
    )
    click.echo("\n stage      status    seconds")
    for r in rows:
        click.echo(f" {r['stage']:<10} {r['status']:<9} {r['seconds']:>7.1f}")
    report = pipe.run / "report.md"
    if report.exists():
        click.echo(f"\nReport: {report}")
    click.echo(f"Logs: {pipe.run / 'logs'}  (library output of each stage; --verbose prints it too)")
