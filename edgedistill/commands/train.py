"""`edgedistill train`: distill a student from annotations."""

from __future__ import annotations

import click

from ..bounds import option_type
from ..choices import MIN_STEPS, Mode, Numeric, Pooling, RationaleDecoder, values
from ..distill.model_card import floor_note
from ..distill.select import SIGNIFICANCE, rows_to_win
from ..distill.train import TrainConfig
from ..distill.train import train as run_train


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--task", required=True, type=click.Path(), help="Task spec YAML.")
@click.option("--annotations", required=True, type=click.Path(), help="RUN/annotations.jsonl from annotate or import-dss.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Student dir to write (replaced only when training succeeds).")
@click.option("--student", type=click.Path(), help="Base model dir (default: all-MiniLM-L6-v2, 22M). A BERT or MPNet sentence "
              "encoder keeps the mean-pooled and two-tower heads (all-mpnet-base-v2, 110M: bash benchmarks/fetch_mpnet.sh); "
              "a T5/BART dir makes a seq2seq student.")
@click.option("--mode", type=click.Choice(values(Mode)), default="auto", show_default=True,
              help="auto: train label-only and every rationale mode on one split; ship label-only unless another beats it on "
              f"validation beyond noise (a paired sign test over the validation rows, p < {SIGNIFICANCE}), else the best "
              f"of those; the rationale modes are trained only where they could win (at least {rows_to_win()} validation "
              "rows that label-only gets wrong). label-only: the teacher's labels. multitask: + a decoder that "
              "writes the rationale (Distilling Step-by-Step). rationale-teacher: + soft labels and head states of an "
              "encoder that read input + rationale (KNIFE). rationale-dropout: the rationale appended to the input on "
              "a random share of the steps. standard: gold labels, no teacher.")
@click.option("--candidates", help="auto: comma-separated modes to try (default: label-only and every rationale mode). "
              "label-only is always trained, as the reference; seq2seq (numeric) students try label-only and multitask only.")
@click.option("--alpha", type=option_type("train", "alpha", float), default=0.5, show_default=True,
              help="loss = alpha * label + (1 - alpha) * rationale term (multitask, rationale-teacher).")
@click.option("--epochs", type=option_type("train", "epochs", float), default=3.0, show_default=True)
@click.option("--min-steps", type=option_type("train", "min_steps", int), default=MIN_STEPS, show_default=True,
              help="Train more epochs where --epochs would give fewer optimizer steps than this (a few hundred rows: 180 "
              "e-SNLI rows at 3 epochs are 36 steps, which left every seed at the one-class floor). 0: --epochs as given.")
@click.option("--batch-size", type=option_type("train", "batch_size", int), default=16, show_default=True,
              help="Per device; multiply by GPUs/processes.")
@click.option("--lr", type=option_type("train", "lr", float),
              help="Learning rate of the encoder's top layer (default 2e-4 encoder students, 5e-5 two-tower multiple "
              "choice, 3e-4 seq2seq).")
@click.option("--head-lr", type=option_type("train", "head_lr", float),
              help="Learning rate of the untrained label head and pooler (default 1e-3): a fast "
              "head beside a gently moving encoder. Classification and multiple-choice students only.")
@click.option("--layer-decay", type=option_type("train", "layer_decay", float),
              help="Layer-wise decay: encoder layer i of L learns at lr * decay^(L-1-i) "
              "(default 0.8; 1.0, one rate, for two-tower multiple choice). Classification and multiple-choice students only.")
@click.option("--retries", type=option_type("train", "retries", int), default=2, show_default=True,
              help="Retrain a run that ends at the floor (validation accuracy no better than always answering the "
              "commonest label, or nine in ten predictions one label) this many times, each with the next seed and twice "
              "the steps of the attempt before; then fail without writing a student.")
@click.option("--temperature", type=option_type("train", "temperature", float), default=2.0, show_default=True,
              help="rationale-teacher: soft-label temperature.")
@click.option("--hidden-weight", type=option_type("train", "hidden_weight", float), default=1.0, show_default=True,
              help="rationale-teacher: weight of the [CLS]-state (cosine) term beside the soft labels.")
@click.option("--soft-weight", type=option_type("train", "soft_weight", float), default=0.5, show_default=True,
              help="Rows whose annotation has `label_probs` (the teacher's distribution over the labels): label loss = "
              "(1 - w) * cross-entropy on the hard label + w * KL to that distribution. 0 ignores it.")
@click.option("--soft-temperature", type=option_type("train", "soft_temperature", float),
              default=1.0, show_default=True,
              help="Temperature of that KL term (1: the teacher's probabilities as given; > 1 flattens both sides).")
@click.option("--min-confidence", type=option_type("train", "min_confidence", float), default=0.0, show_default=True,
              help="Drop rows whose `label_probs` give the teacher's label less than this probability.")
@click.option("--rationale-dropout", type=option_type("train", "rationale_dropout", float),
              default=0.5, show_default=True,
              help="rationale-dropout: share of the steps on which a row is seen with its rationale appended.")
@click.option("--max-length", type=option_type("train", "max_length", int), default=128, show_default=True,
              help="Input token limit (also the bundle's).")
