"""The `edgedistill` command. Each subcommand lives beside the code it drives and is imported only
when called, so `edgedistill --help` is instant and `predict` never pulls in torch."""

from __future__ import annotations

import functools
import sys

import click

from . import __version__
from .console import VERBOSE, log_path, quiet
from .errors import UserError
from .stages import COMMANDS


def _set_verbose(ctx, param, value):
    ctx.meta[VERBOSE] = value


def _with_verbose(cmd: click.Command) -> None:
    """Give a command --verbose (library logs and warnings on the terminal as well as in the log file)."""
    if any(p.name == "verbose" for p in cmd.params):
        return
    cmd.params.append(
        click.Option(
            ["--verbose", "-v"],
            is_flag=True,
            expose_value=False,
            is_eager=True,
            callback=_set_verbose,
            help="Also print library logs and warnings (always written to RUN/logs/).",
        )
    )


def _logged(name: str, callback):
    """Run a stage command's body with library chatter routed to RUN/logs/NAME.log."""

    @functools.wraps(callback)
    def body(*args, **kwargs):
        ctx = click.get_current_context()
        is_run_dir = COMMANDS[name].log == "out"
        with quiet(log_path(kwargs["out"], name, is_run_dir=is_run_dir), verbose=ctx.meta.get(VERBOSE, False)):
            return callback(*args, **kwargs)

    body.edgedistill_logged = True
    return body


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        stage = COMMANDS.get(name)
        if stage is None:
            return None
        try:
            cmd = stage.load_command()
        except ModuleNotFoundError as e:
            if not e.name or not e.name.startswith("edgedistill"):
                raise click.ClickException(
                    f"`edgedistill {name}` needs the package {e.name!r}; install the full toolkit: "
                    "pip install 'edgedistill[all]'"
                ) from None
            raise
        if stage.log or name == "run":
            _with_verbose(cmd)
        if stage.log and not getattr(cmd.callback, "edgedistill_logged", False):
            cmd.callback = _logged(name, cmd.callback)
        return cmd

    def format_commands(self, ctx, formatter):
        rows = [(name, stage.summary) for name, stage in COMMANDS.items()]
        with formatter.section("Commands (in pipeline order)"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            raise UserFacingError(str(e)) from None


class UserFacingError(click.ClickException):
    """A UserError as the CLI reports it: "Error: ..." and exit 2 (click's exit for a bad flag, too)."""

    exit_code = 2


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
