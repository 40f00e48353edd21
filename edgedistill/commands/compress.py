"""`edgedistill compress`: a smaller stripped model (trimmed vocabulary, fewer layers), picked by a latency budget."""

from __future__ import annotations

import click

from ..bounds import option_type, problem
from ..distill.compress import COMMON_WORDS, EVIDENCE_CONFIDENCE, KEEP_AGREEMENT, CompressConfig, keep_evidence
from ..distill.compress import compress as run_compress

ROWS_NEEDED = keep_evidence(1, 1)["rows_needed"]  # scored rows that can show a candidate keeps MODEL's answers


def _layers(ctx, param, value):
    if not value:
        return None
    try:
        layers = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give layer counts separated by commas, e.g. 4,3,2") from None
    why = problem("compress", "layers", layers)
    if why:
        raise click.BadParameter(f"{value!r}: {why}")
    return layers


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("model", type=click.Path(file_okay=False))
@click.option("--annotations", required=True, type=click.Path(dir_okay=False),
              help="The annotations the student was trained on: their inputs choose the kept vocabulary, are the "
                   "distillation inputs of smaller students and the timed inputs.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Compressed model dir (stripped format, for `edgedistill export`), with compress.json and compress.md.")
@click.option("--inputs", type=click.Path(dir_okay=False), help="More inputs of the task, unlabelled (JSON Lines with "
              "`input`, and `choices` for multiple choice): smaller students also learn MODEL's probabilities on them, "
              "which needs no teacher, and their tokens join the kept vocabulary. Without --eval-data a tenth of them is "
              "held out too, more rows to score the candidates' agreement with MODEL on.")
@click.option("--layers", callback=_layers, help="Layer counts to build, e.g. 3 or 4,3,2 (several need --latency-budget). "
              "Each starts from evenly spaced layers of MODEL and learns MODEL's probabilities on the annotations.")
@click.option("--into", "into", multiple=True, metavar="BASE",
              help="Distill MODEL into a fresh student of another, smaller base (a transformers model dir; 'default' = "
                   "the packaged all-MiniLM-L6-v2), on MODEL's probabilities over the annotations (and --inputs): a large "
                   "student (train --student all-mpnet-base-v2) as the teacher's assistant for the small one. A candidate "
                   "like a --layers count; repeatable.")
@click.option("--label-weight", type=option_type("compress", "label_weight", float), default=0.0, show_default=True,
              help="Smaller students (--layers, --into) learn MODEL's probabilities and, at this weight, the annotations' own "
                   "labels as hard targets (Hinton et al.'s blend). 0 = MODEL's probabilities alone.")
@click.option("--ensemble", multiple=True, metavar="DIR", type=click.Path(file_okay=False),
              help="Another trained student of the task (train --seed N, or another --student base; stripped): smaller "
                   "students (--layers, --into) learn the average of its and MODEL's probabilities, a steadier target "
                   "than one model's. Repeatable.")
@click.option("--latency-budget", type=option_type("compress", "latency_budget", float),
              help="Milliseconds per prediction (batch 1, p50, this CPU, tokenizing included): "
              "export and time every candidate (MODEL itself too) and ship the most accurate within it; exit 2 if none is. "
              f"A smaller candidate replaces MODEL only where the scored rows show that it keeps {100 * KEEP_AGREEMENT:.0f} % "
              f"of MODEL's answers (one-sided {100 * EVIDENCE_CONFIDENCE:.0f} % Clopper-Pearson bound: {ROWS_NEEDED} rows or "
              "more for one candidate; compress.md says what they show).")
@click.option("--trim-vocab/--no-trim-vocab", default=True, show_default=True,
              help="Keep only the tokens the annotations (and --inputs) use, plus special and single-character tokens "
                   "and --common-words. What it costs on inputs it was not built from is measured and said; a warning "
                   "under 99 % agreement.")
@click.option("--common-words", type=option_type("compress", "common_words", int),
              default=COMMON_WORDS, show_default=True,
              help="With a trimmed vocabulary, also keep this many of the commonest words (the first of BERT's "
                   "frequency-ordered WordPiece vocabulary; none for other vocabularies), so a word a user types that the annotations never used "
                   "keeps its embedding. 0 = the annotations' tokens alone.")
@click.option("--eval-data", type=click.Path(dir_okay=False), help="Gold-labelled data: each candidate's accuracy "
              "(default: its agreement with MODEL on a tenth of the annotated rows and of --inputs, at most 500, held out "
              f"of every candidate's vocabulary and training, as an app's inputs are). Fewer than {ROWS_NEEDED} rows "
              "cannot show that a smaller candidate keeps MODEL's answers: compress then warns.")
@click.option("--quantize", type=click.Choice(["int8", "none"]), default="int8", show_default=True,
              help="How each candidate is exported to be timed.")
@click.option("--threads", type=option_type("compress", "threads", int), default=2, show_default=True)
@click.option("--epochs", type=option_type("compress", "epochs", float), default=4.0, show_default=True,
              help="Distillation epochs of a smaller student.")
@click.option("--seed", type=int, default=0, show_default=True)
def compress(model, annotations, inputs, out, layers, into, label_weight, ensemble, latency_budget, trim_vocab, common_words, eval_data, quantize, threads, epochs, seed):
    """Make MODEL (a dir from `edgedistill strip`) smaller and faster, then `edgedistill export` it as usual.

    \b
    Examples:
      edgedistill compress RUN/stripped --annotations RUN/annotations.jsonl --out RUN/compressed
      edgedistill compress RUN/stripped --annotations RUN/annotations.jsonl --out RUN/compressed \\
          --layers 4,3,2 --latency-budget 2.5 --eval-data test.jsonl --inputs more_tickets.jsonl
      edgedistill compress MPNET_RUN/stripped --annotations MPNET_RUN/annotations.jsonl --out RUN/compressed \\
          --into default
    """
    run_compress(CompressConfig(model=model, annotations=annotations, inputs=inputs, out=out, layers=layers, into=list(into) or None,
                                label_weight=label_weight, ensemble=list(ensemble) or None, latency_budget=latency_budget,
                                trim_vocab=trim_vocab, common_words=common_words, eval_data=eval_data, quantize=quantize, threads=threads, epochs=epochs,
                                seed=seed), echo=click.echo)
    click.echo(f"\nCompressed model: {out}  (compress.md: every candidate)")
