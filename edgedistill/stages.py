"""The stages and commands in pipeline order: the one list `edgedistill --help`, each command's log routing and
`edgedistill run` read.

A stage's settings are its config dataclass (options.py builds its flags and its pipeline.yaml section from it);
its command module holds only the help text and one call of the stage function. Commands are named here as
"module:attribute" and imported when called, so `edgedistill --help` is instant and `predict` never loads torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str  # the command, `edgedistill NAME` (and the stage's name in a run)
    summary: str | None  # its line in `edgedistill --help`; None: a step of `run` with no command of its own
    command: str | None  # "module:attribute" of its click.Command
    output: str | None = None  # what it leaves in a run dir; None: not a step of `edgedistill run`
    section: str | None = None  # its pipeline.yaml section, whose keys are its config's fields
    # where its library chatter goes (console.quiet): RUN/logs/NAME.log with --out the run dir itself ("out") or a
    # folder inside it ("parent"); None: the command's output is all it prints
    log: str | None = None

    def load_command(self):
        """The click command, imported now."""
        module, attribute = self.command.split(":")
        return getattr(importlib.import_module(module), attribute)


STAGES = (
    Stage(
        "annotate",
        "1. Ask a teacher LLM to label (and explain) your inputs.",
        "edgedistill.commands.annotate:annotate",
        output="annotations.jsonl",
        section="teacher",
        log="out",
    ),
    Stage(
        "import-dss",
        "1'. Import the PaLM-540B annotations of the DSS datasets instead.",
        "edgedistill.commands.import_dss:import_dss",
        log="out",
    ),
    Stage(
        "train",
        "2. Distill a small student from the annotations.",
        "edgedistill.commands.train:train",
        output="student",
        section="student",
        log="parent",
    ),
    Stage(
        "strip",
        "3. Remove the rationale decoder, leaving a plain transformers model.",
        "edgedistill.commands.strip:strip",
        output="stripped",
        log="parent",
    ),
    Stage(
        "compress",
        "3'. Trim the vocabulary, drop layers, pick by a latency budget (optional).",
        "edgedistill.commands.compress:compress",
        output="compressed",
        section="compress",
        log="parent",
    ),
    Stage(
        "eval",
        "   Accuracy of a student, stripped model or bundle against gold labels.",
        "edgedistill.commands.evaluate:evaluate",
    ),
    Stage(
        "export",
        "4. Quantize and export to a verified ONNX bundle.",
        "edgedistill.commands.export:export",
        output="bundle",
        section="export",
        log="parent",
    ),
    Stage(
        "predict", "   Run a bundle on text or a data file (no torch needed).", "edgedistill.commands.predict:predict"
    ),
    Stage(
        "bench",
        "5. Latency, throughput, memory, size and accuracy side by side.",
        "edgedistill.commands.bench:bench",
        output="bench/results.json",
        section="bench",
        log="parent",
    ),
    Stage("report", None, None, output="report.md"),
    Stage("run", "   All stages from one pipeline.yaml, skipping what is up to date.", "edgedistill.commands.run:run"),
)

BY_NAME = {stage.name: stage for stage in STAGES}
COMMANDS = {stage.name: stage for stage in STAGES if stage.command}  # `edgedistill NAME`, in pipeline order
PIPELINE = tuple(stage.name for stage in STAGES if stage.output)  # the steps of `edgedistill run`, in order
