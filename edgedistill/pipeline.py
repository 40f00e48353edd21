"""`edgedistill run pipeline.yaml`: every stage from one file, redoing only what changed.

Stages run in order annotate -> train -> strip -> export -> bench -> report. Each stage reads the
previous stage's artifact from the run directory and calls the same stage function, with the same
config dataclass, as its CLI command (annotate, train, strip_student, export_bundle, run_bench), so a
pipeline run and a hand-typed chain of commands produce the same artifacts. A pipeline section's keys
are that config's field names with the same defaults (tests/test_pipeline_config.py checks they agree).

A stage is skipped when its fingerprint (its settings, the content of its input files and the
fingerprint of the stage before it) matches the one recorded when it last finished. Fingerprints
are recorded only after a stage completes, so a crash or Ctrl-C mid-stage redoes that stage (the
teacher stage then replays its cache and pays for nothing twice).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path

from . import bounds
from .atomic import write_json
from .choices import CANDIDATE_MODES, Choice, Mode, values
from .compress.compress import CompressConfig, compress
from .console import quiet
from .data import load_examples
from .deploy import export as deploy_export
from .deploy.cascade import shipped_cascade
from .deploy.export import ExportConfig
from .distill.config import TrainConfig
from .errors import UserError, at
from .evaluate import evaluate_model
from .measure import bench_report
from .measure.bench import BenchConfig, run_bench
from .options import section, stage_settings, unwrap_optional
from .rundir import run_dir_lock
from .stages import BY_NAME, PIPELINE
from .task import load_task
from .teacher import annotate as teacher_annotate
from .teacher.annotate import AnnotateConfig
from .teacher.cache import Cache, cache_file_problem
from .teacher.client import redact_url
from .teacher.cost import price_for
from .user_yaml import read_yaml

STAGES = PIPELINE  # annotate, train, strip, compress, export, bench, report (stages.py)


# Each section's keys, types and defaults are its stage config's fields (options.section): written once, there.
TeacherSection = section(
    AnnotateConfig,
    "teacher",
    (
        "model",
        "base_url",
        "api_key_env",
        "prompt",
        "rationale_fraction",
        "max_cost",
        "price_in",
        "price_out",
        "concurrency",
        "scoring",
        "score_orders",
        "calibration",
        "votes",
        "vote_temperature",
        "rationalize",
        "max_failed",
        "price_cached",
        "batch_price_factor",
        "service_tier",
        "batch",
        "batch_wait",
        "batch_fallback",
    ),
    # recorded teacher responses, merged into the run's cache (replayed, never re-paid)
    extra=(("cache", str | None, None),),
)
StudentSection = section(
    TrainConfig,
    "student",
    (
        "student",
        "mode",
        "candidates",
        "alpha",
        "epochs",
        "min_steps",
        "batch_size",
        "lr",
        "max_length",
        "seed",
        "val_fraction",
        "pooling",
        "numeric",
    ),
    rename={"student": "base"},  # the base model dir; default: the offline all-MiniLM-L6-v2
    extra=(("compare", list[Mode], []),),  # more modes trained for the report only
)
# optional: present in pipeline.yaml = the compress stage runs (edgedistill compress)
CompressSection = section(
    CompressConfig,
    "compress",
    (
        "layers",
        "latency_budget",
        "trim_vocab",
        "common_words",
        "epochs",
        "threads",
        "inputs",
        "into",
        "label_weight",
        "ensemble",
    ),
)
ExportSection = section(
    ExportConfig,
    "export",
    ("quantize", "target", "min_agreement", "text_model", "int8_fp32", "smooth"),
    hint={"int8_fp32": int | str},  # a count of MatMuls or auto (bounds.int8_fp32_problem)
)
BenchSection = section(BenchConfig, "bench", ("batch_sizes", "seq_lens", "threads", "min_time"))


@dataclass
class Pipeline:
    task: str
    data: str
    run_dir: str = "runs/pipeline"
    eval_data: str | None = None  # gold-labelled held-out data for accuracy (never used for selection)
    teacher: TeacherSection = field(default_factory=TeacherSection)
    student: StudentSection = field(default_factory=StudentSection)
    compress: CompressSection | None = None
    export: ExportSection = field(default_factory=ExportSection)
    bench: BenchSection = field(default_factory=BenchSection)
    # folder of the pipeline file, set on load (not a YAML key): relative paths resolve against it
    base: Path = field(default=Path("."), init=False)
    source: Path = field(default=Path("pipeline.yaml"), init=False)  # the pipeline file itself
    lines: dict = field(default_factory=dict, init=False, repr=False)  # key path -> its line in the file

    def path(self, p: str | None) -> Path | None:
        return None if p is None else (self.base / p).resolve()

    @property
    def run(self) -> Path:
        return self.path(self.run_dir)


# ---------------------------------------------------------------- loading and validation


def load_pipeline(path) -> Pipeline:
    """Read and check a pipeline file: every key's type, choice and range, named by `file:line`, before any work."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"{path}: pipeline file not found" if not path.exists() else f"{path}: a folder, not a pipeline file"
        )
    raw, lines = read_yaml(path, "pipeline file")
    pipe = _build(Pipeline, raw, _Where(path, lines), "")
    pipe.base, pipe.source, pipe.lines = path.resolve().parent, path, lines
    where = _Where(path, lines)
    for key in ("task", "data", "eval_data", "teacher.cache", "student.base"):
        value = _get(pipe, key)
        if value is None or (key == "student.base" and "/" not in value and not value.startswith(".")):
            continue
        if not pipe.path(value).exists():
            raise where.error(
                key,
                f"file {pipe.path(value)} does not exist; fix the path (relative paths are relative "
                "to the pipeline file)",
            )
    if pipe.teacher.cache:
        why = cache_file_problem(pipe.path(pipe.teacher.cache))
        if why:
            raise where.error("teacher.cache", f"{pipe.path(pipe.teacher.cache)}: {why}")
    existing = next(p for p in (pipe.run, *pipe.run.parents) if p.exists())
    if not existing.is_dir():
        raise where.error(
            "run_dir", f"{existing} is a file; give a folder for the run's artifacts (it is created if missing)"
        )
    _check_choices(pipe, where)
    _check_ranges(pipe, where)
    t = pipe.teacher
    if t.max_cost is not None and price_for(t.model, t.price_in, t.price_out) is None:
        raise where.error(
            "teacher.max_cost",
            f"no list price known for model {t.model!r}; give teacher.price_in and "
            "teacher.price_out (USD per 1M tokens)",
        )
    if t.votes > 1 and t.vote_temperature <= 0:
        raise where.error("teacher.vote_temperature", "votes need sampling; give a temperature above 0 (0.7 is usual)")
    # Validate the task and data now, so a bad row fails before any stage starts.
    task = load_task(pipe.path(pipe.task))
    load_examples(task, pipe.path(pipe.data))
    if pipe.eval_data:
        load_examples(task, pipe.path(pipe.eval_data), require_gold=True)
    return pipe


