"""Malformed inputs (issue 43): every one a clear error or a counted row failure, never a traceback, a silent
success or a hang.

Data files and task.yaml go through the CLI (`annotate --dry-run`, which reads and checks everything before any
request): a non-zero exit, the file and line (or field) named, no traceback. Teacher replies go through the
prompt plan's parser: the row is `parse_failed` with a reason. Gold values go through the arithmetic that
compares answers: no usable number, no exception. Each case runs in a forked child under a time and memory
limit, so a hang or a memory blow-up is a failed case, not a stuck suite.
"""

import json
import multiprocessing
import os
import re
import resource
import subprocess
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from openai_stub import StubServer

from edgedistill.cli import main
from edgedistill.edge.arith import same_number, to_number
from edgedistill.task import task_from_dict
from edgedistill.teacher.annotate import AnnotateConfig, annotate
from edgedistill.teacher.cost import count_tokens
from edgedistill.teacher.prompts import plan

TIMEOUT_S = 10  # per case; the slowest clear case takes well under a second
MEMORY_HEADROOM = 1 << 30  # bytes a case may map beyond what the test process already has
REPO = Path(__file__).resolve().parents[1]

count_tokens("warm the tokenizer once, so that every forked case inherits it")


# ---------------------------------------------------------------------------------------------- harness


def _mapped_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()


def _child(conn, fn, args):
    limit = _mapped_bytes() + MEMORY_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        conn.send(("ok", fn(*args)))
    except BaseException:  # noqa: BLE001 - whatever escapes is the finding
        conn.send(("raised", traceback.format_exc()[-2000:]))


def isolated(fn, *args) -> tuple[str, object]:
    """fn(*args) in a forked child: ("ok", its value), ("raised", the traceback) or ("hang", None)."""
    parent, child = multiprocessing.get_context("fork").Pipe(duplex=False)
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(child, fn, args))
    proc.start()
    child.close()
    try:
        if not parent.poll(TIMEOUT_S):
            return "hang", None
        try:
            return parent.recv()
        except EOFError:  # killed: out of memory, or a crash in C
            return "raised", f"the child died (exit code {proc.join(1) or proc.exitcode})"
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        parent.close()


def _cli(args: list[str]) -> dict:
    result = CliRunner().invoke(main, args)
    tb = None
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        tb = "".join(traceback.format_exception(*result.exc_info))[-2000:]
    return {"exit_code": result.exit_code, "output": result.output[-3000:], "traceback": tb}


def cli_verdict(outcome, expect: str) -> tuple[str, str]:
    """(clear | traceback | silent | hang | unclear, what was seen) for one CLI run."""
    kind, value = outcome
    if kind == "hang":
        return "hang", f"no answer in {TIMEOUT_S} s"
    if kind == "raised":
        return "traceback", value
    if value["traceback"] or "Traceback" in value["output"]:
        return "traceback", value["traceback"] or value["output"]
    if value["exit_code"] == 0:
        return "silent", value["output"][-500:]
    return ("clear" if re.search(expect, value["output"]) else "unclear"), value["output"][-800:]


# ---------------------------------------------------------------------------------------------- files

TASK = 'name: fuzz\ntype: classification\ninput: "{text}"\nlabels: [pos, neg]\ngold: label\nid: id\n'
NUMERIC = 'name: sums\ntype: numeric\ninput: "{question}"\ngold: answer\nid: id\n'
ROW = {"id": "e1", "text": "a fine day", "label": "pos"}
DATA = (json.dumps(ROW) + "\n").encode()


def _task_with(**lines) -> bytes:
    """TASK with some of its lines replaced (key: the raw YAML after 'key: ')."""
    out = []
    for line in TASK.splitlines():
        key = line.split(":")[0]
        out.append(f"{key}: {lines.pop(key)}" if key in lines else line)
    out += [f"{k}: {v}" for k, v in lines.items()]
    return ("\n".join(out) + "\n").encode()


def _alias_bomb(levels: int) -> bytes:
    """A few hundred bytes whose aliases expand to 9**levels values (the 'billion laughs')."""
    lines = [
        "name: fuzz",
        "type: classification",
        'input: "{text}"',
        "labels: [pos, neg]",
        "l0: &l0 [x,x,x,x,x,x,x,x,x]",
    ]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    return ("\n".join(lines) + "\n").encode()


def _nested_json(depth: int) -> bytes:
    return ('{"id": "e1", "label": "pos", "text": ' + "[" * depth + "]" * depth + "}\n").encode()


