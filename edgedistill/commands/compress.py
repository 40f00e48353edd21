"""`edgedistill compress`: a smaller stripped model (trimmed vocabulary, fewer layers), picked by a latency budget."""

from __future__ import annotations

import click

from ..choices import Quantize, values
from ..compress.compress import CompressConfig
from ..compress.compress import compress as run_compress
from ..compress.evidence import EVIDENCE_CONFIDENCE, KEEP_AGREEMENT, keep_evidence
from ..options import field_option

ROWS_NEEDED = keep_evidence(1, 1)["rows_needed"]  # scored rows that can show a candidate keeps MODEL's answers


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("model", type=click.Path(file_okay=False))
@field_option(
    "compress",
    CompressConfig,
    "annotations",
    type=click.Path(dir_okay=False),
    help="The annotations the student was trained on: their inputs choose the kept vocabulary, are the "
    "distillation inputs of smaller students and the timed inputs.",
)
@field_option(
    "compress",
    CompressConfig,
    "out",
    type=click.Path(file_okay=False),
    help="Compressed model dir (stripped format, for `edgedistill export`), with compress.json and compress.md.",
)
@field_option(
    "compress",
    CompressConfig,
    "inputs",
    type=click.Path(dir_okay=False),
    help="More inputs of the task, unlabelled (JSON Lines with "
    "`input`, and `choices` for multiple choice): smaller students also learn MODEL's probabilities on them, "
    "which needs no teacher, and their tokens join the kept vocabulary. Without --eval-data a tenth of them is "
    "held out too, more rows to score the candidates' agreement with MODEL on.",
)
@field_option(
    "compress",
    CompressConfig,
    "layers",
    help="Layer counts to build, e.g. 3 or 4,3,2 (several need --latency-budget). "
    "Each starts from evenly spaced layers of MODEL and learns MODEL's probabilities on the annotations.",
)
@field_option(
    "compress",
    CompressConfig,
    "into",
    multiple=True,
    metavar="BASE",
    help="Distill MODEL into a fresh student of another, smaller base (a transformers model dir; 'default' = "
    "the packaged all-MiniLM-L6-v2), on MODEL's probabilities over the annotations (and --inputs): a large "
    "student (train --student all-mpnet-base-v2) as the teacher's assistant for the small one. A candidate "
    "like a --layers count; repeatable. 'static': a static student (model2vec token embeddings distilled "
    "offline from MODEL's base, averaged, a linear head; trained on the same targets), microseconds per input; "
    "classification only.",
)
@field_option(
    "compress",
    CompressConfig,
    "label_weight",
    help="Smaller students (--layers, --into) learn MODEL's probabilities and, at this weight, the annotations' own "
    "labels as hard targets (Hinton et al.'s blend). 0 = MODEL's probabilities alone.",
)
@field_option(
    "compress",
    CompressConfig,
    "ensemble",
    multiple=True,
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Another trained student of the task (train --seed N, or another --student base; stripped): smaller "
    "students (--layers, --into) learn the average of its and MODEL's probabilities, a steadier target "
    "than one model's. Repeatable.",
)
@field_option(
    "compress",
    CompressConfig,
    "latency_budget",
    help="Milliseconds per prediction (batch 1, p50, this CPU, tokenizing included): "
    "export and time every candidate (MODEL itself too) and ship the most accurate within it; exit 2 if none is. "
    f"A smaller candidate replaces MODEL only where the scored rows show that it keeps {100 * KEEP_AGREEMENT:.0f} % "
    f"of MODEL's answers (one-sided {100 * EVIDENCE_CONFIDENCE:.0f} % Clopper-Pearson bound: {ROWS_NEEDED} rows or "
    "more for one candidate; compress.md says what they show). With --into static the cascade (static, else MODEL) "
    "is a candidate too, timed by its mean per input over the scored rows; shipped, `export OUT` builds it.",
)
@field_option(
    "compress",
    CompressConfig,
    "trim_vocab",
    help="Keep only the tokens the annotations (and --inputs) use, plus special and single-character tokens "
    "and --common-words. What it costs on inputs it was not built from is measured and said; a warning "
    "under 99 % agreement.",
)
@field_option(
    "compress",
    CompressConfig,
    "common_words",
    help="With a trimmed vocabulary, also keep this many of the commonest words (the first of BERT's "
    "frequency-ordered WordPiece vocabulary; none for other vocabularies), so a word a user types that the "
    "annotations never used keeps its embedding. 0 = the annotations' tokens alone.",
)
@field_option(
    "compress",
    CompressConfig,
    "eval_data",
    type=click.Path(dir_okay=False),
    help="Gold-labelled data: each candidate's accuracy "
    "(default: its agreement with MODEL on a tenth of the annotated rows and of --inputs, at most 500, held out "
    f"of every candidate's vocabulary and training, as an app's inputs are). Fewer than {ROWS_NEEDED} rows "
    "cannot show that a smaller candidate keeps MODEL's answers: compress then warns.",
)
@field_option(
    "compress",
    CompressConfig,
    "quantize",
    type=click.Choice(values(Quantize)),
    help="How each candidate is exported to be timed.",
)
@field_option(
    "compress",
    CompressConfig,
    "min_agreement",
    help="Each candidate's export fails if its INT8 labels agree with the torch model on fewer parity inputs "
    "(as `export --min-agreement`); a smaller student's thinner margins may need less.",
)
@field_option(
    "compress",
    CompressConfig,
    "cascade_agreement",
    help="With --into static under --latency-budget: the cascade's P is the smallest that keeps this share of MODEL's "
    "answers (as `export --cascade-agreement`). Lower sends more inputs to the static tier: on the quickstart's "
    "tickets 0.95 answered 67 % of them there at 3.5x the student's speed (benchmarks/results/ladder.md).",
)
@field_option("compress", CompressConfig, "threads")
@field_option("compress", CompressConfig, "epochs", help="Distillation epochs of a smaller student.")
@field_option("compress", CompressConfig, "seed")
def compress(model, **kw):
    """Make MODEL (a dir from `edgedistill strip`) smaller and faster, then `edgedistill export` it as usual.

    \b
    Examples:
      edgedistill compress RUN/stripped --annotations RUN/annotations.jsonl --out RUN/compressed
      edgedistill compress RUN/stripped --annotations RUN/annotations.jsonl --out RUN/compressed \\
          --layers 4,3,2 --latency-budget 2.5 --eval-data test.jsonl --inputs more_tickets.jsonl
      edgedistill compress MPNET_RUN/stripped --annotations MPNET_RUN/annotations.jsonl --out RUN/compressed \\
          --into default
    """
    kw["into"], kw["ensemble"] = list(kw["into"]) or None, list(kw["ensemble"]) or None  # repeatable flags
    run_compress(CompressConfig(model=model, **kw), echo=click.echo)
    click.echo(f"\nCompressed model: {kw['out']}  (compress.md: every candidate)")