def _get(pipe: Pipeline, key: str):
    """The value of a dotted key ("teacher.cache"); None where its section is absent."""
    obj = pipe
    for part in key.split("."):
        obj = getattr(obj, part) if obj is not None else None
    return obj


@dataclass
class _Where:
    """The pipeline file and the line of each key path in it: errors name `file:line: key`."""

    path: Path
    lines: dict[str, int]

    def error(self, key: str, problem: str) -> UserError:
        line = self.lines.get(key) or self.lines.get(key.split("[")[0]) or self.lines.get(key.split(".")[0])
        return at(self.path, line, key, problem)


# pipeline section -> the stage whose config its keys are (bounds.BOUNDS holds each key's range)
SECTION_STAGE = {BY_NAME[name].section: name for name in PIPELINE if BY_NAME[name].section}
NARROWER = {"student.candidates": CANDIDATE_MODES}  # keys that take fewer of their enum's values


def _check_choices(pipe: Pipeline, where: _Where) -> None:
    """Keys that take fewer values than their enum has (an enum's own values are checked as the file is read)."""
    for key, allowed in NARROWER.items():
        for i, v in enumerate(_get(pipe, key) or []):
            if v not in allowed:
                raise where.error(f"{key}[{i}]", f"{v!r} is not a mode auto can train; use {', '.join(allowed)}")
    why = bounds.int8_fp32_problem(pipe.export.int8_fp32)
    if why:
        raise where.error("export.int8_fp32", why)