BIG_INT = "7" * 5000
NUMERIC_ROW = '{{"id": "e1", "question": "What is 6 times 7?", "answer": {}}}\n'

# (files by name, regex the error must match). The task file is task.yaml; the data file the other name.
DATA_CASES = [
    pytest.param({"d.jsonl": _nested_json(100_000)}, r"d\.jsonl:1\b", id="jsonl-nested-100k"),
    pytest.param({"d.jsonl": _nested_json(3000)}, r"d\.jsonl:1\b", id="jsonl-nested-3k"),
    pytest.param({"d.jsonl": DATA + b"[" * 5000 + b"]" * 5000 + b"\n"}, r"d\.jsonl:2\b", id="jsonl-line-nested-list"),
    pytest.param({"d.json": b"[" + _nested_json(50_000).rstrip() + b"]"}, r"d\.json:1\b", id="json-list-nested"),
    pytest.param({"d.json": b"[" * 20_000 + b"]" * 20_000}, r"d\.json:1\b", id="json-only-brackets"),
    pytest.param(
        {"d.jsonl": f'{{"id": {BIG_INT}, "text": "a", "label": "pos"}}\n'.encode()},
        r"d\.jsonl:1\b",
        id="jsonl-5000-digit-id",
    ),
    pytest.param(
        {"d.jsonl": DATA + f'{{"id": "e2", "text": {BIG_INT}, "label": "pos"}}\n'.encode()},
        r"d\.jsonl:2\b",
        id="jsonl-5000-digit-text",
    ),
    pytest.param(
        {"d.json": f'[\n{{"id": "e1", "text": "a", "label": "pos"}},\n{{"id": {BIG_INT}, "text": "b"}}]'.encode()},
        r"d\.json:3\b",
        id="json-list-5000-digit-id",
    ),
    pytest.param(
        {"d.jsonl": b'{"id": "e1", "text": 1e400, "label": "pos"}\n'}, r"d\.jsonl:1: text", id="jsonl-text-inf"
    ),
    pytest.param({"d.jsonl": b'{"id": "e1", "text": NaN, "label": "pos"}\n'}, r"d\.jsonl:1: text", id="jsonl-text-nan"),
    pytest.param(
        {"d.jsonl": b'{"id": "e1", "text": {"a": 1}, "label": "pos"}\n'}, r"d\.jsonl:1: text", id="jsonl-text-object"
    ),
    pytest.param({"d.jsonl": b'{"id": "e1", "text": "a", "label": "pos"\n'}, r"d\.jsonl:1\b", id="jsonl-truncated"),
    pytest.param({"d.jsonl": b'"just a string"\n'}, r"d\.jsonl:1\b", id="jsonl-not-object"),
    pytest.param(
        {"d.jsonl": b'{"id": "e1", "text": "a", "text": "b", "label": "pos"}\n'},
        r"d\.jsonl:1: text",
        id="jsonl-duplicate-key",
    ),
    pytest.param({"d.jsonl": b'{"id": "e1", "label": "pos"}\n'}, r"d\.jsonl:1: text", id="jsonl-missing-field"),
    pytest.param(
        {"d.jsonl": b'{"id": "e1", "text": "   ", "label": "pos"}\n'}, r"d\.jsonl:1: text", id="jsonl-empty-text"
    ),
    pytest.param(
        {"d.jsonl": b'{"id": "e1", "text": "a", "label": "maybe"}\n'}, r"d\.jsonl:1: label", id="jsonl-unknown-label"
    ),
    pytest.param(
        {"d.jsonl": f'{{"id": "e1", "text": "a", "label": "{BIG_INT}"}}\n'.encode()},
        r"d\.jsonl:1: label",
        id="jsonl-5000-digit-label-index",
    ),
    pytest.param({"d.jsonl": DATA + DATA}, r"d\.jsonl:2: id", id="jsonl-duplicate-id"),
    pytest.param(
        {"d.json": b'[{"id": "e1", "text": "a", "label": "pos"}, 3]'}, r"d\.json:1: \[1\]", id="json-list-item-number"
    ),
    pytest.param({"d.json": b'[{"id": "e1", "text": "a", "label": "pos"},\n'}, r"d\.json:\d+", id="json-list-unclosed"),
    pytest.param({"d.csv": b'id,text,label\ne1,"never closed,pos\ne2,b,pos\n'}, r"d\.csv:2\b", id="csv-unclosed-quote"),
    pytest.param({"d.csv": b"id,text,label\ne1,a,pos,extra\n"}, r"d\.csv:2\b", id="csv-extra-column"),
    pytest.param({"d.csv": b"id,text,text\ne1,a,b\n"}, r"d\.csv:1: text", id="csv-duplicate-header"),
    pytest.param(
        {"d.csv": f"id,text,label\n{BIG_INT},a,{BIG_INT}\n".encode()}, r"d\.csv:2: label", id="csv-5000-digit-label"
    ),
    pytest.param({"d.tsv": b"id\ttext\tlabel\ne1\ta\n"}, r"d\.tsv:2\b", id="tsv-missing-column"),
    pytest.param(
        {"d.jsonl": b'{"id": "e1", "text": "caf\xe9", "label": "pos"}\n'}, r"d\.jsonl:1: text", id="jsonl-latin1"
    ),
    # numeric gold that no arithmetic can use
    *[
        pytest.param(
            {"task.yaml": NUMERIC.encode(), "d.jsonl": NUMERIC_ROW.format(gold).encode()},
            r"d\.jsonl:1: answer",
            id=f"numeric-gold-{name}",
        )
        for name, gold in [
            ("1e400", '"1e400"'),
            ("400-digits", '"' + "9" * 400 + '"'),
            ("tower", '"((((9**99)**99)**99)**99)"'),
            ("complex", '"(-8)**0.5"'),
            ("word", '"forty-two"'),
            ("inf-number", "1e400"),
            ("huge-product", '"' + "*".join(["9" * 60] * 4) + '"'),
        ]
    ],
]

