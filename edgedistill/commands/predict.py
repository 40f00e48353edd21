"""`edgedistill predict`: run a bundle; imports neither torch nor transformers."""

from __future__ import annotations

import json

import click

from ..data import read_rows
from ..errors import UserError
from ..runtime import BundleError, EdgeModel


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("bundle", type=click.Path())
@click.option("--text", multiple=True, help="An input, already rendered (repeatable).")
@click.option("--data", type=click.Path(), help="A data file with the task's fields (.jsonl, .csv, ...).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input instead of a table.")
def predict(bundle, text, data, as_json):
    """Predict with BUNDLE on --text inputs or a --data file (labels and probabilities)."""
    if not text and not data:
        raise UserError("give --text 'an input' (repeatable) or --data FILE")
    try:
        model = EdgeModel.load(bundle)
        items = list(text)
        if data:
            items += [row for _, row in read_rows(data)]
        preds = model.predict(items)
    except BundleError as e:
        raise UserError(str(e)) from None
    for item, p in zip(items, preds):
        shown = item if isinstance(item, str) else model.render(item)
        if as_json:
            click.echo(json.dumps({"input": shown, **p}, ensure_ascii=False))
        elif "answer" in p:
            click.echo(f"{p['answer']:<20} {shown[:70]!r}")
        else:
            click.echo(f"{p['label']:<20} {p['probs'][p['label']]:.3f}  {shown[:70]!r}")