def _check_ranges(pipe: Pipeline, where: _Where) -> None:
    """Each key against the range its stage's flag has (bounds.BOUNDS): one declaration for both."""
    for name, stage in SECTION_STAGE.items():
        obj = getattr(pipe, name)
        if obj is None:
            continue
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            for i, item in enumerate(value) if isinstance(value, list) else [(None, value)]:
                why = bounds.problem(stage, f.name, item)
                if why:
                    raise where.error(f"{name}.{f.name}" + (f"[{i}]" if i is not None else ""), why)


def _build(cls, raw, where: _Where, prefix: str):
    """Instantiate a config dataclass from a mapping, naming the key path (and line) of any mistake."""
    if not isinstance(raw, dict):
        problem = f"expected a mapping of keys, got {type(raw).__name__}"
        raise where.error(prefix.rstrip("."), problem) if prefix else UserError(f"{where.path}: top level: {problem}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in raw.items():
        if key not in fields:
            raise where.error(f"{prefix}{key}", f"unknown key; allowed here: {', '.join(fields)}")
        hint = hints[key]
        hint = unwrap_optional(hint) if dataclasses.is_dataclass(unwrap_optional(hint)) else hint  # optional section
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value or {}, where, f"{prefix}{key}.")
        else:
            kwargs[key] = _check_type(value, hint, where, f"{prefix}{key}")
    missing = [
        n
        for n, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and n not in kwargs
    ]
    if missing:
        raise where.error(f"{prefix}{missing[0]}", "required key is missing")
    return cls(**kwargs)


def _check_type(value, hint, where: _Where, keypath):
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if value is None and type(None) in args:
        return None
    if unwrap_optional(hint) is not hint:  # `X | None` given a value: check it as X
        return _check_type(value, unwrap_optional(hint), where, keypath)
    if origin is list:
        if not isinstance(value, list):
            raise where.error(keypath, f"expected a list, e.g. [{_example(args[0])}], got {value!r}")
        return [_check_type(v, args[0], where, f"{keypath}[{i}]") for i, v in enumerate(value)]
    allowed = [a for a in (args or (hint,)) if a is not type(None)]
    for a in allowed:
        if isinstance(a, type) and issubclass(a, Choice):
            if isinstance(value, str) and value in values(a):
                return value
            raise where.error(keypath, f"{value!r} is not one of {', '.join(values(a))}")
        if a is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if a is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if a is str and isinstance(value, str):
            return value
        if a is bool and isinstance(value, bool):
            return value
    names = " or ".join(a.__name__ for a in allowed)
    raise where.error(
        keypath,
        f"expected {names}, got {value!r} ({type(value).__name__}); e.g. "
        f"{keypath.split('.')[-1]}: {_example(allowed[0])}",
    )


def _example(t):
    return {int: "2", float: "0.5", str: "text", bool: "true"}.get(t, "...")


# ---------------------------------------------------------------- fingerprints


def _file_hash(path: Path | None) -> str | None:
    if path is None:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# teacher keys that decide whether a run passed, how it is sent or what it is billed, never which answers it wrote (the
# cache keys are the same by every route): changing one redoes nothing
UNPRINTED = {
    "max_failed",
    "batch",
    "batch_wait",
    "batch_fallback",
    "service_tier",
    "price_cached",
    "batch_price_factor",
}


def fingerprints(pipe: Pipeline) -> dict[str, str]:
    """Each stage's fingerprint: its own settings and inputs, chained to the stage before it."""
    own = {
        "annotate": {
            "teacher": {k: v for k, v in dataclasses.asdict(pipe.teacher).items() if k not in UNPRINTED},
            "task": _file_hash(pipe.path(pipe.task)),
            "data": _file_hash(pipe.path(pipe.data)),
            "cache": _file_hash(pipe.path(pipe.teacher.cache)),
        },
        "train": {"student": dataclasses.asdict(pipe.student), "eval_data": _file_hash(pipe.path(pipe.eval_data))},
        "strip": {},
        "compress": None if pipe.compress is None else dataclasses.asdict(pipe.compress),
        "export": dataclasses.asdict(pipe.export),
        "bench": {"bench": dataclasses.asdict(pipe.bench), "eval_data": _file_hash(pipe.path(pipe.eval_data))},
        "report": {},
    }
    out, previous = {}, ""
    for stage in STAGES:
        blob = json.dumps({"previous": previous, "stage": stage, "settings": own[stage]}, sort_keys=True, default=str)
        out[stage] = previous = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return out


# ---------------------------------------------------------------- running