TASK_CASES = [
    pytest.param({"task.yaml": _alias_bomb(8)}, r"task\.yaml:\d+", id="yaml-alias-bomb-8"),
    pytest.param({"task.yaml": _alias_bomb(5)}, r"task\.yaml:\d+", id="yaml-alias-bomb-5"),
    pytest.param({"task.yaml": _task_with(labels="&l [pos, neg, *l]")}, r"task\.yaml:4\b", id="yaml-recursive-list"),
    pytest.param(
        {"task.yaml": _task_with(synonyms="&s {pos: [good], neg: *s}")}, r"task\.yaml:7\b", id="yaml-recursive-map"
    ),
    pytest.param(
        {"task.yaml": TASK.encode() + b"base: &b {pos: [good]}\nsynonyms:\n  <<: *b\n"},
        r"task\.yaml:\d+",
        id="yaml-merge-key",
    ),
    pytest.param({"task.yaml": _task_with(labels="[" * 5000 + "]" * 5000)}, r"task\.yaml:4\b", id="yaml-deep-list"),
    pytest.param({"task.yaml": _task_with(input='"{text:d}"')}, r"task\.yaml:3: input", id="template-spec-d"),
    pytest.param({"task.yaml": _task_with(input='"{}"')}, r"task\.yaml:3: input", id="template-positional"),
    pytest.param({"task.yaml": _task_with(input='"{0}"')}, r"task\.yaml:3: input", id="template-index-0"),
    pytest.param({"task.yaml": _task_with(input='"{text:>3000000}"')}, r"task\.yaml:3: input", id="template-pad-3M"),
    pytest.param(
        {"task.yaml": _task_with(input='"{text.__class__}"')}, r"task\.yaml:3: input", id="template-attribute"
    ),
    pytest.param({"task.yaml": _task_with(input='"{text[0]}"')}, r"task\.yaml:3: input", id="template-item"),
    pytest.param({"task.yaml": _task_with(input='"{text!r}"')}, r"task\.yaml:3: input", id="template-conversion-r"),
    pytest.param({"task.yaml": _task_with(input='"{text!x}"')}, r"task\.yaml:3: input", id="template-conversion-x"),
    pytest.param({"task.yaml": _task_with(input='"{text:{text}}"')}, r"task\.yaml:3: input", id="template-nested-spec"),
    pytest.param({"task.yaml": _task_with(input='"{text} and {0}"')}, r"task\.yaml:3: input", id="template-mixed"),
    pytest.param({"task.yaml": _task_with(input='"{text"')}, r"task\.yaml:3: input", id="template-unclosed"),
    pytest.param({"task.yaml": _task_with(input='"text}"')}, r"task\.yaml:3: input", id="template-stray-brace"),
    pytest.param(
        {"task.yaml": TASK.encode() + b'prompts:\n  zero-shot: "{input:d}"\n'},
        r"task\.yaml:8: prompts\.zero-shot",
        id="prompt-spec-d",
    ),
    pytest.param(
        {"task.yaml": TASK.encode() + b'prompts:\n  zero-shot: "{input!r}"\n'},
        r"task\.yaml:8: prompts\.zero-shot",
        id="prompt-conversion",
    ),
    pytest.param(
        {"task.yaml": TASK.encode() + b'prompts:\n  zero-shot: "{input:>3000000}"\n'},
        r"task\.yaml:8: prompts\.zero-shot",
        id="prompt-pad-3M",
    ),
    pytest.param(
        {"task.yaml": TASK.encode() + b'prompts:\n  zero-shot: "{input.__class__}"\n'},
        r"task\.yaml:8: prompts\.zero-shot",
        id="prompt-attribute",
    ),
    pytest.param(
        {"task.yaml": TASK.encode() + b'prompts:\n  zero-shot: "{}"\n'},
        r"task\.yaml:8: prompts\.zero-shot",
        id="prompt-positional",
    ),
    pytest.param({"task.yaml": TASK.encode() + b"name: again\n"}, r"task\.yaml:7: name", id="yaml-duplicate-key"),
    pytest.param(
        {"task.yaml": TASK.encode() + b"x: !!python/object:os.system {}\n"}, r"task\.yaml:7\b", id="yaml-python-tag"
    ),
    pytest.param({"task.yaml": _task_with(input="!!binary aGVsbG8=")}, r"task\.yaml:3: input", id="yaml-binary-input"),
    pytest.param({"task.yaml": b"name: fuzz\n\ttype: numeric\n"}, r"task\.yaml:\d+", id="yaml-tab-indent"),
    pytest.param({"task.yaml": b"- name: fuzz\n- type: numeric\n"}, r"task\.yaml: ", id="yaml-list-document"),
    pytest.param({"task.yaml": _task_with(labels="[pos, pos]")}, r"task\.yaml:4: labels", id="labels-repeated"),
    pytest.param({"task.yaml": _task_with(type="regression")}, r"task\.yaml:2: type", id="unknown-type"),
]


