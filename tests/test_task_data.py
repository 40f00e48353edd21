"""Task spec and data loading: every bad input stops with file:line: field: problem."""

import json
import re

import pytest

from edgedistill.data import load_examples
from edgedistill.edge.arith import UnusableNumber, evaluate, same_number, to_number
from edgedistill.errors import UserError
from edgedistill.task import load_task, task_from_dict

NLI = {
    "name": "nli",
    "type": "classification",
    "input": "Premise: {premise}\nHypothesis: {hypothesis}",
    "labels": ["entailment", "neutral", "contradiction"],
    "gold": "label",
}
MC = {"name": "cqa", "type": "multiple-choice", "input": "{question}", "choices": "choices", "gold": "answer"}


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_task_roundtrip_and_render(tmp_path):
    task = task_from_dict(NLI)
    assert task.fields == ["premise", "hypothesis"]
    assert (
        task.render({"premise": "A dog runs.", "hypothesis": "An animal moves."})
        == "Premise: A dog runs.\nHypothesis: An animal moves."
    )
    task.save(tmp_path / "t.yaml")
    assert load_task(tmp_path / "t.yaml").to_dict() == task.to_dict()


@pytest.mark.parametrize(
    "raw, match",
    [
        ({**NLI, "typo": 1}, "typo: unknown key"),
        ({**NLI, "type": "regression"}, "type: 'regression' is not a task type"),
        ({**NLI, "labels": ["only"]}, "labels: a classification task needs"),
        ({**MC, "choices": None}, "choices: a multiple-choice task must name"),
        ({**NLI, "input": "no fields"}, "input: the template uses no data field"),
        ({k: v for k, v in NLI.items() if k != "name"}, "name: required"),
    ],
)
def test_bad_task(raw, match):
    with pytest.raises(UserError, match=match):
        task_from_dict(raw)


def test_bad_yaml_names_the_line(tmp_path):
    p = write(tmp_path, "t.yaml", "name: x\ntype: [unclosed\n")
    with pytest.raises(UserError, match=r"t.yaml:\d+: not valid YAML"):
        load_task(p)


def test_loads_jsonl_csv_and_normalises_gold(tmp_path):
    task = task_from_dict(NLI)
    p = write(
        tmp_path,
        "d.jsonl",
        json.dumps({"premise": "p", "hypothesis": "h", "label": 2})
        + "\n\n"
        + json.dumps({"premise": "p2", "hypothesis": "h2", "label": "Neutral"})
        + "\n",
    )
    exs = load_examples(task, p)
    assert [e.gold for e in exs] == ["contradiction", "neutral"] and [e.line for e in exs] == [1, 3]
    c = write(tmp_path, "d.csv", 'premise,hypothesis,label\n"a, b",h,entailment\n')
    assert load_examples(task, c)[0].input == "Premise: a, b\nHypothesis: h"


