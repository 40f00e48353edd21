"""Numeric tasks as a choice among expressions: the candidates, a tiny ranking student end to end, bad input."""

import json
import random

import pytest
import tiny

from edgedistill.data import load_examples
from edgedistill.distill.strip import strip_student
from edgedistill.distill.train import TrainConfig, train
from edgedistill.edge.arith import to_number
from edgedistill.edge.expressions import candidates, choices_for, numbers, target, value_of
from edgedistill.errors import UserError
from edgedistill.evaluate import predict_labels, score
from edgedistill.task import load_task


def test_numbers_and_candidates():
    text = "Luke scored 84 points in 2 rounds; 12,000 fans, an mp3, 3.5 kg and 84 again."
    assert numbers(text) == ["84", "2", "12000", "3.5"]
    assert candidates("84 points in 2 rounds") == ["84 + 2", "84 - 2", "2 - 84", "84 * 2", "84 / 2", "2 / 84"]
    assert len(candidates("9 apples, 3 boxes and 6 pears")) == 18 and candidates("one number: 7") == []
    assert candidates("0 left of 5") == ["0 + 5", "0 - 5", "5 - 0", "0 * 5", "0 / 5"]  # never a division by zero
    assert value_of("84 / 2") == "42" and value_of("1 / 3") == "0.3333333333" and value_of("2.5 * 2") == "5"
    # ASCII digits, leading zeros
    assert numbers("at 05 past ٣5, x_5 and 7") == ["05", "7"] and value_of("05 + 7") == "12"
    assert choices_for("numeric", "84 and 2")[4] == "84 / 2"
    assert choices_for("multiple-choice", "84 and 2", ["a", "b"]) == ["a", "b"]


def test_huge_numbers_and_unusable_answers_have_no_target_and_raise_nothing():
    text = "He had " + "9" * 5000 + " apples and 3 pears"
    c = candidates(text)
    assert [value_of(x) for x in c] == ["inf", "inf", "-inf", "inf", "inf", "0"]  # as the JS runtime computes them
    for answer in ("1e400", "9" * 400, "((((9**99)**99)**99)**99)", "(-8)**0.5", float("nan"), 10**400):
        number = to_number(answer)  # as a benchmark asks whether an answer is one operation away
        assert target(c, answer) is None and (number is None or target(c, number) is None)


def test_target_is_the_expression_with_the_answer_value():
    c = candidates("9 apples, 3 boxes and 6 pears")
    assert c[target(c, "3")] == "9 / 3"  # the first with the value: 9 / 3 = 6 - 3 = 3
    assert c[target(c, "( 6.0 - 3.0 )")] == "6 - 3"  # an expression answer picks its own spelling
    assert c[target(c, 54)] == "9 * 6" and target(c, "100") is None and target(c, "not a number") is None