SHOT = {"text": "a grand day", "answer": "pos", "rationale": "Grand is a word of praise."}
SHOTS = (json.dumps(SHOT) + "\n").encode()


def _shots(**fields) -> bytes:
    return SHOTS + (json.dumps({**SHOT, **fields}) + "\n").encode()


# few-shot exemplars (--exemplars shots.jsonl): the task's fields, answer and rationale on each line
SHOT_CASES = [
    pytest.param(
        {"shots.jsonl": SHOTS + b'{"text": "caf\xe9", "answer": "pos", "rationale": "r r r r r"}\n'},
        r"shots\.jsonl:2\b",
        id="shots-latin1",
    ),
    pytest.param({"shots.jsonl": SHOTS + b'["text", "answer"]\n'}, r"shots\.jsonl:2\b", id="shots-line-is-list"),
    pytest.param({"shots.jsonl": SHOTS + b"[" * 3000 + b"]" * 3000 + b"\n"}, r"shots\.jsonl:2\b", id="shots-nested"),
    pytest.param(
        {"shots.jsonl": SHOTS + f'{{"text": "a", "answer": {BIG_INT}, "rationale": "r"}}\n'.encode()},
        r"shots\.jsonl:2\b",
        id="shots-5000-digit-answer",
    ),
    pytest.param({"shots.jsonl": _shots(rationale=12345)}, r"shots\.jsonl:2: rationale", id="shots-rationale-number"),
    pytest.param(
        {"shots.jsonl": _shots(rationale=["a", "list"])}, r"shots\.jsonl:2: rationale", id="shots-rationale-list"
    ),
    pytest.param({"shots.jsonl": _shots(answer="maybe")}, r"shots\.jsonl:2: answer", id="shots-unknown-answer"),
    pytest.param({"shots.jsonl": _shots(text=None)}, r"shots\.jsonl:2: text", id="shots-text-null"),
    pytest.param(
        {
            "task.yaml": NUMERIC.encode(),
            "d.jsonl": NUMERIC_ROW.format('"42"').encode(),
            "shots.jsonl": b'{"question": "q", "answer": "1e400", "rationale": "It is a lot of them."}\n',
        },
        r"shots\.jsonl:1: answer",
        id="shots-numeric-answer-1e400",
    ),
]


