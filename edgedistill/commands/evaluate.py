"""`edgedistill eval`: accuracy against gold labels."""

from __future__ import annotations

import json

import click

from ..data import load_examples
from ..evaluate import evaluate_model
from ..task import load_task


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path())
@click.option("--task", required=True, type=click.Path(), help="Task spec YAML (names the gold field).")
@click.option("--data", required=True, type=click.Path(), help="Gold-labelled data file.")
@click.option("--json", "as_json", is_flag=True, help="Print only a JSON object.")
def evaluate(model, task, data, as_json):
    """Accuracy of MODEL (student dir, stripped dir or bundle) on DATA's gold labels."""
    spec = load_task(task)
    examples = load_examples(spec, data, require_gold=True)
    r = evaluate_model(model, spec, examples)
    if as_json:
        click.echo(json.dumps(r))
        return
    click.echo(f"{r['kind']} {model}: accuracy {100 * r['accuracy']:.2f} % ({r['correct']}/{r['examples']})")
    if "per_label" in r:
        click.echo(f"  {'label':<20}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
        for label, m in r["per_label"].items():
            click.echo(f"  {label:<20}{m['precision']:>10.3f}{m['recall']:>10.3f}{m['f1']:>10.3f}{m['support']:>10}")