def exported_model(pipe: Pipeline) -> str:
    """The run-dir folder export reads: the compressed model when the pipeline compresses, else the stripped one."""
    return "stripped" if pipe.compress is None else "compressed"


def _model_path(pipe: Pipeline, name: str | None) -> str | None:
    """A model named in pipeline.yaml: a path (relative to the file) when it looks like one, else the name as
    written."""
    return str(pipe.path(name)) if name and ("/" in name or name.startswith(".")) else name


def stage_configs(pipe: Pipeline) -> dict[str, list]:
    """The config each stage function is called with, in order; also what `run --dry-run` prints."""
    run, s = pipe.run, pipe.student

    def train(mode, out):
        return TrainConfig(
            task=str(pipe.path(pipe.task)),
            annotations=str(run / "annotations.jsonl"),
            out=str(out),
            **{
                **stage_settings(s),
                "student": _model_path(pipe, s.base),
                "mode": mode,
                "candidates": (s.candidates or None) if mode == "auto" else None,
            },
        )

    return {
        "annotate": [
            AnnotateConfig(
                task=str(pipe.path(pipe.task)),
                data=str(pipe.path(pipe.data)),
                out=str(run),
                **stage_settings(pipe.teacher),
            )
        ],
        "train": [train(s.mode, run / "student")] + [train(m, run / "compare" / m) for m in s.compare if m != s.mode],
        "strip": [(run / "student", run / "stripped")],
        "compress": []
        if pipe.compress is None
        else [
            CompressConfig(
                model=str(run / "stripped"),
                annotations=str(run / "annotations.jsonl"),
                out=str(run / "compressed"),
                eval_data=None,
                **{
                    **stage_settings(pipe.compress),
                    "layers": pipe.compress.layers or None,
                    "into": [_model_path(pipe, b) for b in pipe.compress.into or []] or None,
                    "ensemble": [str(pipe.path(d)) for d in pipe.compress.ensemble or []] or None,
                    "inputs": pipe.compress.inputs and str(pipe.path(pipe.compress.inputs)),
                },
            )
        ],
        "export": [
            ExportConfig(model=str(run / exported_model(pipe)), out=str(run / "bundle"), **stage_settings(pipe.export))
        ],
        "bench": [BenchConfig(**stage_settings(pipe.bench))],
        "report": [],
    }


def describe_config(cfg) -> str:
    """One stage call as text: the config's class and the fields that differ from its defaults (a base URL's
    credentials as ***)."""
    if not dataclasses.is_dataclass(cfg):
        return f"strip_student({', '.join(map(str, cfg))})"
    parts = []
    for f in dataclasses.fields(cfg):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        value = getattr(cfg, f.name)
        if f.repr and value != default:
            parts.append(f"{f.name}={redact_url(value) if f.name == 'base_url' else value!r}")
    return f"{type(cfg).__name__}({', '.join(parts)})"


def _annotate(pipe: Pipeline, configs: list, echo) -> None:
    if pipe.teacher.cache:
        _merge_recorded_cache(pipe)
    teacher_annotate.report_summary(teacher_annotate.annotate(configs[0], echo=echo), configs[0].out, echo)


def _train(pipe: Pipeline, configs: list, echo) -> None:
    from .distill import train as distill_train  # deferred: torch, so that `run --help` and --dry-run start at once

    for cfg in configs:
        for line in distill_train.summary_lines(distill_train.train(cfg, echo=echo), cfg.out):
            echo(line)


def _strip(pipe: Pipeline, configs: list, echo) -> None:
    from .distill import strip as distill_strip  # deferred: torch, as in _train

    for student, out in configs:
        echo(distill_strip.summary_line(distill_strip.strip_student(student, out)))


def _compress(pipe: Pipeline, configs: list, echo) -> None:
    for cfg in configs:
        compress(cfg, echo=echo)


def _export(pipe: Pipeline, configs: list, echo) -> None:
    cfg = shipped_cascade(configs[0])  # the cascade compress shipped, if it did
    for line in deploy_export.summary_lines(deploy_export.export_bundle(cfg, echo=echo), cfg.out):
        echo(line)


def _bench(pipe: Pipeline, configs: list, echo) -> None:
    run = pipe.run
    doc = run_bench(
        run / "bundle",
        run / exported_model(pipe),
        pipe.path(pipe.eval_data),
        configs[0],
        command=["edgedistill", "run", str(pipe.source)],
        echo=echo,
    )
    paths = bench_report.write_outputs(doc, run / "bench")
    for line in [
        "",
        *bench_report.summary_lines(doc),
        f"\nReport: {paths['report']}  (results.json, latency.png, tradeoff.png beside it)",
    ]:
        echo(line)