def _write(tmp_path, files: dict) -> list[str]:
    """The files in tmp_path (a default task and data file where not given) and the dry run's arguments."""
    files = {"task.yaml": TASK.encode(), **files}
    if not any(name.startswith("d.") for name in files):
        files["d.jsonl"] = DATA
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    data = next(name for name in files if name.startswith("d."))
    args = ["annotate", "--task", str(tmp_path / "task.yaml"), "--data", str(tmp_path / data)]
    if "shots.jsonl" in files:
        args += ["--prompt", "few-shot-cot", "--exemplars", str(tmp_path / "shots.jsonl")]
    return [*args, "--out", str(tmp_path / "run"), "--dry-run"]


@pytest.mark.parametrize("files, expect", DATA_CASES + TASK_CASES + SHOT_CASES)
def test_malformed_file_is_a_clear_error(tmp_path, files, expect):
    verdict, seen = cli_verdict(isolated(_cli, _write(tmp_path, files)), expect)
    assert verdict == "clear", f"{verdict.upper()}: {seen}"


# The real command line, in a fresh interpreter: what a user sees on the terminal, exit status included.
@pytest.mark.parametrize(
    "files, expect",
    [
        pytest.param({"task.yaml": _alias_bomb(8)}, r"task\.yaml:\d+", id="cli-alias-bomb"),
        pytest.param({"d.jsonl": _nested_json(100_000)}, r"d\.jsonl:1\b", id="cli-nested-json"),
        pytest.param({"task.yaml": _task_with(input='"{text:d}"')}, r"task\.yaml:3: input", id="cli-template-spec"),
    ],
)
def test_malformed_file_on_the_real_command_line(tmp_path, files, expect):
    def cap_memory():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    try:
        done = subprocess.run(
            [sys.executable, "-m", "edgedistill.cli", *_write(tmp_path, files)],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
            cwd=REPO,
            preexec_fn=cap_memory,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("HANG: no answer in 20 s")
    assert "Traceback" not in done.stderr, "TRACEBACK: " + done.stderr[-2000:]
    assert done.returncode != 0, "SILENT: " + done.stdout[-500:]
    assert re.search(expect, done.stderr), "UNCLEAR: " + done.stderr[-800:]


# ---------------------------------------------------------------------------------------------- replies

NLI = task_from_dict(
    {"name": "nli", "type": "classification", "input": "{t}", "labels": ["entailment", "neutral", "contradiction"]}
)
MC = task_from_dict({"name": "mc", "type": "multiple-choice", "input": "{q}", "choices": "c"})
NUM = task_from_dict({"name": "num", "type": "numeric", "input": "{q}"})
CHOICES = ["bus station", "airport", "train station", "harbour"]


def _parse(task, reply: str, mode: str = "zero-shot") -> dict:
    example = SimpleNamespace(input="q", choices=CHOICES if task.type == "multiple-choice" else None)
    outputs = [reply, reply] if mode == "zero-shot-cot" else [reply]
    p = plan(task, mode).parse(example, outputs)
    return {"status": p.status, "label": p.label, "error": p.error}


NUMERIC_REPLIES = {
    "1e400": "1e400",
    "answer-1e400": "Answer: 1e400\nExplanation: it is a very large number indeed.",
    "minus-1e400": "-1e400",
    "1e400-in-words": "The answer is 1e400 apples.",
    "400-digits": "9" * 400,
    "400-digits-in-sentence": "The answer is " + "9" * 400 + " points.",
    "power-tower": "((((9**99)**99)**99)**99)",
    "right-assoc-tower": "9**9**9**9",
    "sqrt-negative": "(-8)**0.5",
    "cube-root-negative": "(-27)**(1/3)",
    "overflow-sum": "1e308 + 1e308",
    "overflow-product": "1e200 * 1e200",
    "nan": "1e308*10 - 1e308*10",
    "product-chain": " * ".join(["9" * 90] * 5),
    "big-base": "99999999999999999999**99",
    "float-power": "1e200**2",
    "zero-negative-power": "0**-1",
    "division-by-zero": "Answer: 7 / 0",
    "modulo-zero": "7 % 0",
    "equation-1e999": "84 / 2 = 1e999",
    "boxed-1e400": "\\boxed{1e400}",
    "frac-by-zero": "\\frac{1}{0}",
    "inf-word": "Answer: inf",
    "nan-word": "Answer: nan",
    "boxed-flood": "\\boxed{" * 5000,
    "operator-flood": "1+" * 20000 + "x",
    "cot-1e400": "Let's think. Therefore, the answer (arabic numerals) is 1e400.",
}
LABEL_REPLIES = {
    "empty": "",
    "blank": "   \n\t",
    "two-labels": "Answer: entailment or neutral",
    "nul": "\x00\x00",
    "lone-surrogate": "Answer: \ud800",
    "index": "Label: 2",
    "no-answer": "I cannot tell from this.",
    "whitespace-flood": "reason" + " " * 60_000 + "x",
    "newline-flood": "Explanation" + "\n" * 60_000,
    "marker-flood": "answer is " * 20_000,
    "emoji": "Answer: \U0001f914",
    "star-flood": "*" * 50_000 + "a",
}
CHOICE_REPLIES = {
    "two-letters": "So the answer is either (a) bus station or (c) train station.",
    "letter-out-of-range": "(z)",
    "all-letters": "(a)(b)(c)(d)",
    "empty-parens": "()",
    "sentence-a": "A man would take a plane.",
    "none": "None of these.",
    "paren-flood": "(" * 50_000,
}
REPLY_CASES = (
    [pytest.param(NUM, r, "zero-shot", id=f"numeric-{k}") for k, r in NUMERIC_REPLIES.items()]
    + [pytest.param(NUM, NUMERIC_REPLIES["1e400"], "zero-shot-cot", id="numeric-cot-two-stages")]
    + [pytest.param(NLI, r, "zero-shot", id=f"label-{k}") for k, r in LABEL_REPLIES.items()]
    + [pytest.param(MC, r, "zero-shot", id=f"choice-{k}") for k, r in CHOICE_REPLIES.items()]
)


@pytest.mark.parametrize("task, reply, mode", REPLY_CASES)
def test_unusable_reply_is_a_counted_parse_failure(task, reply, mode):
    kind, value = isolated(_parse, task, reply, mode)
    assert kind != "hang", f"HANG: no answer in {TIMEOUT_S} s"
    assert kind == "ok", f"TRACEBACK: {value}"
    assert value["status"] == "parse_failed", f"SILENT: read as {value['label']!r}"
    assert value["error"], "UNCLEAR: no reason given"


GOLDS = {
    "400-digits": "9" * 400,
    "tower": "((((9**99)**99)**99)**99)",
    "complex": "(-8)**0.5",
    "1e400": "1e400",
    "float-inf": float("inf"),
    "float-nan": float("nan"),
    "huge-int": 10**400,
    "bool": True,
}


@pytest.mark.parametrize("gold", list(GOLDS.values()), ids=list(GOLDS))
def test_unusable_gold_is_no_number_and_matches_nothing(gold):
    kind, value = isolated(lambda: (to_number(gold), same_number("42", gold), same_number(gold, gold)))
    assert kind != "hang", f"HANG: no answer in {TIMEOUT_S} s"
    assert kind == "ok", f"TRACEBACK: {value}"
    assert value == (None, False, False), f"SILENT: {value}"


# ---------------------------------------------------------------------------------------------- the run


def test_unusable_numeric_replies_leave_their_rows_parse_failed_and_the_run_complete(tmp_path):
    (tmp_path / "task.yaml").write_text(NUMERIC)
    replies = ["42", "1e400", "9" * 400, "(-8)**0.5"]
    rows = [{"id": f"e{i}", "question": f"q{i} ANSWER={r}", "answer": "42"} for i, r in enumerate(replies)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with StubServer() as server:
        cfg = AnnotateConfig(
            task=str(tmp_path / "task.yaml"),
            data=str(tmp_path / "d.jsonl"),
            out=str(tmp_path / "run"),
            model="stub",
            base_url=server.base_url,
            timeout=5,
            max_retries=0,
            keep_if_agrees=True,
        )
        summary = annotate(cfg, echo=lambda *_: None)
        again = annotate(cfg, echo=lambda *_: None)  # the replies are cached: the re-run must get as far
    out = {r["id"]: r for r in map(json.loads, (tmp_path / "run" / "annotations.jsonl").read_text().splitlines())}
    assert out["e0"]["status"] == "ok" and out["e0"]["label"] == "42"
    for i in (1, 2, 3):
        assert out[f"e{i}"]["status"] == "parse_failed" and out[f"e{i}"]["error"], out[f"e{i}"]
    assert summary["parse_failed"] == again["parse_failed"] == 3 and summary["ok"] == again["ok"] == 1
    assert os.path.exists(tmp_path / "run" / "annotate.json")
