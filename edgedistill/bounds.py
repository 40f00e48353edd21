"""The range of every numeric setting, declared once per stage config field.

The CLI's option types (`option_type`), pipeline.yaml's checks (`pipeline.load_pipeline`, naming `file:line`) and
the stage functions that take a config from Python (`check_config`) all read these tables, so `--concurrency 0`
and `teacher: {concurrency: 0}` are refused with the same bound. Keys are the field names of the stage's config
dataclass (AnnotateConfig, TrainConfig, CompressConfig, ExportConfig, BenchConfig), which are also the
pipeline.yaml keys of its section. A list field's bound applies to each item. Torch-free: reading a pipeline file
imports this, never a stage.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import click

from .errors import UserError


@dataclass(frozen=True)
class Range:
    """Closed bounds unless `low_open` / `high_open`; None: unbounded on that side. Values must be finite."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def text(self) -> str:
        """The allowed values in words: "at least 1", "above 0", "in (0, 1]"."""
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'above' if self.low_open else 'at least'} {self.low:g}"
        return f"{'below' if self.high_open else 'at most'} {self.high:g}"

    def problem(self, value) -> str | None:
        """Why `value` is out of range, or None when it is in range."""
        if isinstance(value, float) and not math.isfinite(value):
            return f"{value} is not a number in range; give one {self.text()}"
        too_low = self.low is not None and (value < self.low or (self.low_open and value == self.low))
        too_high = self.high is not None and (value > self.high or (self.high_open and value == self.high))
        return f"{value!r} is out of range; give a value {self.text()}" if too_low or too_high else None

    def click_type(self, kind: type) -> click.ParamType:
        """The click type of a flag with this range (its --help shows the range)."""
        if kind is int:
            return click.IntRange(_int(self.low), _int(self.high), min_open=self.low_open, max_open=self.high_open)
        return FiniteFloatRange(self.low, self.high, min_open=self.low_open, max_open=self.high_open)


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses nan and inf (nan passes every comparison, so FloatRange takes it)."""

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value} is not a finite number.", param, ctx)
        return rv


def _int(x):
    return None if x is None else int(x)


def at_least(low: float) -> Range:
    return Range(low)


def above(low: float) -> Range:
    return Range(low, low_open=True)


POSITIVE_INT, NON_NEGATIVE, POSITIVE, SHARE = at_least(1), at_least(0), above(0), Range(0, 1)
TEMPERATURE = Range(0, 2)  # the OpenAI API's sampling temperatures

# stage -> {config field: Range}
BOUNDS: dict[str, dict[str, Range]] = {
    "annotate": {
        "rationale_fraction": Range(0, 1, low_open=True),
        "concurrency": POSITIVE_INT,
        "max_cost": NON_NEGATIVE,
        "limit": POSITIVE_INT,
        "timeout": POSITIVE,
        "max_retries": NON_NEGATIVE,
        "backoff_base": NON_NEGATIVE,
        "temperature": TEMPERATURE,
        "max_tokens": POSITIVE_INT,
        "price_in": NON_NEGATIVE,
        "price_out": NON_NEGATIVE,
        "score_orders": POSITIVE_INT,
        "votes": POSITIVE_INT,
        "vote_temperature": TEMPERATURE,
        "max_failed": SHARE,
        "price_cached": NON_NEGATIVE,
        "batch_price_factor": Range(0, 1),
        "batch_wait": NON_NEGATIVE,
        "batch_poll": POSITIVE,
        "batch_max_requests": Range(1, 50_000),  # the Batch API's limit per file
        "batch_max_mb": Range(0, 200, low_open=True),  # the Batch API's limit per file, in MB
        "deadline": POSITIVE,
    },
    "train": {
        "alpha": SHARE,
        "epochs": POSITIVE,
        "min_steps": NON_NEGATIVE,
        "batch_size": POSITIVE_INT,
        "lr": POSITIVE,
        "max_length": POSITIVE_INT,
        "rationale_max_length": POSITIVE_INT,
        "val_fraction": Range(0, 1, low_open=True, high_open=True),
        "rationale_fraction": SHARE,
        "max_train": POSITIVE_INT,
        "decoder_layers": POSITIVE_INT,
        "grad_accum": POSITIVE_INT,
        "rationale_warmup": SHARE,
        "head_lr": POSITIVE,
        "layer_decay": POSITIVE,
        "retries": NON_NEGATIVE,
        "temperature": POSITIVE,
        "hidden_weight": NON_NEGATIVE,
        "rationale_dropout": SHARE,
        "soft_weight": SHARE,
        "soft_temperature": POSITIVE,
        "min_confidence": SHARE,
    },
    "compress": {
        "layers": POSITIVE_INT,
        "latency_budget": POSITIVE,
        "common_words": NON_NEGATIVE,
        "threads": POSITIVE_INT,
        "epochs": POSITIVE,
        "batch_size": POSITIVE_INT,
        "lr": POSITIVE,
        "label_weight": Range(0, 1, high_open=True),
        "min_agreement": SHARE,
        "cascade_agreement": Range(0, 1, low_open=True),
    },
    "export": {
        "max_length": POSITIVE_INT,
        "min_agreement": SHARE,  # 0: accept any agreement (a random test model's near ties)
        "parity_samples": POSITIVE_INT,
        "threads": POSITIVE_INT,
        "smooth": SHARE,
        "cascade_agreement": Range(0, 1, low_open=True),  # the share of the transformer's answers a cascade keeps
    },
    "import-dss": {"limit": POSITIVE_INT},  # no config dataclass: import_dss's flag alone
    "bench": {
        "batch_sizes": POSITIVE_INT,
        "seq_lens": POSITIVE_INT,
        "threads": POSITIVE_INT,
        "min_time": NON_NEGATIVE,
        "min_iters": POSITIVE_INT,
        "warmup": NON_NEGATIVE,
        "limit": POSITIVE_INT,
    },
}

INT8_FP32_AUTO = "auto"  # export --int8-fp32: the other accepted value beside a count of MatMuls


def option_type(stage: str, name: str, kind: type) -> click.ParamType:
    """The click type of the flag that sets `stage`'s config field `name`."""
    return BOUNDS[stage][name].click_type(kind)