def _write(path, n, seed, unreachable=0):
    """A toy word problem that names its operation ("+": add the first two numbers, "*": multiply them); every
    third has a distractor number, so rows have 6 or 18 choices."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            a, b = rng.randint(5, 9), rng.randint(1, 4)
            more = i % 2 == 0
            text = f"the man has {a} dog {'+' if more else '*'} {b} dog" + (
                f" in {rng.choice([10, 12, 20])} park" if i % 3 == 0 else ""
            )
            answer = str(a + b if more else a * b) if i >= unreachable else "999"
            f.write(
                json.dumps(
                    {
                        "id": str(i),
                        "input": text,
                        "text": text,
                        "label": answer,
                        "gold": answer,
                        "status": "ok",
                        "rationale": f"{a} and {b} so {answer}" if i % 2 else None,
                    }
                )
                + "\n"
            )


@pytest.fixture(scope="module")
def ranked(tmp_path_factory):
    d = tmp_path_factory.mktemp("expr")
    tiny.tiny_encoder_dir(d / "enc")
    (d / "num.yaml").write_text('name: math\ntype: numeric\ninput: "{text}"\ngold: label\n')
    _write(d / "ann.jsonl", 96, 0, unreachable=3)
    _write(d / "test.jsonl", 24, 1)
    s = train(
        TrainConfig(
            min_steps=0,
            task=str(d / "num.yaml"),
            annotations=str(d / "ann.jsonl"),
            out=str(d / "st"),
            student=str(d / "enc"),
            mode="label-only",
            epochs=10,
            batch_size=8,
            lr=5e-3,
            head_lr=5e-3,
            layer_decay=1.0,
            pooling="mean",
            progress=False,
        ),
        echo=lambda *_: None,
    )
    return d, s


def test_an_encoder_learns_a_numeric_task_by_ranking_expressions(ranked, tmp_path, monkeypatch):
    import edgedistill.edge.runtime as runtime
    from edgedistill.deploy.export import ExportConfig, export_bundle
    from edgedistill.runtime import EdgeModel

    d, s = ranked
    assert s["family"] == "multiple-choice" and s["rows"]["skipped_unreachable"] == 3
    task = load_task(d / "num.yaml")
    test = load_examples(task, d / "test.jsonl")
    student = predict_labels(d / "st", task, test)
    assert all(p in candidates(e.input) for p, e in zip(student, test))  # the answer is one of the row's expressions
    # chance is 1 in 6 or 18: the 2-layer toy learns which operations the data uses (loss ln 6 -> ln 2), not yet
    # which one each row names
    loss = [h["loss"] for h in s["history"] if h.get("loss") is not None]
    assert loss[-1] < 0.5 * loss[0] and score(task, test, student)["accuracy"] >= 0.4
    stripped = strip_student(d / "st", tmp_path / "stripped")
    m = export_bundle(
        ExportConfig(
            model=str(stripped),
            out=str(tmp_path / "b"),
            quantize="none",
            parity_data=str(d / "test.jsonl"),
            parity_samples=24,
        ),
        echo=lambda *_: None,
    )
    # every expression scored alike
    assert m["parity"]["examples"] == 24 and m["parity"]["fp32_max_abs_logit_diff"] < 1e-4
    assert predict_labels(stripped, task, test) == student
    built = []  # each item's expressions are built once per prediction: encode and answers reuse them
    monkeypatch.setattr(runtime, "choices_for", lambda *a: built.append(a) or choices_for(*a))
    # (its labels are not compared: the toy scores a + b and a * b a hair apart)
    with EdgeModel.load(tmp_path / "b") as m:
        bundle = m.predict([{"text": e.input} for e in test])
        assert len(built) == len(test)
        one, none = m.predict([{"text": "the man has 7 dog and 2 more"}, {"text": "the man has 7 dog"}])
    assert all(set(b["probs"]) == set(candidates(e.input)) for b, e in zip(bundle, test))
    assert one["label"] in candidates("7 2") and len(one["probs"]) == 6 and one["answer"] == value_of(one["label"])
    assert none == {"label": None, "probs": {}, "answer": None}  # one number: no expression to rank, no guess


def test_no_reachable_answer_is_a_clear_error(ranked, tmp_path):
    d, _ = ranked
    with open(tmp_path / "one.jsonl", "w") as f:
        for i in range(8):
            f.write(json.dumps({"id": str(i), "input": f"how many {i} dog", "label": str(i), "status": "ok"}) + "\n")
    with pytest.raises(UserError, match="one.jsonl: no row's answer is one operation.*--numeric generate"):
        train(
            TrainConfig(
                min_steps=0,
                task=str(d / "num.yaml"),
                annotations=str(tmp_path / "one.jsonl"),
                out=str(tmp_path / "st"),
                student=str(d / "enc"),
                mode="label-only",
                epochs=1,
            ),
            echo=lambda *_: None,
        )
    assert not (tmp_path / "st").exists()


@pytest.mark.parametrize("mode", ["multitask", "rationale-teacher", "rationale-dropout"])
def test_rationale_modes_train_on_rows_with_different_numbers_of_choices(ranked, tmp_path, mode):
    """Rows of 6 and 18 expressions in one batch: padding choices are masked, the rationale teacher's soft labels
    and head states cut to each row's own choices."""
    d, _ = ranked
    s = train(
        TrainConfig(
            min_steps=0,
            task=str(d / "num.yaml"),
            annotations=str(d / "ann.jsonl"),
            out=str(tmp_path / "st"),
            student=str(d / "enc"),
            mode=mode,
            epochs=2,
            batch_size=8,
            lr=5e-3,
            head_lr=5e-3,
            layer_decay=1.0,
            pooling="mean",
            progress=False,
        ),
        echo=lambda *_: None,
    )
    assert s["family"] == "multiple-choice" and s["mode"] == mode and s["val_accuracy"] is not None
    if mode != "rationale-dropout":
        assert any(h.get("rationale_loss", 0) > 0 for h in s["history"])


def test_padding_choices_are_never_run_nor_predicted(ranked):
    """A batch of rows with 2 and 3 choices: the real choices score as they do alone, padding at PADDING_LOGIT."""
    import torch

    from edgedistill.distill.student import PADDING_LOGIT, head_states, label_outputs, load_label_model
    from edgedistill.distill.train_data import make_collator

    d, _ = ranked
    model = load_label_model(d / "st", "multiple-choice").eval()
    rows = [
        {"input_ids": [[2, 5, 3], [2, 6, 3]], "attention_mask": [[1, 1, 1]] * 2, "labels": 1},
        {"input_ids": [[2, 7, 3], [2, 8, 3], [2, 9, 3]], "attention_mask": [[1, 1, 1]] * 3, "labels": 2},
    ]
    batch = make_collator(0, "multiple-choice", False)(rows)
    assert batch["input_ids"].shape == (2, 3, 3) and batch["attention_mask"][0, 2].sum() == 0
    assert batch["choice_mask"].tolist() == [[True, True, False], [True, True, True]]
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        out = label_outputs(model, inputs, batch["choice_mask"], output_hidden_states=True)
        alone = [model(input_ids=torch.tensor([r["input_ids"]]), output_hidden_states=True) for r in rows]
    assert out.logits[0, 2] == PADDING_LOGIT and torch.softmax(out.logits, -1)[0, 2] < 1e-6
    assert torch.allclose(out.logits[0, :2], alone[0].logits[0], atol=1e-5) and torch.allclose(
        out.logits[1], alone[1].logits[0], atol=1e-5
    )
    states = head_states(out.hidden_states[-1], inputs["attention_mask"], 2, "mean")
    assert torch.allclose(
        states[0, : 2 * 32], head_states(alone[0].hidden_states[-1], torch.ones(2, 3), 1, "mean")[0], atol=1e-5
    )
    assert states[0, 2 * 32 :].abs().max() == 0


