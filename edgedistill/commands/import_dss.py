"""`edgedistill import-dss`: the DSS release's PaLM-540B annotations, as if annotated here."""

from __future__ import annotations

from pathlib import Path

import click

from ..atomic import write_json, write_jsonl
from ..bounds import option_type
from ..teacher.dss import DATASETS, agreement, load_dss


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--dataset",
    required=True,
    type=click.Choice(list(DATASETS)),
    help="cqa (5-way QA), svamp (arithmetic), esnli (NLI).",
)
@click.option("--split", required=True, help="cqa/svamp: train | test; esnli: valid | test.")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Run directory for annotations.jsonl, annotate.json, task.yaml.",
)
@click.option(
    "--dss-dir",
    type=click.Path(),
    help="The DSS datasets folder (default: ../shared/datasets/dss or $EDGEDISTILL_SHARED/datasets/dss).",
)
@click.option("--limit", type=option_type("import-dss", "limit", int), help="Import only the first N examples.")
def import_dss(dataset, split, out, dss_dir, limit):
    """Turn the raw PaLM-540B chain-of-thought outputs of the Distilling Step-by-Step release into
    RUN/annotations.jsonl (same format as `edgedistill annotate`), at no cost."""
    task, rows = load_dss(dataset, split, dss_dir, limit)
    out = Path(out)
    count = {s: sum(r.status == s for r in rows) for s in ("ok", "parse_failed", "failed", "filtered")}
    summary = {
        "examples": len(rows),
        **count,
        "rationales": sum(r.rationale is not None for r in rows),
        "rationales_dropped_short": sum(bool(r.extra.get("rationale_dropped")) for r in rows),
        "requests_sent": 0,
        "cache_hits": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost_usd": 0.0,
        "gold_agreement": agreement(task, rows),
        "model": "PaLM-540B (Distilling Step-by-Step release)",
        "mode": "few-shot-cot",
        "dataset": dataset,
        "split": split,
    }
    write_jsonl(out / "annotations.jsonl", [r.to_json() for r in rows])
    write_json(out / "annotate.json", summary)
    task.save(out / "task.yaml")
    for k in ("examples", "ok", "parse_failed", "rationales", "rationales_dropped_short", "gold_agreement"):
        v = summary[k]
        click.echo(f"  {k:<26}{(f'{100 * v:.2f} %' if k == 'gold_agreement' and v is not None else v)!s:>12}")
    click.echo(f"\nWrote {out}/annotations.jsonl, annotate.json and task.yaml")
