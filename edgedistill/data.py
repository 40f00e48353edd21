"""Read a data file into validated examples, or stop with `file:line: field: problem` before any work.

Formats: JSON lines (.jsonl / .json lines), a JSON list (.json), CSV (.csv / .tsv), Parquet (.parquet,
needs pyarrow). Each example carries the line it came from so later errors can point back to it.

Text files must be UTF-8 (a BOM is fine); a CSV/TSV quote that is never closed is an error, not a
field that swallows the rest of the file. A template field longer than MAX_FIELD_CHARS characters is
truncated to that length (no marker is added) and the example records it in `truncated`: the
student sees a few hundred tokens of it at most, and a megabyte-long text would only overflow the
teacher's context. `edgedistill annotate` counts them in its dry run and in annotate.json.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .edge.answers import normalize_gold as canonical
from .edge.arith import evaluate
from .errors import UserError, at
from .task import TaskSpec

# Longest template field kept, in characters (~4,000 tokens of English): far past what a student reads
# (its tokenizer cuts at max_length) and within the context of any teacher worth distilling from.
MAX_FIELD_CHARS = 16_000

_SURROGATE = re.compile("[\ud800-\udfff]")  # undecodable bytes (surrogateescape) or a lone "\ud83d" JSON escape


@dataclass
class Example:
    id: str
    input: str
    choices: list[str] | None = None
    gold: str | None = None  # normalised: a label, a choice text, or the numeric/equation string
    line: int | None = None
    row: dict | None = None  # the raw fields, for prompts that want them (template fields as truncated)
    truncated: dict[str, int] | None = None  # template field -> its length before truncation to MAX_FIELD_CHARS


class _DuplicateKey(ValueError):
    def __init__(self, key):
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _read_text(path: Path) -> tuple[str, tuple | None]:
    """The file decoded as UTF-8, and where the first undecodable byte is ((line, column, byte) or None).

    Undecodable bytes survive as surrogate escapes, so the rows still parse and the error can name the
    field that holds the bad byte."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read the data file ({e.strerror or e}); pass a readable file") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise at(
            path, 1, None, "the file is UTF-16 encoded (it starts with a UTF-16 byte-order mark); save it as UTF-8"
        )
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        return data.decode("utf-8-sig", errors="surrogateescape"), (line, column, data[e.start])


def _encoding_error(path: Path, line: int, field: str | None, bad: tuple | None) -> UserError:
    if bad is None:  # valid UTF-8: the surrogate came from a JSON escape
        return at(
            path,
            line,
            field,
            "holds an unpaired surrogate escape (\\ud800-\\udfff), which is not text; "
            "write the character itself or its full surrogate pair",
        )
    where = f"byte 0x{bad[2]:02x}" + (
        f" at line {bad[0]}, column {bad[1]}" if bad[0] != line else f" at column {bad[1]}"
    )
    return at(
        path,
        line,
        field,
        f"not valid UTF-8 ({where}); re-save the file as UTF-8, e.g. "
        f"iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name}",
    )


def _bad_text(value) -> bool:
    if isinstance(value, str):
        return bool(_SURROGATE.search(value))
    if isinstance(value, list):
        return any(_bad_text(v) for v in value)
    if isinstance(value, dict):
        return any(_bad_text(k) or _bad_text(v) for k, v in value.items())
    return False


