"""`edgedistill strip`: remove the rationale decoder from a student."""

from __future__ import annotations

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("student", type=click.Path())
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="Where to write the plain transformers model dir."
)
def strip(student, out):
    """Write STUDENT's label model alone: it loads with transformers (AutoModelFor...) and holds no
    rationale weights; its predictions are the student's."""
    from ..distill.strip import strip_student, summary_line  # deferred: torch, so that --help starts at once

    click.echo(summary_line(strip_student(student, out)))
