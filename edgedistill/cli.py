"""The `edgedistill` command. Each subcommand lives beside the code it drives and is imported only
when called, so `edgedistill --help` is instant and `predict` never pulls in torch."""

from __future__ import annotations

import importlib
import sys

import click

from . import __version__
from .errors import UserError

# name -> "module:attribute" of a click.Command; order is the order of the pipeline.
COMMANDS = {
    "annotate": "edgedistill.commands.annotate:annotate",
    "import-dss": "edgedistill.commands.import_dss:import_dss",
    "train": "edgedistill.commands.train:train",
    "strip": "edgedistill.commands.strip:strip",
    "compress": "edgedistill.commands.compress:compress",
    "eval": "edgedistill.commands.evaluate:evaluate",
    "export": "edgedistill.commands.export:export",
    "predict": "edgedistill.commands.predict:predict",
    "bench": "edgedistill.commands.bench:bench",
    "run": "edgedistill.commands.run:run",
}

SUMMARIES = {
    "annotate": "1. Ask a teacher LLM to label (and explain) your inputs.",
    "import-dss": "1'. Import the PaLM-540B annotations of the DSS datasets instead.",
    "train": "2. Distill a small student from the annotations.",
    "strip": "3. Remove the rationale decoder, leaving a plain transformers model.",
    "compress": "3'. Trim the vocabulary, drop layers, pick by a latency budget (optional).",
    "eval": "   Accuracy of a student, stripped model or bundle against gold labels.",
    "export": "4. Quantize and export to a verified ONNX bundle.",
    "predict": "   Run a bundle on text or a data file (no torch needed).",
    "bench": "5. Latency, throughput, memory, size and accuracy side by side.",
    "run": "   All stages from one pipeline.yaml, skipping what is up to date.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as e:
            if not e.name or not e.name.startswith("edgedistill"):
                raise click.ClickException(
                    f"`edgedistill {name}` needs the package {e.name!r}; install the full toolkit: pip install 'edgedistill[all]'"
                ) from None
            raise

    def format_commands(self, ctx, formatter):
        rows = [(name, SUMMARIES[name]) for name in COMMANDS]
        with formatter.section("Commands (in pipeline order)"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            raise click.ClickException(str(e)) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgedistill")
def main():
    """Turn a large language model into a small, fast, device-ready model for one task.

    \b
    The path, each stage reading the previous one's artifact from RUN/:
      edgedistill annotate --task task.yaml --data inputs.jsonl --out RUN
      edgedistill train    --task task.yaml --annotations RUN/annotations.jsonl --out RUN/student
      edgedistill strip    RUN/student --out RUN/stripped
      edgedistill export   RUN/stripped --out RUN/bundle
      edgedistill bench    RUN/bundle --torch RUN/stripped --out RUN/bench
    or all of it at once: edgedistill run pipeline.yaml

    Run `edgedistill COMMAND --help` for each command's options.
    """


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