def problem(stage: str, name: str, value) -> str | None:
    """Why `value` is out of range for `stage`'s field `name` (each item, for a list), or None."""
    bound = BOUNDS[stage].get(name)
    if bound is None or value is None:
        return None
    for i, item in enumerate(value if isinstance(value, list) else [value]):
        why = bound.problem(item)
        if why:
            return f"item {i}: {why}" if isinstance(value, list) else why
    return None


def flag(name: str) -> str:
    """A config field's command-line flag."""
    return "--" + name.replace("_", "-")


def check_config(stage: str, cfg) -> None:
    """Refuse a stage config (built in Python, not by the CLI) with a value out of range, naming the flag."""
    for f in dataclasses.fields(cfg):
        why = problem(stage, f.name, getattr(cfg, f.name))
        if why:
            raise UserError(f"{flag(f.name)}: {why}")


def int8_fp32_problem(value) -> str | None:
    """export --int8-fp32 / pipeline `export.int8_fp32`: a count of MatMuls (0 or more) or auto."""
    text = str(value).strip().lower()
    if isinstance(value, bool) or not (text == INT8_FP32_AUTO or text.isdigit()):
        return f"{value!r} is not a count of MatMuls or {INT8_FP32_AUTO}; give 0 or more (0: none), or {INT8_FP32_AUTO}"
    return None


class Int8Fp32(click.ParamType):
    """The click type of export --int8-fp32."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        why = int8_fp32_problem(value)
        if why:
            self.fail(why, param, ctx)
        return str(value).strip().lower()


CASCADE_AUTO = "auto"  # export --cascade-threshold: search P on the parity inputs


def cascade_threshold_problem(value) -> str | None:
    """export --cascade-threshold: auto, or the static tier's top probability P in (0, 1] at which it answers."""
    text = str(value).strip().lower()
    if text == CASCADE_AUTO:
        return None
    try:
        p = float(text)
    except ValueError:
        p = None
    if isinstance(value, bool) or p is None or not math.isfinite(p) or not 0 < p <= 1:
        return (
            f"{value!r} is not a probability in (0, 1] or {CASCADE_AUTO}; give e.g. 0.9 (the static model answers "
            f"when its top probability is >= 0.9), or {CASCADE_AUTO}"
        )
    return None


class CascadeThreshold(click.ParamType):
    """The click type of export --cascade-threshold."""

    name = "auto|P"

    def convert(self, value, param, ctx):
        why = cascade_threshold_problem(value)
        if why:
            self.fail(why, param, ctx)
        return str(value).strip().lower()
