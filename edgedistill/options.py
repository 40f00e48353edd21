"""A stage's settings, written once: its config dataclass gives every default and type, and this module builds
the click option of a field and the pipeline.yaml section of a stage from it.

Defaults and types come from the dataclass, choices from its enum-typed fields (choices.py), ranges from bounds.py;
a command adds only what a person reads (the flag's help) and pipeline.py only which keys a section offers.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing

import click

from . import bounds
from .choices import Choice, values


@functools.cache
def hints(config: type) -> dict[str, object]:
    """The resolved type of each field of `config` (its module uses `from __future__ import annotations`)."""
    return typing.get_type_hints(config)


def default_of(config: type, name: str):
    """The default of `config`'s field `name` (a fresh list for a list factory); MISSING when it has none."""
    f = next((f for f in dataclasses.fields(config) if f.name == name), None)
    if f is None:
        raise KeyError(f"{config.__name__} has no field {name!r}")
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def unwrap_optional(hint):
    """`X` of `X | None`; the hint itself otherwise."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1 else hint


def base_type(hint) -> object:
    """`X` of `X | None`, `list[X]` or `list[X] | None`; the hint itself otherwise."""
    hint = unwrap_optional(hint)
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0]
    return hint


def choice_type(hint) -> type[Choice] | None:
    """The enum a field (or each item of a list field) takes, or None."""
    t = base_type(hint)
    return t if isinstance(t, type) and issubclass(t, enum.Enum) else None


def field_option(stage: str, config: type, name: str, *decls: str, help: str | None = None, **extra):
    """The click option that sets `config`'s field `name`: its flag (`--name-with-dashes` unless `decls` give one),
    default, type (an enum's values, a number's range from bounds.BOUNDS[stage], a bool as an on/off flag) from the
    dataclass; `extra` passes what only the command knows (a click.Path, `multiple`, a callback)."""
    hint, default = hints(config)[name], default_of(config, name)
    flag = bounds.flag(name)
    kw: dict = {"help": help, "show_default": default is not None and default != []}
    enum_type, t = choice_type(hint), base_type(hint)
    if isinstance(default, list) or (default is None and typing.get_origin(unwrap_optional(hint)) is list):
        if not extra.get("multiple"):  # a list on the command line: items separated by commas
            kw["callback"] = functools.partial(_comma_list, stage, name, enum_type or t)
            kw["metavar"] = "A,B,..."
            default = ",".join(map(str, default)) if default else None
    elif enum_type is not None:
        kw["type"] = click.Choice(values(enum_type))
    elif t is bool:
        decls = decls or ((flag,) if default is False else (f"{flag}/--no-{flag[2:]}",))
        kw["is_flag"], kw["show_default"] = True, default is True
    elif t in (int, float) and name in bounds.BOUNDS.get(stage, {}):
        kw["type"] = bounds.option_type(stage, name, t)
    elif t in (int, float):
        kw["type"] = t
    if default is not dataclasses.MISSING:
        kw["default"] = default.value if isinstance(default, Choice) else default
    else:
        kw["required"] = True
    kw.update(extra)
    return click.option(*(decls or (flag,)), name, **kw)


LIST_ITEMS = {int: ("integers", "1,8,32"), float: ("numbers", "0.5,1.0"), str: ("names", "a,b")}


def _comma_list(stage: str, name: str, item_type, ctx, param, value):
    """A list flag's value, `1,8,32`, as a checked list (each item's type, choice and range); None stays None."""
    if value is None:
        return None
    if issubclass(item_type, Choice):
        what, example = f"values of {', '.join(values(item_type))}", values(item_type)[0]
    else:
        what, example = LIST_ITEMS.get(item_type, ("values", "a,b"))
    try:
        out = [item_type(x.strip()) for x in str(value).split(",") if x.strip()]
    except ValueError:
        out = None
    why = bounds.problem(stage, name, out) if out else f"give {what} separated by commas, e.g. {example}"
    if why:
        raise click.BadParameter(f"{value!r}: {why}")
    return out


def section(
    config: type,
    name: str,
    keys: tuple[str, ...],
    rename: dict[str, str] | None = None,
    extra: tuple[tuple[str, object, object], ...] = (),
    hint: dict[str, object] | None = None,
) -> type:
    """The pipeline.yaml section `name`: a dataclass whose fields are `config`'s `keys` with their types and defaults,
    under the yaml key `rename` gives; `extra` adds keys only the pipeline has, as (key, type, default); `hint`
    widens a key's type where YAML writes it otherwise (a count as a number where the config keeps text)."""
    rename, hint = rename or {}, hint or {}
    fields = [_field(rename.get(k, k), hint.get(k, hints(config)[k]), default_of(config, k)) for k in keys]
    fields += [_field(key, key_hint, default) for key, key_hint, default in extra]
    cls = dataclasses.make_dataclass(f"{name.capitalize()}Section", fields)
    cls.stage_config, cls.renamed = config, {v: k for k, v in rename.items()}
    return cls


def _field(key: str, hint, default) -> tuple:
    if isinstance(default, list):
        return key, hint, dataclasses.field(default_factory=functools.partial(list, default))
    return key, hint, dataclasses.field(default=default)


def stage_settings(section_value) -> dict:
    """A section's values under its stage config's field names (the pipeline-only keys left out)."""
    config = type(section_value).stage_config
    names = {f.name for f in dataclasses.fields(config)}
    out = {}
    for f in dataclasses.fields(section_value):
        field_name = type(section_value).renamed.get(f.name, f.name)
        if field_name in names:
            out[field_name] = getattr(section_value, f.name)
    return out