@click.option("--rationale-max-length", type=option_type("train", "rationale_max_length", int),
              default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--eval-data", type=click.Path(), help="Gold-labelled validation file for checkpoint selection (default: 10%% of training rows).")
@click.option("--data", type=click.Path(), help="standard mode: read gold labels from this data file instead of the annotations.")
@click.option("--val-fraction", type=option_type("train", "val_fraction", float), default=0.1, show_default=True,
              help="Share of the annotated rows held out for validation when no --eval-data is given.")
@click.option("--rationale-fraction", type=option_type("train", "rationale_fraction", float),
              default=1.0, show_default=True,
              help="Keep rationales on this seeded fraction of rows only.")
@click.option("--max-train", type=option_type("train", "max_train", int), help="Use at most N training rows.")
@click.option("--rationale-warmup", type=option_type("train", "rationale_warmup", float),
              default=0.25, show_default=True,
              help="Fraction of steps in which the rationale loss trains only its decoder, not the shared encoder.")
@click.option("--rationale-decoder", type=click.Choice(values(RationaleDecoder)), default="separate", show_default=True,
              help="seq2seq students: 'separate' trains a second decoder for rationales (dropped by strip); 'shared' "
              "is the DSS original, one decoder for both tasks, told apart by a task prefix.")
@click.option("--decoder-layers", type=option_type("train", "decoder_layers", int), default=2, show_default=True,
              help="Layers of the rationale decoder (and of a bert2bert label decoder), warm-started from the encoder.")
@click.option("--pooling", type=click.Choice(values(Pooling)), default="auto", show_default=True,
              help="What the label head reads: mean = the mean of the token states, cls = BERT's [CLS] state and pooler, "
              "two-tower (multiple choice) = the question and each choice encoded apart, scored by 20 x the cosine of their "
              "mean states, as all-MiniLM-L6-v2 was pretrained; (classification) an input written 'first [SEP] second', "
              "its two texts encoded apart and classified by [u, v, |u - v|, u * v] of their mean states, as Sentence-BERT "
              "read NLI pairs. "
              "auto: the pooling the base was pretrained with (for all-MiniLM-L6-v2, from its 1_Pooling config: mean, and "
              "two-tower for multiple choice other than a numeric task's expressions; a compressed or trained base keeps "
              "its own); cls for bases that record none.")
@click.option("--numeric", type=click.Choice(values(Numeric)), default="auto", show_default=True,
              help="Numeric tasks (answers such as 42): expressions = an encoder student chooses among every expression of "
              "one operation (+ - * /) on two numbers of the input, a multiple-choice model whose answer is that "
              "expression's value (rows whose answer needs more are skipped); generate = a seq2seq student writes the "
              "answer (an encoder becomes bert2bert). auto: expressions for an encoder base, generate for a T5/BART base.")
def train(**kw):
    """Train a small student on the teacher's labels (and rationales).

    Runs on the HF Trainer: on several GPUs or processes launch the same command with
    `torchrun --nproc_per_node N -m edgedistill.cli train ...` or `accelerate launch -m edgedistill.cli train ...`.
    """
    kw["candidates"] = [m.strip() for m in kw["candidates"].split(",")] if kw["candidates"] else None
    for line in summary_lines(run_train(TrainConfig(**kw), echo=click.echo), kw["out"]):
        click.echo(line)


def skipped_rows(stats: dict) -> str:
    """How many annotations training skipped, and why where it is not the usual (no teacher label, no gold)."""
    n = stats["skipped_status"] + stats["skipped_no_gold"] + stats["skipped_low_confidence"] + stats.get("skipped_unreachable", 0)
    why = [f"{stats[k]} {text}" for k, text in (("skipped_low_confidence", "below --min-confidence"),
           ("skipped_unreachable", "not one operation on two of the input's numbers")) if stats.get(k)]
    return f"{n} ({'; '.join(why)})" if why else str(n)


def summary_lines(s: dict | None, out) -> list[str]:
    """What train prints when it is done (also under `edgedistill run`); nothing on a torchrun worker."""
    if not s:
        return []
    lines = [""]
    if s.get("candidates"):
        from ..distill.model_card import candidate_table, skipped_note

        lines += candidate_table(s["candidates"]) + [""]
        if s.get("auto_skipped"):
            lines += [skipped_note(s["auto_skipped"]), ""]
    rows = [("student", out), ("family", s["family"]), ("mode", s["mode"] + (f" (alpha {s['alpha']})" if s["mode"] in ("multitask", "rationale-teacher") else "")),
            ("training rows", f"{s['train_examples']} ({s['rows']['with_rationale']} with rationale)"),
            ("skipped rows", skipped_rows(s["rows"])),
            ("validation rows", s["val_examples"]), ("train loss", f"{s['train_loss']:.4f}"),
            ("best val accuracy", "–" if s["val_accuracy"] is None else f"{100 * s['val_accuracy']:.1f} %" + floor_note(s.get("val_vs_floor"))),
            ("time", f"{s['elapsed_s']:.0f} s")]
    return lines + [f"  {k:<20}{v}" for k, v in rows]