def test_multiple_choice_gold_by_letter_text_or_index(tmp_path):
    task = task_from_dict(MC)
    rows = [{"question": "q", "choices": ["x", "y", "z"], "answer": a} for a in ("c", "Y", "0")]
    p = write(tmp_path, "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    assert [e.gold for e in load_examples(task, p)] == ["z", "y", "x"]


@pytest.mark.parametrize(
    "content, match",
    [
        ('{"premise": "p", "hypothesis": "h", "label": 0}\n{"premise": "p"\n', r"d.jsonl:2: malformed JSON line"),
        ('{"premise": "p", "label": 0}\n', r"d.jsonl:1: hypothesis: missing field"),
        ('{"premise": "p", "hypothesis": "h", "label": "maybe"}\n', r"d.jsonl:1: label: unknown label 'maybe'"),
        ('{"premise": " ", "hypothesis": "h", "label": 0}\n', r"d.jsonl:1: premise: empty input"),
        ("[1, 2]\n", r"d.jsonl:1: each line must be a JSON object"),
        ("", r"no examples"),
    ],
)
def test_bad_data_names_file_line_field(tmp_path, content, match):
    p = write(tmp_path, "d.jsonl", content)
    with pytest.raises(UserError, match=match):
        load_examples(task_from_dict(NLI), p)


def test_bad_csv_row(tmp_path):
    p = write(tmp_path, "d.csv", "premise,hypothesis,label\np,h,entailment,extra\n")
    with pytest.raises(UserError, match=r"d.csv:2: .*number of columns"):
        load_examples(task_from_dict(NLI), p)


def test_safe_arithmetic():
    assert evaluate("( 84.0 / 2.0 )") == 42.0
    assert same_number("12,000", "12000.0") and same_number("( 84.0 / 2.0 )", 42)
    for bad in ("__import__('os').system('true')", "2 ** 9999", "1/0", "x + 1", ""):
        assert to_number(bad) is None


@pytest.mark.parametrize(
    "expr, why",
    [
        ("1e400", "not a finite number"),
        ("9" * 400, "more than 100 digits"),
        ("10**99 * 10", "more than 100 digits"),
        ("((((9**99)**99)**99)**99)", "a power of 100 digits or more"),
        ("99999999999999999999**99", "a power of 100"),
        ("0.5 ** -400", "a power of 100"),
        ("(-8)**0.5", "not a real number"),
        ("(-27)**(1/3)", "not a real number"),
        ("1e99 * 1e99", "more than 100 digits"),
        ("7 % 0", "modulo by zero"),
        ("0 ** -1", "negative power"),
    ],
)
def test_arithmetic_bounds_every_value_and_says_why(expr, why):
    with pytest.raises(UnusableNumber, match=re.escape(why)):
        evaluate(expr)
    assert to_number(expr) is None and not same_number(expr, expr) and not same_number("42", expr)


def test_arithmetic_within_the_bounds_is_exact():
    assert evaluate("9**99") == float(9**99) and evaluate("(-8)**2") == 64 and evaluate("2**-3") == 0.125
    assert evaluate("1**(10**99)") == 1 and evaluate("-" * 300 + "1") == 1  # a long but cheap expression
    for value in (10**400, float("inf"), float("nan"), True, None, "9" * 600, "\x00"):
        assert to_number(value) is None
    assert to_number(10**99) == 1e99 and to_number(-2.5) == -2.5


@pytest.mark.parametrize(
    "template, why",
    [
        ("{text:d}", "{text:d} has a format spec"),
        ("{text:>3000000}", "has a format spec"),
        ("{}", "{} is a positional"),
        ("{0}", "{0} is a positional"),
        ("{text.__class__}", "reaches into a field"),
        ("{text[0]}", "reaches into a field"),
        ("{text!r}", "{text!r} has a conversion"),
        ("{text:{text}}", "has a format spec"),
        ("{text", "expected '}'"),
        ("text}", "Single '}'"),
        ("{first name}", "{first name} is not a field name"),
    ],
)
def test_input_templates_take_plain_fields_only(template, why):
    with pytest.raises(UserError, match=r"<task>: input: bad template: .*" + re.escape(why)):
        task_from_dict({**NLI, "input": template})


def test_templates_fill_like_str_format_without_it():
    task = task_from_dict({**NLI, "input": "{{premise}}: {premise} / {hypothesis} {premise}"})
    assert task.fields == ["premise", "hypothesis"]
    row = {"premise": "a {hypothesis} b", "hypothesis": 7, "extra": "x"}
    assert task.render(row) == "{premise}: a {hypothesis} b / 7 a {hypothesis} b"
    assert task.render(row) == task.input.format(**row)
    with pytest.raises(KeyError):
        task.render({"premise": "only"})


@pytest.mark.parametrize(
    "content, match",
    [
        (
            b'name: x\ntype: classification\ninput: "{text}"\nlabels: &l [a, b]\nsynonyms: {a: *l}\n',
            r"t\.yaml:5: the alias \*l repeats an anchored value",
        ),
        (b'name: x\ntype: classification\ninput: "{text}"\nlabels: &l [a, b, *l]\n', r"t\.yaml:4: the alias \*l"),
        (b"name: x\nbase: &b {type: numeric}\n<<: *b\n", r"t\.yaml:3: the alias \*b"),
        (b"name: x\ninput: " + b"[" * 5000 + b"]" * 5000 + b"\n", r"t\.yaml:2: nested too deeply"),
    ],
)
def test_yaml_aliases_and_deep_nesting_are_refused_with_the_line(tmp_path, content, match):
    with pytest.raises(UserError, match=match):
        load_task(write_bytes(tmp_path, "t.yaml", content))


@pytest.mark.parametrize(
    "name, content, match",
    [
        (
            "d.jsonl",
            b'{"id": "1", "text": "a", "label": 0}\n{"id": "2", "text": ' + b"[" * 3000 + b"]" * 3000 + b"}\n",
            r"d\.jsonl:2: lists or objects nested too deeply",
        ),
        (
            "d.jsonl",
            b'{"id": ' + b"7" * 5000 + b', "text": "a", "label": 0}\n',
            r"d\.jsonl:1: an integer of more than 4300 digits",
        ),
        (
            "d.json",
            b'[{"id": "1", "text": "a", "label": 0},\n {"id": "2", "text": ' + b"[" * 3000 + b"]" * 3000 + b"}]",
            r"d\.json:2: \[1\]: lists or objects nested too deeply",
        ),
        ("d.json", b"[\n" + b"[" * 3000 + b"]" * 3000 + b"]", r"d\.json:2: \[0\]: lists or objects nested too deeply"),
    ],
)
def test_json_nested_too_deep_or_with_a_5000_digit_integer_names_the_line(tmp_path, name, content, match):
    with pytest.raises(UserError, match=match):
        load_examples(task_from_dict(TEXT_TASK), write_bytes(tmp_path, name, content))


def test_numeric_gold_must_be_a_usable_number(tmp_path):
    task = task_from_dict({"name": "m", "type": "numeric", "input": "{q}", "gold": "a"})
    p = write(tmp_path, "d.jsonl", '{"q": "x", "a": "( 84.0 / 2.0 )"}\n{"q": "y", "a": "12,000"}\n')
    assert [e.gold for e in load_examples(task, p)] == ["( 84.0 / 2.0 )", "12,000"]
    for gold, why in [('"1e400"', "not a finite number"), ('"(-8)**0.5"', "not a real number"), ('"forty"', "Name")]:
        p = write(tmp_path, "d.jsonl", '{"q": "x", "a": "42"}\n{"q": "y", "a": ' + gold + "}\n")
        with pytest.raises(
            UserError, match=r"d\.jsonl:2: a: a numeric gold must be a usable number .*" + re.escape(why)
        ):
            load_examples(task, p)


# --- bad input as a new user makes it: encodings, oversize text, broken quoting, silent surprises ---------

from click.testing import CliRunner  # noqa: E402

from edgedistill.cli import main  # noqa: E402
from edgedistill.data import MAX_FIELD_CHARS, read_rows  # noqa: E402

TASK_YAML = (
    'name: nli\ntype: classification\ninput: "{text}"\nlabels: [entailment, neutral, contradiction]\n'
    "gold: label\nid: id\n"
)
TEXT_TASK = {
    "name": "nli",
    "type": "classification",
    "input": "{text}",
    "labels": ["entailment", "neutral", "contradiction"],
    "gold": "label",
    "id": "id",
}


def write_bytes(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize(
    "name, data, match",
    [
        (
            "d.jsonl",
            b'{"id": "1", "text": "ok", "label": 0}\n{"id": "2", "text": "caf\xe9", "label": 0}\n',
            r"d\.jsonl:2: text: not valid UTF-8 \(byte 0xe9 at column 25\); re-save the file as UTF-8",
        ),
        ("d.csv", b"id,text,label\n1,ok,neutral\n2,na\xefve,neutral\n", r"d\.csv:3: text: not valid UTF-8 \(byte 0xef"),
        ("d.tsv", b"id\ttext\tlabel\n1\tna\xefve\tneutral\n", r"d\.tsv:2: text: not valid UTF-8"),
        (
            "d.json",
            b'[{"id": "1",\n  "text": "caf\xe9", "label": 0}]',
            r"d\.json:1: text: not valid UTF-8 \(byte 0xe9 at line 2",
        ),
        (
            "d.jsonl",
            b'{"id": "1", "text": "ok", "label": 0\xe9\n',
            r"d\.jsonl:1: not valid UTF-8",
        ),  # the byte breaks the JSON itself
        ("d.jsonl", b"\xff\xfe" + '{"id": "1"}\n'.encode("utf-16-le"), r"d\.jsonl:1: the file is UTF-16 encoded"),
    ],
)
def test_non_utf8_data_names_file_line_field(tmp_path, name, data, match):
    with pytest.raises(UserError, match=match):
        load_examples(task_from_dict(TEXT_TASK), write_bytes(tmp_path, name, data))


@pytest.mark.parametrize(
    "name, content, match",
    [
        # the last column's quote is never closed: it would swallow row 3 and leave one "valid" row
        (
            "d.csv",
            'id,label,text\n1,neutral,"never closed\n2,neutral,second\n',
            r"d\.csv:2: a quoted field that starts on this line is never closed",
        ),
        (
            "d.tsv",
            'id\tlabel\ttext\n1\tneutral\tok\n2\tneutral\t"never closed\n3\tneutral\tthird\n',
            r"d\.tsv:3: a quoted field .* never closed",
        ),
        (
            "d.csv",
            'id,text,label\n1,"quoted" then more,neutral\n',
            r'd\.csv:2: a quoted field must end with " followed by a comma',
        ),
        ("d.csv", "id,text,text\n1,a,b\n", r"d\.csv:1: text: the header names this column twice"),
    ],
)
def test_broken_csv_quoting_is_an_error_not_a_silent_row(tmp_path, name, content, match):
    with pytest.raises(UserError, match=match):
        load_examples(task_from_dict(TEXT_TASK), write(tmp_path, name, content))


def test_csv_multiline_quoted_field_keeps_the_line_it_starts_on(tmp_path):
    p = write(tmp_path, "d.csv", 'id,text,label\n1,"two\nlines",neutral\n2,x,maybe?\n')
    rows = read_rows(p)
    assert rows[0] == (2, {"id": "1", "text": "two\nlines", "label": "neutral"}) and rows[1][0] == 4
    with pytest.raises(UserError, match=r"d\.csv:4: label: unknown label"):
        load_examples(task_from_dict(TEXT_TASK), p)


@pytest.mark.parametrize("name", ["d.jsonl", "d.csv", "d.tsv", "d.json"])
def test_megabyte_input_is_truncated_and_counted(tmp_path, name):
    big = "word " * 200_000  # 1 MB: the csv module refuses fields over 128 KiB, the token counter texts of 1M chars
    rows = [{"id": "1", "text": "short", "label": "neutral"}, {"id": "2", "text": big, "label": "neutral"}]
    if name == "d.jsonl":
        text = "".join(json.dumps(r) + "\n" for r in rows)
    elif name == "d.json":
        text = json.dumps(rows)
    else:
        sep = "\t" if name == "d.tsv" else ","
        text = sep.join(rows[0]) + "\n" + "".join(sep.join(r.values()) + "\n" for r in rows)
    exs = load_examples(task_from_dict(TEXT_TASK), write(tmp_path, name, text))
    assert exs[0].truncated is None and exs[0].input == "short"
    assert (
        exs[1].truncated == {"text": len(big)}
        and exs[1].input == big[:MAX_FIELD_CHARS]
        and exs[1].row["text"] == exs[1].input
    )


def test_truncation_keeps_the_template_around_the_long_field(tmp_path):
    p = write(
        tmp_path, "d.jsonl", json.dumps({"premise": "p" * (MAX_FIELD_CHARS + 5), "hypothesis": "h", "label": 0}) + "\n"
    )
    ex = load_examples(task_from_dict(NLI), p)[0]
    assert ex.input == "Premise: " + "p" * MAX_FIELD_CHARS + "\nHypothesis: h" and ex.truncated == {
        "premise": MAX_FIELD_CHARS + 5
    }


@pytest.mark.parametrize(
    "name, content, match",
    [
        # a pretty-printed JSON list: errors name the line the object starts on, not its index
        (
            "d.json",
            '[\n  {"id": "1", "text": "a", "label": 0},\n\n  {"id": "2",\n   "text": "b", "label": "maybe?"}\n]',
            r"d\.json:4: label: unknown label 'maybe\?'",
        ),
        ("d.json", '[{"id": "1", "text": "a", "text": "b", "label": 0}]', r"d\.json:1: text: the field appears twice"),
        (
            "d.jsonl",
            '{"id": "1", "text": "a", "label": 0, "text": "b"}\n',
            r"d\.jsonl:1: text: the field appears twice",
        ),
        # JSON true is a label name, never the index 1 (which is "neutral" here)
        ("d.jsonl", '{"id": "1", "text": "a", "label": true}\n', r"d\.jsonl:1: label: unknown label 'true'"),
        (
            "d.jsonl",
            '{"id": "1", "text": ["a", "b"], "label": 0}\n',
            r"d\.jsonl:1: text: a JSON list where the input template needs text",
        ),
        (
            "d.jsonl",
            '{"id": "1", "text": NaN, "label": 0}\n',
            r"d\.jsonl:1: text: nan where the input template needs text",
        ),
        (
            "d.jsonl",
            '{"id": "1", "text": "bad \\ud800 escape", "label": 0}\n',
            r"d\.jsonl:1: text: holds an unpaired surrogate escape",
        ),
        (
            "d.jsonl",
            '{"id": "1", "text": "a\u2028b", "label": 0}\n',
            None,
        ),  # U+2028 inside a JSON string is not a line break
    ],
)
def test_json_loaders_name_the_real_line_and_refuse_silent_surprises(tmp_path, name, content, match):
    p = write(tmp_path, name, content)
    if match is None:
        assert load_examples(task_from_dict(TEXT_TASK), p)[0].input == "a\u2028b"
        return
    with pytest.raises(UserError, match=match):
        load_examples(task_from_dict(TEXT_TASK), p)


def test_a_directory_is_not_a_data_file(tmp_path):
    (tmp_path / "d.jsonl").mkdir()
    with pytest.raises(UserError, match=r"d\.jsonl: cannot read the data file"):
        load_examples(task_from_dict(TEXT_TASK), tmp_path / "d.jsonl")


def _fake_pyarrow(monkeypatch, read_table):
    import sys
    import types

    pa, pq = types.ModuleType("pyarrow"), types.ModuleType("pyarrow.parquet")
    pq.read_table, pa.parquet = read_table, pq
    monkeypatch.setitem(sys.modules, "pyarrow", pa)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", pq)


def test_parquet_corrupt_file_and_binary_columns(tmp_path, monkeypatch):
    p = write_bytes(tmp_path, "d.parquet", b"PAR1 not really")

    def corrupt(path):
        raise OSError("Could not open Parquet input source: Parquet magic bytes not found in footer")

    _fake_pyarrow(monkeypatch, corrupt)
    with pytest.raises(UserError, match=r"d\.parquet: not a readable Parquet file \(OSError: Could not open"):
        load_examples(task_from_dict(TEXT_TASK), p)

    class Table:
        def __init__(self, rows):
            self.rows = rows

        def to_pylist(self):
            return self.rows

    _fake_pyarrow(monkeypatch, lambda path: Table([{"id": "1", "text": "caf\u00e9".encode(), "label": "neutral"}]))
    assert (
        load_examples(task_from_dict(TEXT_TASK), p)[0].input == "caf\u00e9"
    )  # UTF-8 bytes are text, not "b'caf\\xc3\\xa9'"
    _fake_pyarrow(monkeypatch, lambda path: Table([{"id": "1", "text": b"caf\xe9", "label": "neutral"}]))
    with pytest.raises(UserError, match=r"d\.parquet:2: text: a binary value that is not UTF-8"):
        load_examples(task_from_dict(TEXT_TASK), p)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"name: caf\xe9\ntype: classification\n", r"t\.yaml:1: not valid UTF-8 \(byte 0xe9\)"),
        (
            b'name: x\ntype: classification\ninput: "{text}"\nlabels: [a, b]\nname: y\n',
            r"t\.yaml:5: name: the key appears twice",
        ),
        (
            b'name: x\ntype: classification\ninput: "{text}"\nlabels:\n  - maybe\n  - yes\n',
            r"t\.yaml:6: labels\[1\]: YAML reads this unquoted value as True",
        ),
        (
            b'name: x\ntype: classification\ninput: "{text}"\nlabels: [a, b]\nsynonyms:\n  a: [ok, on]\n',
            r"t\.yaml:6: synonyms\.a\[1\]: YAML reads this unquoted value as True",
        ),
        (
            b'name: x\ntype: classification\ninput: "{text}"\nlabels: [a, b]\ngold: 3\n',
            r"t\.yaml:5: gold: must be a string",
        ),
        (b"name: x\ntype: [classification\n", r"t\.yaml:\d+: not valid YAML"),
    ],
)
def test_bad_task_yaml_names_the_line(tmp_path, content, match):
    with pytest.raises(UserError, match=match):
        load_task(write_bytes(tmp_path, "t.yaml", content))


