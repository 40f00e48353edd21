"""Templates such as a task's input "Premise: {premise}\nHypothesis: {hypothesis}": parsed once, filled without
str.format.

A placeholder is a field's name and nothing more: no format spec ("{text:>3000000}" would pad every input to
3 M characters, "{text:d}" fails on text), no conversion ("{text!r}"), no attribute or index ("{text.__class__}",
"{text[0]}"), no positional field ("{}", "{0}"); a name is a Python identifier, as the bundle's runtime
requires. Literal braces are written {{ and }}. Standard library only, so a bundle's runtime can use it too.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Mapping


@functools.lru_cache(maxsize=64)
def parse_template(text: str) -> tuple[tuple[str, str | None], ...]:
    """The (literal text, field name or None) pieces of a template. ValueError naming the first placeholder that
    is not a plain field name, or the unbalanced brace."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as e:  # "{text" or a lone "}"
        raise ValueError(f"{e}; write a field as {{name}} and a literal brace as {{{{ or }}}}") from None
    pieces = []
    for literal, name, spec, conversion in parsed:
        if name is None:
            pieces.append((literal, None))
            continue
        written = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if not name or name.isdigit():
            raise ValueError(f"{written} is a positional placeholder; name the field, e.g. {{text}}")
        if "." in name or "[" in name:
            field = name.split(".")[0].split("[")[0] or "text"
            raise ValueError(
                f"{written} reaches into a field (an attribute or an index); write the field alone: {{{field}}}"
            )
        if not name.isidentifier():
            raise ValueError(
                f"{written} is not a field name (letters, digits and _, not starting with a digit); "
                "rename the data field"
            )
        if spec or conversion:
            raise ValueError(
                f"{written} has a {'format spec' if spec else 'conversion'}; templates take the field alone: {{{name}}}"
            )
        pieces.append((literal, name))
    return tuple(pieces)


def template_fields(text: str) -> list[str]:
    """The fields a template uses, in order of first appearance."""
    return list(dict.fromkeys(name for _, name in parse_template(text) if name is not None))


def fill_template(text: str, values: Mapping) -> str:
    """The template with each placeholder replaced by str(values[name]); KeyError for a missing field."""
    return "".join(literal + ("" if name is None else str(values[name])) for literal, name in parse_template(text))
