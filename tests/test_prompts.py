"""Prompt plans: what the teacher is shown in each mode, template overrides, exemplar file errors."""

import json
from types import SimpleNamespace

import pytest

from edgedistill.choices import PromptMode, values
from edgedistill.errors import UserError
from edgedistill.task import task_from_dict
from edgedistill.teacher.prompts import SYSTEM, load_exemplars, plan

NLI = {
    "name": "nli",
    "type": "classification",
    "input": "Premise: {premise}\nHypothesis: {hypothesis}",
    "labels": ["entailment", "neutral", "contradiction"],
    "gold": "label",
}
QA = {"name": "qa", "type": "multiple-choice", "input": "{question}", "choices": "choices", "gold": "answer"}
MATH = {"name": "math", "type": "numeric", "input": "{q}", "gold": "a", "instruction": "Solve the word problem."}


def task(spec, **kw):
    return task_from_dict({**spec, **kw}, source="task.yaml")


def ex(text, choices=None):
    return SimpleNamespace(id="1", input=text, choices=choices)


NLI_EX = ex("Premise: A dog runs.\nHypothesis: An animal moves.")
QA_EX = ex("Where do you catch a train?", ["bus stop", "airport", "train station", "harbour", "garage"])
MATH_EX = ex("Tom has 3 apples and buys 4 more. How many now?")
SHOTS = [
    {
        "input": "Premise: A man sleeps.\nHypothesis: A man is awake.",
        "answer": "contradiction",
        "rationale": "One cannot sleep and be awake at once.",
    },
    {
        "input": "Premise: Kids play.\nHypothesis: Children are playing.",
        "answer": "entailment",
        "rationale": "Kids are children, so they are playing.",
    },
]


def users(msgs):
    return [m["content"] for m in msgs if m["role"] == "user"]


def test_zero_shot_asks_for_a_parseable_answer_and_one_sentence():
    msgs = plan(task(NLI), "zero-shot").messages(NLI_EX)
    assert [m["role"] for m in msgs] == ["system", "user"] and msgs[0]["content"] == SYSTEM
    user = msgs[1]["content"]
    assert "Premise: A dog runs.\nHypothesis: An animal moves." in user
    assert "Answer: <exactly one of: entailment, neutral, contradiction>" in user
    assert "Explanation: <explain your answer in one sentence>" in user
    assert "Classify the following input." in user  # the default instruction of the type


def test_label_only_asks_for_no_rationale():
    user = users(plan(task(NLI), "label-only").messages(NLI_EX))[0]
    assert "Answer: <exactly one of" in user and "Explanation" not in user and "step by step" not in user


def test_multiple_choice_lists_the_choices_with_letters():
    p = plan(task(QA), "zero-shot")
    user = users(p.messages(QA_EX))[0]
    assert "Answer Choices:\n(a) bus stop\n(b) airport\n(c) train station\n(d) harbour\n(e) garage" in user
    assert "e.g. (b) airport" in user


def test_zero_shot_cot_two_stages_with_a_trigger_per_type():
    for spec, e, trigger in [
        (NLI, NLI_EX, "Therefore, the answer (one of: entailment, neutral, contradiction) is"),
        (QA, QA_EX, "Therefore, among (a) through (e), the answer is"),
        (MATH, MATH_EX, "Therefore, the answer (arabic numerals) is"),
    ]:
        p = plan(task(spec), "zero-shot-cot")
        assert p.stages == 2
        first = p.messages(e)
        assert len(first) == 2 and first[1]["content"].endswith("A: Let's think step by step.")
        second = p.messages(e, ["Reasoning goes here."])
        assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
        assert second[:2] == first and second[2]["content"] == "Reasoning goes here."
        assert second[3]["content"] == trigger
    # four choices end at (d)
    p = plan(task(QA), "zero-shot-cot")
    assert users(p.messages(ex("q?", list("wxyz")), ["r"]))[-1] == "Therefore, among (a) through (d), the answer is"


def test_few_shot_cot_shows_every_exemplar_and_ends_at_the_answer():
    user = users(plan(task(NLI), "few-shot-cot", SHOTS).messages(NLI_EX))[0]
    assert user.count("Q: ") == 3 and user.rstrip().endswith("A:")
    assert "A: One cannot sleep and be awake at once. So the answer is contradiction." in user
    assert user.index("Kids play") < user.index("A dog runs")  # exemplars first, then the question
    qa_shot = [
        {
            "input": "Where are books?",
            "choices": ["library", "sea"],
            "answer": "library",
            "rationale": "Books are kept in libraries.",
        }
    ]
    user = users(plan(task(QA), "few-shot-cot", qa_shot).messages(QA_EX))[0]
    assert "So the answer is (a) library." in user and "(a) library\n(b) sea" in user