def test_quoted_yes_no_labels_and_synonyms_load(tmp_path):
    p = write(
        tmp_path,
        "t.yaml",
        'name: x\ntype: classification\ninput: "{text}"\nlabels: ["yes", "no"]\nsynonyms:\n  "yes": ["true", sure]\n',
    )
    task = load_task(p)
    assert task.labels == ["yes", "no"] and task.synonyms == {"yes": ["true", "sure"]}


def _dry_run(tmp_path, data_name, data: bytes, task: bytes = TASK_YAML.encode()):
    write_bytes(tmp_path, "task.yaml", task)
    write_bytes(tmp_path, data_name, data)
    return CliRunner().invoke(
        main,
        [
            "annotate",
            "--task",
            str(tmp_path / "task.yaml"),
            "--data",
            str(tmp_path / data_name),
            "--out",
            str(tmp_path / "run"),
            "--dry-run",
        ],
    )


@pytest.mark.parametrize(
    "name, data, match",
    [
        ("d.jsonl", b'{"id": "1", "text": "caf\xe9", "label": "neutral"}\n', r"d\.jsonl:1: text: not valid UTF-8"),
        (
            "d.csv",
            b'id,label,text\n1,neutral,"never closed\n2,neutral,second\n',
            r"d\.csv:2: a quoted field that starts on this line is never closed",
        ),
        (
            "d.json",
            b'[{"id": "1", "text": "a", "label": 0},\n\n {"id": "1", "text": "a", "label": 0}]',
            r"d\.json:3: id: duplicate id",
        ),
    ],
)
def test_cli_dry_run_on_bad_data_prints_the_error_without_a_traceback(tmp_path, name, data, match):
    result = _dry_run(tmp_path, name, data)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.exc_info
    assert "Traceback" not in result.output and re.search(match, result.output), result.output


def test_cli_dry_run_on_a_non_utf8_task_prints_the_error_without_a_traceback(tmp_path):
    result = _dry_run(tmp_path, "d.jsonl", b'{"id": "1", "text": "a", "label": "neutral"}\n', task=b"name: caf\xe9\n")
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.exc_info
    assert "Traceback" not in result.output and "task.yaml:1: not valid UTF-8" in result.output


@pytest.mark.parametrize("name", ["d.jsonl", "d.csv"])
def test_cli_dry_run_truncates_a_megabyte_input_and_says_so(tmp_path, name):
    big = "word " * 220_000
    if name == "d.jsonl":
        data = (
            json.dumps({"id": "e1", "text": big, "label": "neutral"})
            + "\n"
            + json.dumps({"id": "e2", "text": "x", "label": "neutral"})
            + "\n"
        )
    else:
        data = f"id,text,label\ne1,{big},neutral\ne2,x,neutral\n"
    result = _dry_run(tmp_path, name, data.encode())
    assert result.exit_code == 0 and result.exception is None, result.exc_info
    assert (
        f"note: 1 input had a field longer than {MAX_FIELD_CHARS} characters (longest {len(big)}), "
        f"truncated to {MAX_FIELD_CHARS}: e1" in result.output
    )
