"""`edgedistill train`: distill a student from annotations."""

from __future__ import annotations

import click

from ..distill.config import TrainConfig
from ..distill.select import SIGNIFICANCE, rows_to_win
from ..options import field_option


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@field_option("train", TrainConfig, "task", type=click.Path(), help="Task spec YAML.")
@field_option(
    "train", TrainConfig, "annotations", type=click.Path(), help="RUN/annotations.jsonl from annotate or import-dss."
)
@field_option(
    "train",
    TrainConfig,
    "out",
    type=click.Path(file_okay=False),
    help="Student dir to write (replaced only when training succeeds).",
)
@field_option(
    "train",
    TrainConfig,
    "student",
    type=click.Path(),
    help="Base model dir (default: all-MiniLM-L6-v2, 22M). A BERT or MPNet sentence "
    "encoder keeps the mean-pooled and two-tower heads (all-mpnet-base-v2, 110M: bash benchmarks/fetch_mpnet.sh); "
    "a T5/BART dir makes a seq2seq student.",
)
@field_option(
    "train",
    TrainConfig,
    "mode",
    help="auto: train label-only and every rationale mode on one split; ship label-only unless another beats it on "
    f"validation beyond noise (a paired sign test over the validation rows, p < {SIGNIFICANCE}), else the best "
    f"of those; the rationale modes are trained only where they could win (at least {rows_to_win()} validation "
    "rows that label-only gets wrong). label-only: the teacher's labels. multitask: + a decoder that "
    "writes the rationale (Distilling Step-by-Step). rationale-teacher: + soft labels and head states of an "
    "encoder that read input + rationale (KNIFE). rationale-dropout: the rationale appended to the input on "
    "a random share of the steps. standard: gold labels, no teacher.",
)
@field_option(
    "train",
    TrainConfig,
    "candidates",
    help="auto: the modes to try (default: label-only and every rationale mode). "
    "label-only is always trained, as the reference; seq2seq (numeric) students try label-only and multitask only.",
)
@field_option(
    "train",
    TrainConfig,
    "alpha",
    help="loss = alpha * label + (1 - alpha) * rationale term (multitask, rationale-teacher).",
)
@field_option("train", TrainConfig, "epochs")
@field_option(
    "train",
    TrainConfig,
    "min_steps",
    help="Train more epochs where --epochs would give fewer optimizer steps than this (a few hundred rows: 180 "
    "e-SNLI rows at 3 epochs are 36 steps, which left every seed at the one-class floor). 0: --epochs as given.",
)
@field_option("train", TrainConfig, "batch_size", help="Per device; multiply by GPUs/processes.")
@field_option(
    "train",
    TrainConfig,
    "lr",
    help="Learning rate of the encoder's top layer (default 2e-4 encoder students, 5e-5 two-tower multiple "
    "choice, 3e-4 seq2seq).",
)
@field_option(
    "train",
    TrainConfig,
    "head_lr",
    help="Learning rate of the untrained label head and pooler (default 1e-3): a fast "
    "head beside a gently moving encoder. Classification and multiple-choice students only.",
)
@field_option(
    "train",
    TrainConfig,
    "layer_decay",
    help="Layer-wise decay: encoder layer i of L learns at lr * decay^(L-1-i) "
    "(default 0.8; 1.0, one rate, for two-tower multiple choice). Classification and multiple-choice students only.",
)
@field_option(
    "train",
    TrainConfig,
    "retries",
    help="Retrain a run that ends at the floor (validation accuracy no better than always answering the "
    "commonest label, or nine in ten predictions one label) this many times, each with the next seed and twice "
    "the steps of the attempt before; then fail without writing a student.",
)
@field_option("train", TrainConfig, "temperature", help="rationale-teacher: soft-label temperature.")
@field_option(
    "train",
    TrainConfig,
    "hidden_weight",
    help="rationale-teacher: weight of the [CLS]-state (cosine) term beside the soft labels.",
)
@field_option(
    "train",
    TrainConfig,
    "soft_weight",
    help="Rows whose annotation has `label_probs` (the teacher's distribution over the labels): label loss = "
    "(1 - w) * cross-entropy on the hard label + w * KL to that distribution. 0 ignores it.",
)
@field_option(
    "train",
    TrainConfig,
    "soft_temperature",
    help="Temperature of that KL term (1: the teacher's probabilities as given; > 1 flattens both sides).",
)
@field_option(
    "train",
    TrainConfig,
    "min_confidence",
    help="Drop rows whose `label_probs` give the teacher's label less than this probability.",
)
@field_option(
    "train",
    TrainConfig,
    "rationale_dropout",
    help="rationale-dropout: share of the steps on which a row is seen with its rationale appended.",
)
@field_option("train", TrainConfig, "max_length", help="Input token limit (also the bundle's).")
@field_option("train", TrainConfig, "rationale_max_length")
@field_option("train", TrainConfig, "seed")
@field_option(
    "train",
    TrainConfig,
    "eval_data",
    type=click.Path(),
    help="Gold-labelled validation file for checkpoint selection (default: 10%% of training rows).",
)
@field_option(
    "train",
    TrainConfig,
    "data",
    type=click.Path(),
    help="standard mode: read gold labels from this data file instead of the annotations.",
)
@field_option(
    "train",
    TrainConfig,
    "val_fraction",
    help="Share of the annotated rows held out for validation when no --eval-data is given.",
)
@field_option("train", TrainConfig, "rationale_fraction", help="Keep rationales on this seeded fraction of rows only.")
@field_option("train", TrainConfig, "max_train", help="Use at most N training rows.")
@field_option(
    "train",
    TrainConfig,
    "rationale_warmup",
    help="Fraction of steps in which the rationale loss trains only its decoder, not the shared encoder.",
)
@field_option(
    "train",
    TrainConfig,
    "rationale_decoder",
    help="seq2seq students: 'separate' trains a second decoder for rationales (dropped by strip); 'shared' "
    "is the DSS original, one decoder for both tasks, told apart by a task prefix.",
)
@field_option(
    "train",
    TrainConfig,
    "decoder_layers",
    help="Layers of the rationale decoder (and of a bert2bert label decoder), warm-started from the encoder.",
)
@field_option(
    "train",
    TrainConfig,
    "pooling",
    help="What the label head reads: mean = the mean of the token states, cls = BERT's [CLS] state and pooler, "
    "two-tower (multiple choice) = the question and each choice encoded apart, scored by 20 x the cosine of their "
    "mean states, as all-MiniLM-L6-v2 was pretrained; (classification) an input written 'first [SEP] second', "
    "its two texts encoded apart and classified by [u, v, |u - v|, u * v] of their mean states, as Sentence-BERT "
    "read NLI pairs. "
    "auto: the pooling the base was pretrained with (for all-MiniLM-L6-v2, from its 1_Pooling config: mean, and "
    "two-tower for multiple choice other than a numeric task's expressions; a compressed or trained base keeps "
    "its own); cls for bases that record none.",
)
@field_option(
    "train",
    TrainConfig,
    "numeric",
    help="Numeric tasks (answers such as 42): expressions = an encoder student chooses among every expression of "
    "one operation (+ - * /) on two numbers of the input, a multiple-choice model whose answer is that "
    "expression's value (rows whose answer needs more are skipped); generate = a seq2seq student writes the "
    "answer (an encoder becomes bert2bert). auto: expressions for an encoder base, generate for a T5/BART base.",
)
def train(**kw):
    """Train a small student on the teacher's labels (and rationales).

    Runs on the HF Trainer: on several GPUs or processes launch the same command with
    `torchrun --nproc_per_node N -m edgedistill.cli train ...` or `accelerate launch -m edgedistill.cli train ...`.
    """
    from ..distill.train import summary_lines  # deferred: torch, so that --help starts at once
    from ..distill.train import train as run_train

    for line in summary_lines(run_train(TrainConfig(**kw), echo=click.echo), kw["out"]):
        click.echo(line)