def test_compress_builds_a_smaller_ranking_student(ranked, tmp_path):
    """A ranking student compresses like any multiple-choice one: the trimmed vocabulary keeps the expressions'
    tokens (identical predictions), and a 1-layer student learns the 2-layer one's probabilities over each row's
    own expressions (soft targets of 6 and 18 choices in one batch); export takes the result."""
    from edgedistill.compress.compress import CompressConfig, compress
    from edgedistill.compress.inputs import task_texts
    from edgedistill.compress.smaller import teacher_annotations
    from edgedistill.compress.vocabulary import trim_vocabulary
    from edgedistill.deploy.export import ExportConfig, export_bundle
    from edgedistill.model_dir import read_meta

    d, _ = ranked
    task = load_task(d / "num.yaml")
    test = load_examples(task, d / "test.jsonl")
    stripped = strip_student(d / "st", tmp_path / "stripped")
    texts = task_texts(d / "ann.jsonl", task_type="numeric")
    first = json.loads((d / "ann.jsonl").read_text().splitlines()[0])["input"]
    assert set(candidates(first)) <= set(texts)  # the expressions are texts the student reads
    trim_vocabulary(stripped, texts, tmp_path / "trimmed", common=0)
    assert predict_labels(tmp_path / "trimmed", task, test) == predict_labels(stripped, task, test)
    rows = [
        {"id": "a", "input": "the man has 7 dog * 2 dog", "status": "ok", "label": "14"},
        {"id": "b", "input": "the man has 7 dog", "status": "ok", "label": "7"},
    ]
    assert teacher_annotations(stripped, rows, tmp_path / "soft.jsonl") == 1  # one number: nothing to rank, left out
    soft = json.loads((tmp_path / "soft.jsonl").read_text())
    assert soft["choices"] == candidates(rows[0]["input"]) and soft["label"] in soft["choices"]
    assert abs(sum(soft["label_probs"].values()) - 1) < 1e-6 and len(soft["label_probs"]) == 6
    s = compress(
        CompressConfig(
            model=str(stripped),
            annotations=str(d / "ann.jsonl"),
            out=str(tmp_path / "c"),
            layers=[1],
            epochs=4,
            lr=5e-3,
            quantize="none",
        ),
        echo=lambda *_: None,
    )
    print("1-layer agreement with the 2-layer ranking student:", s["candidates"][0]["accuracy"])
    assert [c["layers"] for c in s["candidates"]] == [1]
    assert s["candidates"][0]["accuracy"] >= 0.5  # agreement with the 2-layer one
    assert read_meta(tmp_path / "c")["layers"]["kept"] == [1]
    export_bundle(
        ExportConfig(
            model=str(tmp_path / "c"), out=str(tmp_path / "b"), quantize="none", parity_data=str(d / "test.jsonl")
        ),
        echo=lambda *_: None,
    )
    assert all(p in candidates(e.input) for p, e in zip(predict_labels(tmp_path / "b", task, test), test))


def test_soft_targets_over_other_choices_than_the_expressions_are_refused(ranked, tmp_path):
    d, _ = ranked
    with open(tmp_path / "soft.jsonl", "w") as f:
        f.write(
            json.dumps(
                {
                    "id": "0",
                    "input": "the man has 7 dog * 2 dog",
                    "label": "7 * 2",
                    "status": "ok",
                    "choices": ["7 * 2", "7 + 2"],
                    "label_probs": {"7 * 2": 0.9, "7 + 2": 0.1},
                }
            )
            + "\n"
        )
    with pytest.raises(UserError, match="soft.jsonl: label_probs over .* not the input's expressions"):
        train(
            TrainConfig(
                min_steps=0,
                task=str(d / "num.yaml"),
                annotations=str(tmp_path / "soft.jsonl"),
                out=str(tmp_path / "st"),
                student=str(d / "enc"),
                mode="label-only",
                epochs=1,
            ),
            echo=lambda *_: None,
        )