def _report(pipe: Pipeline, configs: list, echo) -> None:
    from .run_report import write_report  # deferred: torch (the model card's tables), as in _train

    write_report(pipe, _evaluations(pipe))


# stage -> how `run` calls its function with the configs stage_configs built, printing what its command prints
RUN_STAGE = {
    "annotate": _annotate,
    "train": _train,
    "strip": _strip,
    "compress": _compress,
    "export": _export,
    "bench": _bench,
    "report": _report,
}


def _merge_recorded_cache(pipe: Pipeline) -> None:
    """Start from the recorded responses: replaying them costs nothing. Merged, not copied, so a run that
    already has a cache also gets what a newer recording holds."""
    cache = Cache(pipe.run / "cache.sqlite")
    try:
        cache.merge_from(pipe.path(pipe.teacher.cache))
    finally:
        cache.close()


def run_pipeline(
    pipe: Pipeline, force: str | None = None, until: str | None = None, echo=print, note=None, verbose: bool = False
) -> list[dict]:
    """Run the stages in order; returns one row per stage: name, status (ran/skipped), seconds.
    `echo` prints what the stages print, `note` the pipeline's own lines (default: echo). Library logs and
    warnings go to RUN/logs/STAGE.log (console.quiet), and with `verbose` to the terminal too. The run directory
    is locked for the whole run (rundir.py): a second process on it is refused at once."""
    with run_dir_lock(pipe.run, f"edgedistill run {pipe.source}"):
        return _run_stages(pipe, force, until, echo, note or echo, verbose)


def _run_stages(pipe: Pipeline, force: str | None, until: str | None, echo, note, verbose: bool) -> list[dict]:
    run = pipe.run
    run.mkdir(parents=True, exist_ok=True)
    state_path = run / "pipeline_state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    prints = fingerprints(pipe)
    configs = stage_configs(pipe)
    outputs = {name: run / BY_NAME[name].output for name in STAGES}
    rows, dirty = [], False
    for stage in STAGES:
        up_to_date = state.get(stage) == prints[stage] and outputs[stage].exists()
        if stage == "compress" and pipe.compress is None:
            note("[compress] not configured (no compress: section), skipped")
            rows.append({"stage": stage, "status": "skipped", "seconds": 0.0})
        elif up_to_date and not dirty and force != stage:
            note(f"[{stage}] up to date, skipped")
            rows.append({"stage": stage, "status": "skipped", "seconds": 0.0})
        else:
            dirty = True  # everything after a stage that ran runs too
            note(f"[{stage}] running")
            state.pop(stage, None)  # done only once it succeeds: a failed or killed stage is redone next time
            write_json(state_path, state)
            start = time.perf_counter()
            for stale in run.glob(f".{outputs[stage].name}.*.tmp"):  # left by a killed earlier run
                shutil.rmtree(stale, ignore_errors=True)
            with quiet(run / "logs" / f"{stage}.log", verbose):
                RUN_STAGE[stage](pipe, configs[stage], echo)
            state[stage] = prints[stage]
            write_json(state_path, state)
            rows.append({"stage": stage, "status": "ran", "seconds": round(time.perf_counter() - start, 1)})
        if stage == until:
            break
    return rows


def _evaluations(pipe: Pipeline) -> dict[str, dict]:
    """Accuracy on eval_data of every trained student and of the bundle, by name."""
    if pipe.eval_data is None:
        return {}
    run = pipe.run
    shipped = pipe.student.mode
    if shipped == "auto" and (run / "student" / "train.json").exists():
        shipped = f"auto: {json.loads((run / 'student' / 'train.json').read_text())['mode']}"
    models = {f"student ({shipped})": run / "student"}
    models.update({f"student ({m})": run / "compare" / m for m in pipe.student.compare if m != pipe.student.mode})
    models["bundle (INT8)" if pipe.export.quantize == "int8" else "bundle"] = run / "bundle"
    task = load_task(pipe.path(pipe.task))
    examples = load_examples(task, pipe.path(pipe.eval_data), require_gold=True)
    return {name: evaluate_model(path, task, examples) for name, path in models.items() if path.exists()}
