"""Every fixed set of choices, as enums, torch-free so that reading a pipeline file or `--help` imports no torch.

A choice is a `str` enum (model2vec's `PoolingMode(str, Enum)` pattern): a member equals, hashes and prints as its
value, so `Mode.AUTO == "auto"`, JSON writes "auto" and a dict keyed by members answers plain strings. The stage
configs type their fields with these enums and coerce what they are given (`Mode("auto")`); click options and
pipeline.yaml offer `values(Enum)`.

Student training modes (`train --mode`, pipeline `student.mode`):

  auto               train label-only and the rationale modes on one split; ship label-only unless another
                     beats it on validation beyond noise
  label-only         the teacher's labels (and label_probs as soft targets where a row has them)
  multitask          + a decoder that writes the teacher's rationale (Distilling Step-by-Step)
  rationale-teacher  + soft labels and head states of an encoder that read input + rationale (KNIFE)
  rationale-dropout  the rationale appended to the input on a share of the steps
  standard           gold labels, no teacher (a reference)
"""

from __future__ import annotations

from enum import Enum

from .errors import UserError


class Choice(str, Enum):
    """A fixed choice: equal to, hashed as and printed as its string value."""

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return repr(self.value)  # 'auto', as a config's repr and `run --dry-run` show it

    __format__ = str.__format__
    __hash__ = str.__hash__


def values(choice: type[Choice]) -> tuple[str, ...]:
    """The strings a user may give for `choice`, in declaration order (click.Choice, error messages)."""
    return tuple(member.value for member in choice)


class PromptMode(Choice):
    """annotate --prompt: how the teacher is asked (teacher/prompts.py holds the words)."""

    ZERO_SHOT = "zero-shot"
    ZERO_SHOT_COT = "zero-shot-cot"
    FEW_SHOT_COT = "few-shot-cot"
    LABEL_ONLY = "label-only"


class Scoring(Choice):
    """annotate --scoring: what the scoring request's first token names (an option's letter, its text) or none."""

    LETTER = "letter"
    WORD = "word"
    NONE = "none"


class Calibration(Choice):
    """annotate --calibration: how the teacher's option scores are calibrated (teacher/teacher_signal.py)."""

    BATCH = "batch"
    CONTENT_FREE = "content-free"
    NONE = "none"


class ServiceTier(Choice):
    """annotate --service-tier: the processing tier live requests ask for. default: the server's own (nothing is
    sent); flex: OpenAI's Flex processing, half price like the Batch API, slower, and 429 when capacity is short."""

    DEFAULT = "default"
    FLEX = "flex"


class BatchFallback(Choice):
    """annotate --batch-fallback: where a request goes again when its batch ended without answering it (an error
    line, an expired or failed batch): a new batch (up to --max-retries times) or a live request at list price."""

    BATCH = "batch"
    LIVE = "live"


class Mode(Choice):
    """train --mode: which student is trained (the module docstring says what each does)."""

    AUTO = "auto"
    LABEL_ONLY = "label-only"
    MULTITASK = "multitask"
    RATIONALE_TEACHER = "rationale-teacher"
    RATIONALE_DROPOUT = "rationale-dropout"
    STANDARD = "standard"


RATIONALE_MODES = (Mode.MULTITASK, Mode.RATIONALE_TEACHER, Mode.RATIONALE_DROPOUT)
ENCODER_ONLY_MODES = (Mode.RATIONALE_TEACHER, Mode.RATIONALE_DROPOUT)  # they change the input: no seq2seq
CANDIDATE_MODES = (Mode.LABEL_ONLY, *RATIONALE_MODES)  # what auto may try


class RationaleDecoder(Choice):
    """train --rationale-decoder (seq2seq students): a second decoder for rationales, or one for both (DSS)."""

    SEPARATE = "separate"
    SHARED = "shared"


class Pooling(Choice):
    """train --pooling: what the label head reads (distill.student.pooling_for)."""

    AUTO = "auto"
    MEAN = "mean"
    CLS = "cls"
    TWO_TOWER = "two-tower"


class Numeric(Choice):
    """train --numeric: how a student answers a numeric task (distill.student.family_for).

    expressions: an encoder ranks the one-operation expressions over the problem's numbers (edge.expressions) as a
    multiple-choice student; generate: a seq2seq student writes the answer (an encoder becomes bert2bert); auto:
    expressions for an encoder base, generate for a T5/BART base.
    """

    AUTO = "auto"
    EXPRESSIONS = "expressions"
    GENERATE = "generate"


class Quantize(Choice):
    """export --quantize."""

    INT8 = "int8"
    NONE = "none"


class Target(Choice):
    """export --target: the CPU the INT8 graph is tuned for."""

    AUTO = "auto"
    X86 = "x86"
    ARM64 = "arm64"


# train --min-steps: a run whose --epochs give fewer optimizer steps trains more epochs, up to this many steps.
# 180 e-SNLI rows at 3 epochs are 36 steps of 16 rows, and every seed ended at the one-class floor (34.0 /
# refused / 36.0 % test); at 150 steps, with a retry at twice the steps, every label-only seed leaves it (45.2 ±
# 2.3 %), and 700 rows at 150 steps (4 epochs) test as at 3 (benchmarks/results/min_steps.md). Too few iterations,
# not too few rows, is what fails few-sample fine-tuning (Mosbach et al. 2021; Zhang et al. 2021).
MIN_STEPS = 150
# export --smooth: the SmoothQuant alpha applied before dynamic INT8 (deploy.quantize.smooth_activations, where the
# alphas are measured); 0 turns smoothing off
SMOOTH_ALPHA = 0.8


def parse(choice: type[Choice], value, name: str) -> Choice:
    """`value` as a member of `choice`; a UserError naming the setting (`name`, e.g. "--mode") and the choices."""
    try:
        return choice(value)
    except ValueError:
        raise UserError(f"{name}: {value!r}; use one of {', '.join(values(choice))}") from None