def test_modes_and_missing_exemplars_are_user_errors():
    assert values(PromptMode) == ("zero-shot", "zero-shot-cot", "few-shot-cot", "label-only")
    with pytest.raises(UserError, match="--prompt: .two-shot.; use one of zero-shot"):
        plan(task(NLI), "two-shot")
    with pytest.raises(UserError, match="needs --exemplars"):
        plan(task(NLI), "few-shot-cot")


def test_task_prompts_override_a_template():
    t = task(
        NLI,
        instruction="Does the premise entail the hypothesis?",
        prompts={
            "zero-shot": "{instruction}\n{input}\nLabels: {labels}. Answer: <label> then Explanation:",
            "zero-shot-cot-extract": "So which is it, {labels}?",
        },
    )
    user = users(plan(t, "zero-shot").messages(NLI_EX))[0]
    assert user == (
        "Does the premise entail the hypothesis?\nPremise: A dog runs.\nHypothesis: An animal moves.\n"
        "Labels: entailment, neutral, contradiction. Answer: <label> then Explanation:"
    )
    assert (
        users(plan(t, "zero-shot-cot").messages(NLI_EX, ["r"]))[-1]
        == "So which is it, entailment, neutral, contradiction?"
    )
    # templates not overridden keep their default wording
    assert "Reply with one line only" in users(plan(t, "label-only").messages(NLI_EX))[0]


@pytest.mark.parametrize(
    "prompts, message",
    [
        ({"zeroshot": "x"}, "task.yaml: prompts.zeroshot: no such template"),
        ({"zero-shot": "{inptu}"}, "task.yaml: prompts.zero-shot: unknown placeholder {inptu}"),
        ({"label-only": "Answer {"}, "task.yaml: prompts.label-only: bad template"),
        ({"zero-shot": "  "}, "task.yaml: prompts.zero-shot: must be a non-empty string"),
        ({"zero-shot": "{rationale}"}, "unknown placeholder {rationale}"),  # only the exemplar template has it
        (
            {"zero-shot": "{input:>3000000}"},
            "task.yaml: prompts.zero-shot: bad template: {input:>3000000} has a format spec",
        ),
        ({"zero-shot": "{input!r}"}, "task.yaml: prompts.zero-shot: bad template: {input!r} has a conversion"),
        ({"zero-shot": "{input.__class__}"}, "bad template: {input.__class__} reaches into a field"),
        ({"zero-shot": "{0}"}, "bad template: {0} is a positional placeholder"),
    ],
)
def test_bad_overrides_stop_before_any_request(prompts, message):
    with pytest.raises(UserError) as e:
        plan(task(NLI, prompts=prompts), "zero-shot")
    assert message in str(e.value)


def test_parse_by_mode():
    t = task(NLI)
    p = plan(t, "zero-shot").parse(NLI_EX, ["Answer: Entailment.\nExplanation: A dog running is an animal moving."])
    assert (p.status, p.label, p.rationale) == ("ok", "entailment", "A dog running is an animal moving.")
    p = plan(t, "label-only").parse(NLI_EX, ["entailment"])
    assert (p.status, p.label, p.rationale) == ("ok", "entailment", None)
    p = plan(t, "zero-shot-cot").parse(
        NLI_EX, ["A dog is an animal and running is moving.\nTherefore, the answer is entailment.", "entailment"]
    )
    assert p.label == "entailment" and p.rationale == "A dog is an animal and running is moving."
    p = plan(t, "few-shot-cot", SHOTS).parse(
        NLI_EX,
        [
            "Dogs are animals that move when they run. So the answer is entailment.\n\n"
            "Q: Premise: x\nA: So the answer is neutral."
        ],
    )
    assert p.label == "entailment" and p.rationale == "Dogs are animals that move when they run."
    p = plan(t, "zero-shot").parse(NLI_EX, ["Answer: entailment\nExplanation: Obvious."])
    assert p.status == "ok" and p.rationale is None and p.rationale_dropped  # under 5 words
    p = plan(t, "zero-shot").parse(NLI_EX, ["I cannot help with that request."])
    assert p.status == "parse_failed" and p.label is None and "no label found" in p.error


