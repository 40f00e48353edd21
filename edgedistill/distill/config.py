"""`TrainConfig`: the train stage's settings (its fields are `edgedistill train`'s flags and pipeline.yaml's
`student:` keys). In a module of its own, below every module of distill/, because rows (train_data), auto's rule
(select) and the run (train) all read it; it imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..choices import CANDIDATE_MODES, ENCODER_ONLY_MODES, MIN_STEPS, Mode, Numeric, Pooling, RationaleDecoder, parse
from ..errors import UserError


@dataclass
class TrainConfig:
    task: str
    annotations: str
    out: str
    student: str | None = None  # base model dir; default: the offline all-MiniLM-L6-v2
    mode: Mode = Mode.AUTO
    alpha: float = 0.5
    epochs: float = 3.0
    min_steps: int = MIN_STEPS  # more epochs where `epochs` would give fewer optimizer steps (epochs_for); 0: off
    batch_size: int = 16
    lr: float | None = None
    max_length: int = 128
    rationale_max_length: int = 64
    seed: int = 0
    eval_data: str | None = None  # gold-labelled validation data; default: carve val_fraction from training
    data: str | None = None  # standard mode: gold labels from this file instead of the annotations
    val_fraction: float = 0.1
    rationale_fraction: float = 1.0  # keep rationales on this seeded fraction only (experiments)
    max_train: int | None = None
    decoder_layers: int = 2
    rationale_decoder: RationaleDecoder = RationaleDecoder.SEPARATE  # seq2seq only; shared: one decoder for both (DSS)
    grad_accum: int = 1
    # Fraction of the training steps during which the rationale loss trains the decoder only; the
    # encoder feels it afterwards (see RationaleWarmup).
    rationale_warmup: float = 0.25
    # Learning rate of the parts that start untrained (the label head, the pooler); None: lr (seq2seq)
    # or HEAD_LR (encoder families). See param_groups.
    head_lr: float | None = None
    # encoder layer i (of L) learns at lr * layer_decay ** (L - 1 - i); None: LAYER_DECAY (encoder families) or 1
    layer_decay: float | None = None
    retries: int = 2  # retrain a run that ends at the floor this many times, each with the next seed
    temperature: float = 2.0  # rationale-teacher: soft labels at this temperature (Hinton et al. 2015)
    hidden_weight: float = 1.0  # rationale-teacher: weight of the [CLS]-state term beside the soft labels
    rationale_dropout: float = 0.5  # rationale-dropout: share of steps a row is seen with its rationale
    candidates: list[Mode] | None = None  # auto: the modes to try (default: label-only and every rationale mode)
    # Rows whose annotation carries `label_probs` (the teacher's own distribution: logprobs, votes):
    # label loss = (1 - soft_weight) * CE(hard label) + soft_weight * T^2 KL(teacher at T || student at T)
    soft_weight: float = 0.5
    soft_temperature: float = 1.0
    min_confidence: float = 0.0  # drop rows whose teacher gave its label less than this probability
    progress: bool = True  # one progress bar on the terminal (distill/progress.py TrainingBar)
    # What the label head reads: mean (the token states' mean), cls (BERT's [CLS] + pooler), two-tower, or auto: the
    # pooling the base was pretrained with (student.pooling_for). Classification and multiple choice only.
    pooling: Pooling = Pooling.AUTO
    numeric: Numeric = Numeric.AUTO  # how a numeric task is answered (student.family_for)

    def __post_init__(self):
        self.mode = parse(Mode, self.mode, "--mode")
        self.rationale_decoder = parse(RationaleDecoder, self.rationale_decoder, "--rationale-decoder")
        self.pooling = parse(Pooling, self.pooling, "--pooling")
        self.numeric = parse(Numeric, self.numeric, "--numeric")
        if self.candidates is not None:
            self.candidates = [_candidate(m) for m in self.candidates]


def _candidate(mode) -> Mode:
    """One of auto's --candidates: a mode auto may train (not auto itself, not standard)."""
    if mode not in CANDIDATE_MODES:
        raise UserError(f"--candidates: {mode!r}; use modes from {', '.join(CANDIDATE_MODES)}")
    return Mode(mode)


def mode_unavailable(mode: str, family: str, model_type: str) -> str | None:
    """Why a student of this family and base cannot train `mode`, or None where it can: a seq2seq student takes no
    mode that changes the encoder's input; multitask's rationale decoder (below) is a BERT decoder warm-started from
    the encoder's own layers, which an encoder of another layout (MPNet) cannot give it."""
    if family == "seq2seq" and mode in ENCODER_ONLY_MODES:
        return "needs a classification or multiple-choice student, not a seq2seq one"
    if mode == "multitask" and family != "seq2seq" and model_type != "bert":
        return (
            f"its rationale decoder is a BERT decoder warm-started from the encoder's layers, which a {model_type} "
            "encoder cannot give it"
        )
    return None
