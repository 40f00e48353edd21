"""`edgedistill annotate`: ask a teacher LLM for labels and rationales."""

from __future__ import annotations

import click

from ..bounds import option_type
from ..teacher.annotate import AnnotateConfig, annotate as run_annotate
from ..choices import Calibration, PromptMode, Scoring, values


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--task", required=True, type=click.Path(), help="Task spec YAML (see README, 'Task spec').")
@click.option("--data", required=True, type=click.Path(), help="Inputs to annotate: .jsonl, .json, .csv, .tsv or .parquet.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Run directory: annotations.jsonl, annotate.json and cache.sqlite go here.")
@click.option("--model", default="gpt-4o-mini", show_default=True, help="Teacher model name, as the server knows it.")
@click.option("--base-url", envvar="OPENAI_BASE_URL", help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (vLLM), "
              "http://localhost:11434/v1 (Ollama). Default: $OPENAI_BASE_URL, else OpenAI.")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True, help="Environment variable holding the API key (local servers need none).")
@click.option("--prompt", "prompt", type=click.Choice(values(PromptMode)), default="zero-shot", show_default=True,
              help="zero-shot: answer + one-sentence explanation, one request; zero-shot-cot: 'Let's think step by step', two requests; "
                   "few-shot-cot: your --exemplars (the costly DSS baseline); label-only: no rationale.")
@click.option("--exemplars", type=click.Path(), help="few-shot-cot exemplars: JSONL with the task's fields, answer, rationale.")
@click.option("--rationale-fraction", type=option_type("annotate", "rationale_fraction", float),
              default=1.0, show_default=True,
              help="Ask for a rationale on this seeded fraction of the examples only; the rest get the label-only prompt.")
@click.option("--concurrency", type=option_type("annotate", "concurrency", int), default=8, show_default=True,
              help="Requests in flight at once.")
@click.option("--max-cost", type=option_type("annotate", "max_cost", float),
              help="USD cap for this run directory; no request that could exceed it is started. "
              "Each request in flight reserves its worst case (all prompt tokens + --max-tokens of output), so a cap near "
              "a few requests' worst case stops early; inputs held back are counted as not_sent.")
@click.option("--dry-run", is_flag=True, help="Print estimated requests, tokens and cost for each prompt mode and for what the chosen one adds (votes, scoring, rationalization); send nothing.")
@click.option("--limit", type=option_type("annotate", "limit", int), help="Annotate only the first N examples.")
@click.option("--timeout", type=option_type("annotate", "timeout", float), default=120.0, show_default=True,
              help="Seconds per request.")
@click.option("--max-retries", type=option_type("annotate", "max_retries", int), default=6, show_default=True,
              help="Retries on 408/409/429/5xx, timeouts, dropped connections, bad bodies.")
@click.option("--temperature", type=option_type("annotate", "temperature", float), default=0.0, show_default=True)
@click.option("--max-tokens", type=option_type("annotate", "max_tokens", int), default=512, show_default=True,
              help="Completion cap per request (also the worst case --max-cost reserves).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --rationale-fraction subset.")
@click.option("--price-in", type=option_type("annotate", "price_in", float),
              help="USD per 1M prompt tokens (overrides the built-in price table).")
@click.option("--price-out", type=option_type("annotate", "price_out", float), help="USD per 1M completion tokens.")
@click.option("--scoring", type=click.Choice(values(Scoring)), default="letter", show_default=True,
              help="label_probs from the teacher's logprobs: one more request (1 completion token) whose reply is the option's "
                   "letter (letter) or name (word); the text answer is the fallback where a server sends no logprobs. "
                   "none: no scoring request. Numeric tasks never score.")
@click.option("--score-orders", type=option_type("annotate", "score_orders", int), default=1, show_default=True,
              help="Scoring requests per input, the options rotated one place each time (after n rotations, the reversed "
                   "order's); their calibrated scores are averaged, which cancels a small model's preference for one "
                   "position (permutation debiasing). Up to 2x the number of options gives distinct orders.")
@click.option("--calibration", type=click.Choice(values(Calibration)), default="batch", show_default=True,
              help="Correct the scores for a small model's favourite option: batch divides by the run's mean distribution, "
                   "content-free by the scores of 3 inputs with no content (3 more requests; Zhao et al. 2021).")
@click.option("--votes", type=option_type("annotate", "votes", int), default=1, show_default=True,
              help="Answers per input (self-consistency): the greedy one plus N-1 sampled at --vote-temperature; the label "
                   "distribution blends their shares. Uses the API's n where the server honours it.")
@click.option("--vote-temperature", type=option_type("annotate", "vote_temperature", float),
              default=0.7, show_default=True,
              help="Sampling temperature of the extra votes.")
@click.option("--rationalize/--no-rationalize", default=True, show_default=True,
              help="When the chosen label has no explanation (the model stopped after its answer, or the votes overturned it), "
                   "ask the teacher to explain that answer: one short request per such row.")
@click.option("--max-failed", type=option_type("annotate", "max_failed", float), default=AnnotateConfig.max_failed,
              show_default=True, help="Exit non-zero (under `edgedistill run`: the stage is not done) when more than this "
              "share of the rows failed for good (server, network or key trouble; re-running sends only their requests); "
              "a run with no row ok always fails. 1 accepts any share.")
@click.option("--keep-if-agrees", is_flag=True, help="Mark examples whose teacher label differs from gold as 'filtered' (kept in the file).")
def annotate(**kwargs):
    """Label (and explain) every input with a teacher LLM; pay for each request once.

    Responses are cached in OUT/cache.sqlite the moment they arrive: after a crash, kill or
    Ctrl-C, re-run the same command and only unanswered requests are sent.

    \b
    Example (a local llama.cpp / vLLM / Ollama server needs no key):
      edgedistill annotate --task task.yaml --data inputs.jsonl --out runs/a \\
          --base-url http://127.0.0.1:8765/v1 --model qwen2.5-0.5b-instruct
    """
    report_summary(run_annotate(AnnotateConfig(**kwargs), echo=click.echo), kwargs["out"], click.echo)


SUMMARY_KEYS = ["examples", "ok", "parse_failed", "failed", "filtered", "not_sent", "rationales", "rationale_yield", "rationalized",
                "rationales_dropped_short", "with_label_probs", "requests_sent", "cache_hits", "retries", "prompt_tokens",
                "completion_tokens", "cost_usd", "gold_agreement_text", "gold_agreement", "truncated_inputs"]


def report_summary(summary: dict, out, echo=click.echo) -> None:
    """The end-of-run table (also under `edgedistill run`); exit 3 when some inputs were left unannotated."""
    if summary.get("dry_run"):
        return
    echo("")
    for k in SUMMARY_KEYS:
        v = summary.get(k)
        v = "–" if v is None else (f"{v:.4f}" if isinstance(v, float) else v)
        echo(f"  {k:<26}{v:>12}")
    echo(f"\nWrote {out}/annotations.jsonl and annotate.json")
    if summary.get("message"):
        click.secho(summary["message"], fg="yellow")
        raise SystemExit(3)
