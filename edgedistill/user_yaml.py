"""Read a user's YAML file (task.yaml, pipeline.yaml) safely, or stop with `file:line: problem`.

yaml.safe_load walks aliases as a tree: a 500-byte file of nested aliases expands to billions of values (the
"billion laughs"), and an anchor that contains its own alias is a cycle that ends in RecursionError. These
files are a few lines a person writes, so aliases (*name, and merge keys <<: *name) are refused where they
appear; the value is written out instead. A key written twice is refused too (YAML would keep the last).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .errors import UserError, at


class _AliasFound(Exception):
    def __init__(self, alias: str, line: int):
        self.alias, self.line = alias, line


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, first: int):
        self.key, self.line, self.first = key, line, first


class _NoAliasLoader(yaml.SafeLoader):
    """The safe loader, stopping at the first alias before it is resolved."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _AliasFound(event.anchor, event.start_mark.line + 1)
        return super().compose_node(parent, index)


def read_yaml(path, what: str) -> tuple[object, dict[str, int]]:
    """The document of a YAML file and the 1-based line of each key and list item ("labels", "labels[1]",
    "synonyms.neutral"); UserError naming the file and line for bytes that are not UTF-8, YAML that does not
    parse, an alias, nesting too deep to read, or a key written twice. `what` names the file in messages
    ("task file")."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read the {what} ({e.strerror or e}); check the path") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise at(
            path,
            data.count(b"\n", 0, e.start) + 1,
            None,
            f"not valid UTF-8 (byte 0x{data[e.start]:02x}); re-save the {what} as UTF-8",
        ) from None
    loader = _NoAliasLoader(text)
    try:
        node = loader.get_single_node()
        document = loader.construct_document(node) if node is not None else None
        lines = _key_lines(node) if isinstance(node, yaml.MappingNode) else {}
    except _AliasFound as e:
        raise at(
            path,
            e.line,
            None,
            f"the alias *{e.alias} repeats an anchored value; aliases (*name, <<: *name) are "
            f"not accepted in a {what}, since a few of them can expand to billions of values; write the value "
            "out",
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise at(
            path,
            None if mark is None else mark.line + 1,
            None,
            f"not valid YAML ({getattr(e, 'problem', None) or e.__class__.__name__}); fix the syntax",
        ) from None
    except RecursionError:
        raise at(
            path,
            loader.get_mark().line + 1,
            None,
            "nested too deeply to read (thousands of brackets or indents); write a flat value",
        ) from None
    except _DuplicateKey as e:
        raise at(
            path,
            e.line,
            e.key,
            f"the key appears twice (first on line {e.first}); keep one (YAML would silently use the last)",
        ) from None
    finally:
        loader.dispose()
    return document, lines


def _key_lines(node, prefix: str = "", out: dict | None = None) -> dict[str, int]:
    """1-based line of every key and list item of a composed YAML document (without aliases, so a tree);
    a key written twice raises _DuplicateKey."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for k, v in node.value:
            name = f"{prefix}.{k.value}" if prefix else str(k.value)
            if k.value in seen:
                raise _DuplicateKey(name, k.start_mark.line + 1, seen[k.value])
            seen[k.value] = out[name] = k.start_mark.line + 1
            _key_lines(v, name, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out[f"{prefix}[{i}]"] = v.start_mark.line + 1
            _key_lines(v, f"{prefix}[{i}]", out)
    return out
