"""`edgedistill annotate`: ask a teacher LLM for labels and rationales."""

from __future__ import annotations

import click

from ..options import field_option
from ..teacher.annotate import AnnotateConfig, report_summary
from ..teacher.annotate import annotate as run_annotate


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@field_option("annotate", AnnotateConfig, "task", type=click.Path(), help="Task spec YAML (see README, 'Task spec').")
@field_option(
    "annotate",
    AnnotateConfig,
    "data",
    type=click.Path(),
    help="Inputs to annotate: .jsonl, .json, .csv, .tsv or .parquet.",
)
@field_option(
    "annotate",
    AnnotateConfig,
    "out",
    type=click.Path(file_okay=False),
    help="Run directory: annotations.jsonl, annotate.json and cache.sqlite go here.",
)
@field_option("annotate", AnnotateConfig, "model", help="Teacher model name, as the server knows it.")
@field_option(
    "annotate",
    AnnotateConfig,
    "base_url",
    envvar="OPENAI_BASE_URL",
    help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (vLLM), "
    "http://localhost:11434/v1 (Ollama). Default: $OPENAI_BASE_URL, else OpenAI.",
)
@field_option(
    "annotate",
    AnnotateConfig,
    "api_key_env",
    help="Environment variable holding the API key (local servers need none).",
)
@field_option(
    "annotate",
    AnnotateConfig,
    "prompt",
    help="zero-shot: answer + one-sentence explanation, one request; zero-shot-cot: 'Let's think step by step', two "
    "requests; few-shot-cot: your --exemplars (the costly DSS baseline); label-only: no rationale.",
)
@field_option(
    "annotate",
    AnnotateConfig,
    "exemplars",
    type=click.Path(),
    help="few-shot-cot exemplars: JSONL with the task's fields, answer, rationale.",
)
@field_option(
    "annotate",
    AnnotateConfig,
    "rationale_fraction",
    help="Ask for a rationale on this seeded fraction of the examples only; the rest get the label-only prompt.",
)
@field_option("annotate", AnnotateConfig, "concurrency", help="Requests in flight at once.")
@field_option(
    "annotate",
    AnnotateConfig,
    "max_cost",
    help="USD cap for this run directory; no request that could exceed it is started. "
    "Each request in flight reserves its worst case (all prompt tokens + --max-tokens of output), so a cap near "
    "a few requests' worst case stops early; inputs held back are counted as not_sent.",
)
@field_option(
    "annotate",
    AnnotateConfig,
    "dry_run",
    help="Print estimated requests, tokens and cost for each prompt mode and for what the chosen one adds (votes, "
    "scoring, rationalization), what prompt caching changes, and each route's cost and time (live, batch, flex); "
    "send nothing.",
)
@field_option("annotate", AnnotateConfig, "limit", help="Annotate only the first N examples.")
@field_option(
    "annotate",
    AnnotateConfig,
    "timeout",
    help="Seconds per request. Default: 120; 900 with --service-tier flex, whose requests may queue.",
)
@field_option(
    "annotate",
    AnnotateConfig,
    "max_retries",
    help="Retries on 408/409/429/5xx, timeouts, dropped connections, bad bodies; with --batch also the new batches "
    "a request is sent in after its batch did not answer it.",
)
@field_option("annotate", AnnotateConfig, "temperature")
@field_option(
    "annotate",
    AnnotateConfig,
    "max_tokens",
    help="Completion cap per request (also the worst case --max-cost reserves).",
)
@field_option("annotate", AnnotateConfig, "seed", help="Seed of the --rationale-fraction subset.")
@field_option(
    "annotate", AnnotateConfig, "price_in", help="USD per 1M prompt tokens (overrides the built-in price table)."
)
@field_option("annotate", AnnotateConfig, "price_out", help="USD per 1M completion tokens.")
@field_option(
    "annotate",
    AnnotateConfig,
    "price_cached",
    help="USD per 1M cached prompt tokens (the provider's prompt-cache rate; annotate.json counts cached_tokens). "
    "Default: the built-in table's for a listed model whose --price-in is not overridden.",
)
@field_option(
    "annotate",
    AnnotateConfig,
    "batch_price_factor",
    help="The share of the list price that --batch and --service-tier flex requests bill (OpenAI: 0.5).",
)
@field_option(
    "annotate",
    AnnotateConfig,
    "service_tier",
    help="flex: OpenAI's Flex processing for live requests: billed like --batch, slower (timeout 900 s), and "
    "answered 429 while its capacity is short (retried with a longer back-off). default sends no tier.",
)
@field_option(
    "annotate",
    AnnotateConfig,
    "batch",
    help="Send the requests through the Batch API (/v1/files, /v1/batches): --batch-price-factor of the list price, "
    "results within 24 h. Each batch is recorded in OUT/cache.sqlite before the run waits: after a kill or a reboot, "
    "re-run the same command to collect them (nothing is submitted twice).",
)
@field_option(
    "annotate",
    AnnotateConfig,
    "batch_wait",
    help="Seconds to wait for the batches; 0 submits and exits (exit 3), and a later run of the same command "
    "collects them. Default: until they end.",
)
@field_option("annotate", AnnotateConfig, "batch_poll", help="Seconds to the first poll of a batch; doubles to 300.")
@field_option(
    "annotate", AnnotateConfig, "batch_max_requests", help="Requests per batch file at most (the API's limit: 50,000)."
)
@field_option("annotate", AnnotateConfig, "batch_max_mb", help="MB per batch file at most (the API's limit: 200).")
@field_option(
    "annotate",
    AnnotateConfig,
    "batch_fallback",
    help="Requests a batch did not answer (error lines, an expired or failed batch): into a new batch, up to "
    "--max-retries times (batch), or live at the list price (live).",
)
@field_option(
    "annotate",
    AnnotateConfig,
    "batch_status",
    help="Print OUT's batch ledger (each batch, its state, requests answered) and exit.",
)
@field_option(
    "annotate",
    AnnotateConfig,
    "batch_cancel",
    help="Cancel every batch of OUT's ledger not collected yet and exit; a later run collects what they answered.",
)
@field_option(
    "annotate",
    AnnotateConfig,
    "deadline",
    help="Hours: with --dry-run, name the cheapest route (live, --batch, --service-tier flex) that finishes in time.",
)
@field_option(
    "annotate",
    AnnotateConfig,
    "scoring",
    help="label_probs from the teacher's logprobs: one more request (1 completion token) whose reply is the option's "
    "letter (letter) or name (word); the text answer is the fallback where a server sends no logprobs. "
    "none: no scoring request. Numeric tasks never score.",
)
@field_option(
    "annotate",
    AnnotateConfig,
    "score_orders",
    help="Scoring requests per input, the options rotated one place each time (after n rotations, the reversed "
    "order's); their calibrated scores are averaged, which cancels a small model's preference for one "
    "position (permutation debiasing). Up to 2x the number of options gives distinct orders.",
)
@field_option(
    "annotate",
    AnnotateConfig,
    "calibration",
    help="Correct the scores for a small model's favourite option: batch divides by the run's mean distribution, "
    "content-free by the scores of 3 inputs with no content (3 more requests; Zhao et al. 2021).",
)
@field_option(
    "annotate",
    AnnotateConfig,
    "votes",
    help="Answers per input (self-consistency): the greedy one plus N-1 sampled at --vote-temperature; the label "
    "distribution blends their shares. Uses the API's n where the server honours it.",
)
@field_option("annotate", AnnotateConfig, "vote_temperature", help="Sampling temperature of the extra votes.")
@field_option(
    "annotate",
    AnnotateConfig,
    "rationalize",
    help="When the chosen label has no explanation (the model stopped after its answer, or the votes overturned it), "
    "ask the teacher to explain that answer: one short request per such row.",
)
@field_option(
    "annotate",
    AnnotateConfig,
    "max_failed",
    help="Exit non-zero (under `edgedistill run`: the stage is not done) when more than this "
    "share of the rows failed for good (server, network or key trouble; re-running sends only their requests); "
    "a run with no row ok always fails. 1 accepts any share.",
)
@field_option(
    "annotate",
    AnnotateConfig,
    "keep_if_agrees",
    help="Mark examples whose teacher label differs from gold as 'filtered' (kept in the file).",
)
def annotate(**kwargs):
    """Label (and explain) every input with a teacher LLM; pay for each request once.

    Responses are cached in OUT/cache.sqlite the moment they arrive: after a crash, kill or
    Ctrl-C, re-run the same command and only unanswered requests are sent. With --batch, the
    batches are recorded there too: a re-run collects them instead of submitting them again.

    \b
    Example (a local llama.cpp / vLLM / Ollama server needs no key):
      edgedistill annotate --task task.yaml --data inputs.jsonl --out runs/a \\
          --base-url http://127.0.0.1:8765/v1 --model qwen2.5-0.5b-instruct
    """
    report_summary(run_annotate(AnnotateConfig(**kwargs), echo=click.echo), kwargs["out"], click.echo)