def write(tmp_path, lines):
    path = tmp_path / "shots.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_load_exemplars_from_fields_or_rendered_input(tmp_path):
    t = task(NLI)
    path = write(
        tmp_path,
        [
            {
                "premise": "A man sleeps.",
                "hypothesis": "He is awake.",
                "answer": 2,
                "rationale": " Sleeping is not awake. ",
            },
            "",
            {"input": "Premise: a\nHypothesis: b", "answer": "Neutral", "rationale": "Nothing links a and b."},
        ],
    )
    shots = load_exemplars(path, t)
    assert shots[0] == {
        "input": "Premise: A man sleeps.\nHypothesis: He is awake.",
        "choices": None,
        "rationale": "Sleeping is not awake.",
        "answer": "contradiction",
    }
    assert shots[1]["answer"] == "neutral" and shots[1]["input"] == "Premise: a\nHypothesis: b"
    qa = load_exemplars(
        write(
            tmp_path,
            [
                {
                    "question": "Where are books?",
                    "choices": ["sea", "library"],
                    "answer": "b",
                    "rationale": "Books live in libraries.",
                }
            ],
        ),
        task(QA),
    )
    assert qa[0]["choices"] == ["sea", "library"] and qa[0]["answer"] == "library"


@pytest.mark.parametrize(
    "lines, message",
    [
        (
            [{"input": "x", "answer": "neutral", "rationale": "fine reason here"}, "{not json"],
            "shots.jsonl:2: malformed JSON line",
        ),
        ([{"input": "x", "answer": "neutral"}], "shots.jsonl:1: rationale: missing"),
        ([{"input": "x", "answer": " ", "rationale": "r"}], "shots.jsonl:1: answer: missing"),
        (["", {"premise": "p", "answer": "neutral", "rationale": "r"}], "shots.jsonl:2: hypothesis: missing"),
        ([{"input": "x", "answer": "maybe", "rationale": "r"}], "shots.jsonl:1: answer: unknown label 'maybe'"),
        ([""], "no exemplars in the file"),
    ],
)
def test_exemplar_file_errors_name_file_line_and_field(tmp_path, lines, message):
    with pytest.raises(UserError) as e:
        load_exemplars(write(tmp_path, lines), task(NLI))
    assert message in str(e.value)


def test_missing_exemplar_file(tmp_path):
    with pytest.raises(UserError, match="exemplars file not found"):
        load_exemplars(tmp_path / "nope.jsonl", task(NLI))


def test_score_orders_rotate_then_rotate_the_reversed_order():
    from edgedistill.task import task_from_dict
    from edgedistill.teacher.prompts import option_keys

    task = task_from_dict({"name": "t", "type": "classification", "input": "{text}", "labels": ["x", "y", "z"]})
    orders = [list(option_keys(task, None, "letter", j)) for j in range(7)]
    assert orders[:3] == [["x", "y", "z"], ["y", "z", "x"], ["z", "x", "y"]]
    assert orders[3:6] == [["z", "y", "x"], ["y", "x", "z"], ["x", "z", "y"]]
    assert orders[6] == orders[0] and len({tuple(o) for o in orders}) == 6
    assert option_keys(task, None, "letter", 4) == {"y": "a", "x": "b", "z": "c"}


def test_override_errors_name_the_line_of_the_task_file(tmp_path):
    from edgedistill.task import load_task

    path = tmp_path / "task.yaml"
    path.write_text(
        'name: nli\ntype: classification\ninput: "{t}"\nlabels: [a, b]\nprompts:\n'
        '  label-only: "{input}"\n  zero-shot: "{input:d}"\n'
    )
    with pytest.raises(UserError, match=r"task\.yaml:7: prompts\.zero-shot: bad template: \{input:d\}"):
        plan(load_task(path), "zero-shot")


def test_braces_in_templates_and_inputs_are_text():
    t = task(NLI, prompts={"label-only": "{{literal}} {input} {{"})
    user = [m["content"] for m in plan(t, "label-only").messages(ex("a {premise} b {0} {text:>9}"))][-1]
    assert user == "{literal} a {premise} b {0} {text:>9} {"  # an input's braces are never filled


def test_a_numeric_reply_that_cannot_be_used_is_a_parse_failure_that_says_why():
    p = plan(task(MATH), "zero-shot").parse(MATH_EX, ["Answer: 1e400\nExplanation: a very large number of apples."])
    assert p.status == "parse_failed" and p.label is None
    assert p.error.startswith("the number in the answer cannot be used (not a finite number")
    p = plan(task(MATH), "zero-shot").parse(MATH_EX, ["Answer: some apples\nExplanation: I could not count them."])
    assert p.error.startswith("no number found in the answer")
    cot = plan(task(MATH), "zero-shot-cot").parse(MATH_EX, ["So it is (-8)**0.5 in the end.", "I am not sure."])
    assert cot.status == "parse_failed" and "not a real number" in cot.error