def read_rows(path) -> list[tuple[int, dict]]:
    """(line number, row dict) for every record of a data file. Line numbers are 1-based."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: data file not found")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _parquet_rows(path)
    if suffix not in (".jsonl", ".json", ".ndjson", ".csv", ".tsv"):
        raise UserError(f"{path}: unknown data format {suffix!r}; use .jsonl, .json, .csv, .tsv or .parquet")
    text, bad = _read_text(path)
    try:
        if suffix in (".csv", ".tsv"):
            rows = _csv_rows(path, text, "\t" if suffix == ".tsv" else ",")
        elif suffix == ".json" and text.lstrip().startswith("["):
            rows = _json_list_rows(path, text)
        else:
            rows = _jsonl_rows(path, text)
    except UserError:
        if bad:  # the parse error is a symptom; the bytes are the cause
            raise _encoding_error(path, bad[0], None, bad) from None
        raise
    for line, row in rows:
        for k, v in row.items():
            if _bad_text(k) or _bad_text(v):
                raise _encoding_error(path, line, k if not _bad_text(k) else None, bad)
    return rows


def _jsonl_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    rows = []
    for n, line in enumerate(text.split("\n"), 1):  # only \n ends a record: JSON strings never hold a raw newline
        if not line.strip():
            continue
        try:
            r = json.loads(line, object_pairs_hook=_no_duplicates)
        except json.JSONDecodeError as e:
            raise at(
                path, n, None, f"malformed JSON line ({e.msg} at column {e.colno}); each line must be one JSON object"
            ) from None
        except _DuplicateKey as e:
            raise at(path, n, str(e.key), "the field appears twice in this object; keep one") from None
        except (ValueError, RecursionError) as e:
            raise at(path, n, None, _unreadable_json(e)) from None
        if not isinstance(r, dict):
            raise at(path, n, None, "each line must be a JSON object of fields, not a " + type(r).__name__)
        rows.append((n, r))
    return rows


def _json_list_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    """A JSON list of objects, each with the line its object starts on."""
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        raise at(path, e.lineno, None, f"invalid JSON ({e.msg}); fix the syntax") from None
    except (ValueError, RecursionError):
        pass  # a number too long or nesting too deep: the loop below names the item that holds it
    decoder = json.JSONDecoder(object_pairs_hook=_no_duplicates)
    ws = re.compile(r"[ \t\n\r]*")
    rows, pos, line, counted = [], text.index("[") + 1, 1, 0
    while True:
        pos = ws.match(text, pos).end()
        if text[pos] == "]":
            return rows
        line, counted = line + text.count("\n", counted, pos), pos
        try:
            item, pos = decoder.raw_decode(text, pos)
        except _DuplicateKey as e:
            raise at(path, line, str(e.key), "the field appears twice in this object; keep one") from None
        except json.JSONDecodeError as e:  # (the whole-text check above found none before this item)
            raise at(path, e.lineno, None, f"invalid JSON ({e.msg}); fix the syntax") from None
        except (ValueError, RecursionError) as e:
            raise at(path, line, f"[{len(rows)}]", _unreadable_json(e)) from None
        if not isinstance(item, dict):
            raise at(path, line, f"[{len(rows)}]", "each item must be a JSON object of fields")
        rows.append((line, item))
        pos = ws.match(text, pos).end()
        if text[pos] == ",":
            pos += 1


def _unreadable_json(e: Exception) -> str:
    """What is wrong with JSON that parses but cannot be read: nesting too deep, an integer too long."""
    if isinstance(e, RecursionError):
        return "lists or objects nested too deeply to read; each record must be one flat object of fields"
    return (
        f"an integer of more than {sys.get_int_max_str_digits()} digits, which JSON readers refuse; "
        "write it as a string in quotes, or drop it"
    )


def _csv_rows(path: Path, text: str, delimiter: str) -> list[tuple[int, dict]]:
    """Rows of a CSV/TSV, each with the line it starts on (a quoted field may span lines)."""
    old_limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # long fields are truncated later, not refused here (the default is 128 KiB)
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
        rows, header = [], None
        while True:
            start = reader.line_num + 1
            try:
                values = next(reader)
            except StopIteration:
                return rows
            except csv.Error as e:
                raise at(path, start, None, _csv_problem(str(e), delimiter)) from None
            if not values:  # a blank line
                continue
            if header is None:
                header = values
                dup = next((h for i, h in enumerate(header) if h in header[:i]), None)
                if dup is not None:
                    raise at(path, start, dup, "the header names this column twice; rename one")
                continue
            if len(values) != len(header):
                raise at(
                    path,
                    start,
                    None,
                    f"has a different number of columns ({len(values)}) than the header {header}; "
                    "quote fields that contain " + ("tabs" if delimiter == "\t" else "commas"),
                )
            rows.append((start, dict(zip(header, values))))
    finally:
        csv.field_size_limit(old_limit)


def _csv_problem(error: str, delimiter: str) -> str:
    sep = "tab" if delimiter == "\t" else "comma"
    if "unexpected end of data" in error or "EOF" in error:
        return (
            "a quoted field that starts on this line is never closed, so it would swallow the rest of the file; "
            'close the quote, and write a quote inside a quoted field as ""'
        )
    if "expected after" in error:
        return (
            f'a quoted field must end with " followed by a {sep} or the end of the line (a quote opened earlier may '
            f'be unclosed); close the quote, write a quote inside a quoted field as "", or do not start an unquoted '
            f'field with "'
        )
    return f"not valid {'TSV' if delimiter == chr(9) else 'CSV'} ({error}); fix the quoting on this line"


def _parquet_rows(path: Path) -> list[tuple[int, dict]]:
    try:
        # deferred: pyarrow is optional; only parquet inputs need it
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError(f"{path}: reading Parquet needs pyarrow; pip install pyarrow, or convert to JSONL") from None
    try:
        records = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow's ArrowInvalid / OSError on a truncated or non-Parquet file
        raise UserError(
            f"{path}: not a readable Parquet file ({type(e).__name__}: {str(e)[:200]}); "
            "re-export it, or convert to JSONL"
        ) from None
    rows = []
    for i, r in enumerate(records):
        for k, v in r.items():  # a binary column holds bytes: text as UTF-8, or a mistake
            if isinstance(v, (bytes, bytearray)):
                try:
                    r[k] = bytes(v).decode("utf-8")
                except UnicodeDecodeError:
                    raise at(
                        path, i + 2, k, "a binary value that is not UTF-8 text; store the column as a string"
                    ) from None
        rows.append((i + 2, r))
    return rows


def normalize_gold(task: TaskSpec, value, choices: list[str] | None, where: tuple) -> str:
    """Map a gold value to the canonical answer: a label name, a choice text, or a number/equation string.

    Accepts label names (any case), label indices (e-SNLI's 0/1/2), choice letters or indices: the rule the
    bundle's runtime applies too (edge.answers.normalize_gold); here a miss names the file, line and field.
    """
    try:
        gold = canonical(task.type, task.labels, value, choices)
    except ValueError as e:
        raise at(*where, str(e)) from None
    if task.type == "numeric":
        try:
            evaluate(gold)
        except ValueError as e:
            raise at(
                *where,
                f"a numeric gold must be a usable number or arithmetic expression such as 42 or "
                f"( 84.0 / 2.0 ), and this is not: {e}; fix the value or drop the row",
            ) from None
    return gold


def _field_text(path, line, name: str, value) -> str:
    """A template field's value as text; a nested object, list or NaN is a mistake, not text."""
    if isinstance(value, (dict, list)):
        raise at(
            path,
            line,
            name,
            f"a JSON {'object' if isinstance(value, dict) else 'list'} where the input template "
            "needs text; give a string (or change the task's input template)",
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise at(path, line, name, f"{value} where the input template needs text; give a string or drop the row")
    return str(value)


def load_examples(task: TaskSpec, path, limit: int | None = None, require_gold: bool = False) -> list[Example]:
    """Every example of a data file, validated against the task. Raises UserError on the first problem."""
    rows = read_rows(path)
    if not rows:
        raise UserError(f"{path}: no examples in the file; it must hold at least one record")
    out, seen = [], set()
    for n, (line, row) in enumerate(rows[:limit] if limit else rows):
        for f in task.fields:
            if f not in row or row[f] is None:
                raise at(path, line, f, f"missing field used by the task's input template; the row has {sorted(row)}")
        values = {f: _field_text(path, line, f, row[f]) for f in task.fields}
        if not all(v.strip() for v in values.values()):
            raise at(path, line, task.fields[0], "empty input; remove the row or fill in the field")
        truncated = {f: len(v) for f, v in values.items() if len(v) > MAX_FIELD_CHARS} or None
        if truncated:
            values = {f: v[:MAX_FIELD_CHARS] for f, v in values.items()}
            row = {**row, **{f: values[f] for f in truncated}}
        text = task.render(row)
        choices = None
        if task.type == "multiple-choice":
            choices = row.get(task.choices)
            if isinstance(choices, str):
                try:
                    choices = json.loads(choices)
                except json.JSONDecodeError:
                    choices = [c.strip() for c in choices.split("|")]
            if not isinstance(choices, list) or len(choices) < 2 or not all(str(c).strip() for c in choices):
                raise at(
                    path,
                    line,
                    task.choices,
                    "must be a list of at least two non-empty options (JSON list, or 'a|b|c' in CSV)",
                )
            choices = [str(c) for c in choices]
        gold = None
        if task.gold:
            if task.gold not in row or row[task.gold] in (None, ""):
                if require_gold:
                    raise at(path, line, task.gold, "missing gold label; this command needs one on every row")
            else:
                gold = normalize_gold(task, row[task.gold], choices, (path, line, task.gold))
        elif require_gold:
            raise UserError(
                f"{task.source}: gold: the task names no gold field; add 'gold: FIELD' to compare against labels"
            )
        ex_id = str(row[task.id]) if task.id and row.get(task.id) is not None else str(n)
        if task.id and task.id not in row:
            raise at(path, line, task.id, "missing id field named by the task")
        if ex_id in seen:
            raise at(path, line, task.id or "id", f"duplicate id {ex_id!r}; ids must be unique")
        seen.add(ex_id)
        out.append(Example(id=ex_id, input=text, choices=choices, gold=gold, line=line, row=row, truncated=truncated))
    return out
