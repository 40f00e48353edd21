"""Task spec and data loading: every bad input stops with file:line: field: problem."""

import json

import pytest

from edgedistill.edge.arith import evaluate, same_number, to_number
from edgedistill.data import load_examples
from edgedistill.errors import UserError
from edgedistill.task import load_task, task_from_dict

NLI = {"name": "nli", "type": "classification", "input": "Premise: {premise}\nHypothesis: {hypothesis}",
       "labels": ["entailment", "neutral", "contradiction"], "gold": "label"}
MC = {"name": "cqa", "type": "multiple-choice", "input": "{question}", "choices": "choices", "gold": "answer"}


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_task_roundtrip_and_render(tmp_path):
    task = task_from_dict(NLI)
    assert task.fields == ["premise", "hypothesis"]
    assert task.render({"premise": "A dog runs.", "hypothesis": "An animal moves."}) == "Premise: A dog runs.\nHypothesis: An animal moves."
    task.save(tmp_path / "t.yaml")
    assert load_task(tmp_path / "t.yaml").to_dict() == task.to_dict()


@pytest.mark.parametrize("raw, match", [
    ({**NLI, "typo": 1}, "typo: unknown key"),
    ({**NLI, "type": "regression"}, "type: 'regression' is not a task type"),
    ({**NLI, "labels": ["only"]}, "labels: a classification task needs"),
    ({**MC, "choices": None}, "choices: a multiple-choice task must name"),
    ({**NLI, "input": "no fields"}, "input: the template uses no data field"),
    ({k: v for k, v in NLI.items() if k != "name"}, "name: required"),
])
def test_bad_task(raw, match):
    with pytest.raises(UserError, match=match):
        task_from_dict(raw)


def test_bad_yaml_names_the_line(tmp_path):
    p = write(tmp_path, "t.yaml", "name: x\ntype: [unclosed\n")
    with pytest.raises(UserError, match=r"t.yaml:\d+: not valid YAML"):
        load_task(p)


def test_loads_jsonl_csv_and_normalises_gold(tmp_path):
    task = task_from_dict(NLI)
    p = write(tmp_path, "d.jsonl", json.dumps({"premise": "p", "hypothesis": "h", "label": 2}) + "\n\n"
              + json.dumps({"premise": "p2", "hypothesis": "h2", "label": "Neutral"}) + "\n")
    exs = load_examples(task, p)
    assert [e.gold for e in exs] == ["contradiction", "neutral"] and [e.line for e in exs] == [1, 3]
    c = write(tmp_path, "d.csv", 'premise,hypothesis,label\n"a, b",h,entailment\n')
    assert load_examples(task, c)[0].input == "Premise: a, b\nHypothesis: h"


def test_multiple_choice_gold_by_letter_text_or_index(tmp_path):
    task = task_from_dict(MC)
    rows = [{"question": "q", "choices": ["x", "y", "z"], "answer": a} for a in ("c", "Y", "0")]
    p = write(tmp_path, "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    assert [e.gold for e in load_examples(task, p)] == ["z", "y", "x"]


@pytest.mark.parametrize("content, match", [
    ('{"premise": "p", "hypothesis": "h", "label": 0}\n{"premise": "p"\n', r"d.jsonl:2: malformed JSON line"),
    ('{"premise": "p", "label": 0}\n', r"d.jsonl:1: hypothesis: missing field"),
    ('{"premise": "p", "hypothesis": "h", "label": "maybe"}\n', r"d.jsonl:1: label: unknown label 'maybe'"),
    ('{"premise": " ", "hypothesis": "h", "label": 0}\n', r"d.jsonl:1: premise: empty input"),
    ('[1, 2]\n', r"d.jsonl:1: each line must be a JSON object"),
    ('', r"no examples"),
])
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
