"""One error type for everything a user can fix: bad files, bad flags, bad bundles."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix. The CLI prints it without a traceback and exits 2."""


def at(path, line: int | None, field: str | None, problem: str) -> UserError:
    """Build the `file:line: field: what is wrong and how to fix it` error the whole project uses."""
    where = str(path)
    if line is not None:
        where += f":{line}"
    if field:
        where += f": {field}"
    return UserError(f"{where}: {problem}")
