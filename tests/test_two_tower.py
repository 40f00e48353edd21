"""`--pooling two-tower`: a multiple-choice student that encodes the question and each choice apart inside one
pass and scores them by 20 x the cosine of their mean states (distill.student.two_tower_forward), kept
through train, strip, vocabulary trimming, export and the runtime, which read the pair template from tokenizer.json."""

import json

import pytest
import tiny
import torch
from test_pooling import assert_the_rationales_did_their_part, watch_training
from test_train import LABELS, NLI_TASK, write_annotations

from edgedistill.compress.vocabulary import trim_vocabulary
from edgedistill.data import Example
from edgedistill.deploy.export import ExportConfig, export_bundle
from edgedistill.distill.modeling_edgedistill import TWO_TOWER_SCALE
from edgedistill.distill.strip import strip_student
from edgedistill.distill.student import build_label_model, load_label_model, mean_states, pair_template
from edgedistill.distill.train import TrainConfig, train
from edgedistill.errors import UserError
from edgedistill.evaluate import predict_labels
from edgedistill.task import load_task

PLACES = ["park", "house", "street"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("two_tower")
    tiny.tiny_sentence_encoder_dir(d / "sent")
    tiny.tiny_mpnet_sentence_encoder_dir(d / "mpnet")  # all-mpnet-base-v2's kind: no token types, positions from 2
    (d / "mc.yaml").write_text('name: qa\ntype: multiple-choice\ninput: "{text}"\nchoices: choices\ngold: label\n')
    with open(d / "mc.jsonl", "w") as f:
        for i in range(48):
            place = PLACES[i % 3]
            f.write(
                json.dumps(
                    {
                        "id": str(i),
                        "input": f"where is the {place} dog",
                        "choices": PLACES,
                        "label": place,
                        "gold": place,
                        "status": "ok",
                        "rationale": f"the dog is at the {place}",
                    }
                )
                + "\n"
            )
    (d / "nli.yaml").write_text(NLI_TASK)
    write_annotations(d / "nli.jsonl")
    with open(d / "pairs.jsonl", "w") as f:  # text pairs: the label is read off the second text
        for i in range(48):
            label = LABELS[i % 3]
            f.write(
                json.dumps(
                    {
                        "id": str(i),
                        "input": f"the dog is in the {PLACES[i // 3 % 3]} [SEP] {label} dog happy",
                        "label": label,
                        "gold": label,
                        "status": "ok",
                        "rationale": f"the dog is {label}",
                    }
                )
                + "\n"
            )
    return d


def _train(data, out, **kw):
    args = dict(
        task=str(data / "mc.yaml"),
        annotations=str(data / "mc.jsonl"),
        out=str(out),
        student=str(data / "sent"),
        mode="label-only",
        epochs=8,
        batch_size=8,
        lr=5e-3,
        head_lr=5e-3,
        layer_decay=1.0,
        pooling="two-tower",
        progress=False,
        min_steps=0,
    )
    return train(TrainConfig(**{**args, **kw}), echo=lambda *_: None)


def _examples(data, name="mc.jsonl"):
    rows = [json.loads(line) for line in (data / name).read_text().splitlines()]
    return [Example(id=r["id"], input=r["input"], choices=r.get("choices"), gold=r["gold"]) for r in rows]


def _no_dropout(model):
    """Dropout off in training mode too (attention's included), so training-mode scores are deterministic."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if hasattr(m, "dropout_prob"):
            m.dropout_prob = 0.0


BASES = ["sent", "mpnet"]  # a BERT and an MPNet sentence encoder


def _cls_in_pair_template(model_dir) -> int:
    pair = json.loads((model_dir / "tokenizer.json").read_text())["post_processor"]["pair"]
    cls = json.loads((model_dir / "tokenizer_config.json").read_text())["cls_token"]
    return [p.get("SpecialToken", {}).get("id") for p in pair].count(cls)


@pytest.mark.parametrize("base", BASES)
def test_one_pass_scores_each_text_as_if_encoded_alone(data, base):
    """The packed pair [CLS] q [SEP] [CLS] c [SEP] gives exactly 20 x cos(mean(q alone), mean(c alone)), with
    padding."""
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    model = build_label_model(data / base, "multiple-choice", None, pooling="two-tower").eval()
    plain = AutoTokenizer.from_pretrained(data / base)
    tok = pair_template(AutoTokenizer.from_pretrained(data / base), "two-tower")
    questions, choices = (
        ["where is the dog", "the cat is happy in the park with a dog"],
        [["park", "the big house"], ["street", "dog"]],
    )
    enc = tok(
        [q for q in questions for _ in range(2)], [c for cs in choices for c in cs], padding=True, return_tensors="pt"
    )
    cls, sep = tok.cls_token, tok.sep_token
    assert tok.convert_ids_to_tokens(enc["input_ids"][0])[:7] == [cls, "where", "is", "the", "dog", sep, cls]
    with torch.no_grad():
        logits = model(**{k: v.view(2, 2, -1) for k, v in enc.items()}).logits
    encoder = AutoModel.from_pretrained(data / base).eval()  # the untrained student's encoder, as transformers runs it
    assert torch.allclose(logits, _scores_by_hand(encoder, plain, questions, choices), atol=1e-4)


def _scores_by_hand(encoder, tok, questions, choices):
    """20 x the cosine of the question's and each choice's mean states, each text encoded alone by `encoder`."""

    def embed(text):
        b = tok([text], return_tensors="pt")
        with torch.no_grad():
            states = encoder(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
        return mean_states(states, b["attention_mask"])[0]

    return torch.tensor(
        [
            [TWO_TOWER_SCALE * torch.cosine_similarity(embed(q), embed(c), dim=0) for c in cs]
            for q, cs in zip(questions, choices)
        ]
    )


@pytest.mark.parametrize("base", BASES)
def test_two_tower_student_trains_strips_trims_and_exports(data, tmp_path, base):
    s = _train(data, tmp_path / "student", student=str(data / base))
    assert s["pooling"] == "two-tower" and s["family"] == "multiple-choice"
    assert (s["attempts"][0]["lr"], s["attempts"][0]["layer_decay"]) == (5e-3, 1.0)  # _train's own rates
    assert _cls_in_pair_template(tmp_path / "student") == 2  # the choice's own [CLS]
    task, exs = load_task(data / "mc.yaml"), _examples(data)
    stripped = strip_student(tmp_path / "student", tmp_path / "stripped")
    predicted = predict_labels(stripped, task, exs)
    assert sum(p == e.gold for p, e in zip(predicted, exs)) / len(exs) > 0.6  # chance 1/3
    trim_vocabulary(stripped, [e.input for e in exs] + PLACES, tmp_path / "trimmed", common=0)
    assert predict_labels(tmp_path / "trimmed", task, exs) == predicted
    m = export_bundle(
        ExportConfig(
            model=str(tmp_path / "trimmed"),
            out=str(tmp_path / "bundle"),
            quantize="none",
            parity_data=str(data / "mc.jsonl"),
            parity_samples=12,
        ),
        echo=lambda *_: None,
    )
    # parity compares the graph with the two-tower torch model; a joint-text graph would not match
    assert m["parity"]["fp32_max_abs_logit_diff"] < 1e-4
    # the torch-free runtime, tokenizer.json's template
    assert predict_labels(tmp_path / "bundle", task, exs) == predicted
    from edgedistill.compress.compress import CompressConfig, compress

    compress(
        CompressConfig(
            model=str(stripped),
            annotations=str(data / "mc.jsonl"),
            out=str(tmp_path / "small"),
            layers=[1],
            epochs=2,
            quantize="none",
        ),
        echo=lambda *_: None,
    )
    small = json.loads((tmp_path / "small" / "config.json").read_text())
    assert small["classifier_pooling"] == "two-tower" and small["num_hidden_layers"] == 1
    assert _cls_in_pair_template(tmp_path / "small") == 2  # trimmed, renumbered, still the two-tower template


# multitask on an MPNet base is refused: test_multitask_needs_a_bert_encoder_and_auto_says_it_skips_it
@pytest.mark.parametrize(
    "mode,base",
    [
        (m, b)
        for b in BASES
        for m in ("rationale-teacher", "rationale-dropout", "multitask")
        if (m, b) != ("multitask", "mpnet")
    ],
)
def test_rationale_modes_train_a_two_tower_student(data, tmp_path, monkeypatch, mode, base):
    """Each rationale mode does its part on a two-tower student (test_pooling.assert_the_rationales_did_their_part),
    and the head training ended with, which strip ships unchanged, still scores a choice by 20 x the cosine of the
    question's and the choice's mean states, each encoded alone."""
    from transformers import AutoTokenizer

    trained, served = watch_training(monkeypatch)
    s = _train(data, tmp_path / "s", mode=mode, epochs=2, student=str(data / base))
    assert s["pooling"] == "two-tower" and s["mode"] == mode
    assert_the_rationales_did_their_part(s, mode, served, tmp_path / "s", data / "mc.jsonl")
    stripped = strip_student(tmp_path / "s", tmp_path / "stripped")
    model = load_label_model(stripped, "multiple-choice").eval()
    tok = AutoTokenizer.from_pretrained(stripped)
    questions, choices = (
        ["where is the dog", "the cat is happy in the park"],
        [["park", "the big house"], ["street", "dog"]],
    )
    enc = tok(
        [q for q in questions for _ in range(2)], [c for cs in choices for c in cs], padding=True, return_tensors="pt"
    )
    inputs = {k: v.view(2, 2, -1) for k, v in enc.items()}
    with torch.no_grad():
        logits = model(**inputs).logits
        assert torch.allclose(trained[-1](**inputs).logits, logits, atol=1e-5)  # what training ended with ships
    assert torch.allclose(logits, _scores_by_hand(model.base_model, tok, questions, choices), atol=1e-4)


def test_multitask_needs_a_bert_encoder_and_auto_says_it_skips_it(data, tmp_path):
    """multitask's rationale decoder is a BERT decoder warm-started from the encoder's layers: an MPNet student
    refuses it by name with the modes it can train, writing nothing, and auto trains the others and says so."""
    with pytest.raises(
        UserError,
        match=r"--mode multitask: .*mpnet encoder cannot give it .*use --mode label-only, "
        r"rationale-teacher, rationale-dropout or auto",
    ):
        _train(data, tmp_path / "mt", mode="multitask", student=str(data / "mpnet"))
    assert not (tmp_path / "mt").exists()
    lines = []
    s = train(
        TrainConfig(
            min_steps=0,
            task=str(data / "mc.yaml"),
            annotations=str(data / "mc.jsonl"),
            out=str(tmp_path / "auto"),
            student=str(data / "mpnet"),
            mode="auto",
            epochs=1,
            batch_size=8,
            progress=False,
        ),
        echo=lines.append,
    )
    # the rivals auto considered: trained, or skipped because the validation rows could not let them ship
    considered = [c["mode"] for c in s["candidates"]] + (s.get("auto_skipped") or {}).get("modes", [])
    assert considered == ["label-only", "rationale-teacher", "rationale-dropout"]
    assert any(
        line.startswith("auto: multitask is not a candidate for this student: its rationale decoder") for line in lines
    )


def test_a_two_tower_classifier_needs_inputs_with_two_texts(data, tmp_path):
    with pytest.raises(
        UserError,
        match=r"--pooling two-tower: .*nli.jsonl: 48 of 48 inputs hold no \[SEP\] .*'\{first\} \[SEP\] \{second\}'",
    ):
        _train(data, tmp_path / "nli", task=str(data / "nli.yaml"), annotations=str(data / "nli.jsonl"))
    assert not (tmp_path / "nli").exists()


def test_a_pair_classifier_reads_each_side_of_sep_as_if_encoded_alone(data):
    """`premise [SEP] hypothesis` as one text: the classifier reads [u, v, |u - v|, u * v] of the two sides' mean
    states, each side's states those of encoding it alone (the second side from position 0, its [SEP] included)."""
    from transformers import BertModel

    torch.manual_seed(0)
    model = build_label_model(data / "sent", "sequence-classification", LABELS, pooling="two-tower").eval()
    tok = tiny.tiny_tokenizer()
    sides = [("where is the dog", "the park"), ("the cat is happy in the park with a dog", "street")]
    enc = tok([f"{a} [SEP] {b}" for a, b in sides], padding=True, return_tensors="pt")
    assert tok.convert_ids_to_tokens(enc["input_ids"][0])[:6] == ["[CLS]", "where", "is", "the", "dog", "[SEP]"]
    with torch.no_grad():
        logits = model(**enc).logits
    encoder = BertModel(model.config, add_pooling_layer=False).eval()
    encoder.load_state_dict(model.bert.state_dict())

    def embed(ids):
        with torch.no_grad():
            return encoder(input_ids=torch.tensor([ids])).last_hidden_state[0].mean(0)

    def by_hand(a, b):
        u = embed(tok(a)["input_ids"])
        v = embed(tok(b, add_special_tokens=False)["input_ids"] + [tok.sep_token_id])
        with torch.no_grad():
            return model.classifier(torch.cat([u, v, (u - v).abs(), u * v]))

    assert torch.allclose(logits, torch.stack([by_hand(a, b) for a, b in sides]), atol=1e-4)


def test_a_two_tower_classifier_trains_strips_trims_and_exports(data, tmp_path):
    task, exs = load_task(data / "nli.yaml"), _examples(data, "pairs.jsonl")
    s = _train(data, tmp_path / "student", task=str(data / "nli.yaml"), annotations=str(data / "pairs.jsonl"))
    assert s["pooling"] == "two-tower" and s["family"] == "sequence-classification"
    stripped = strip_student(tmp_path / "student", tmp_path / "stripped")
    predicted = predict_labels(stripped, task, exs)
    assert sum(p == e.gold for p, e in zip(predicted, exs)) / len(exs) > 0.6  # chance 1/3
    trim_vocabulary(stripped, [e.input for e in exs], tmp_path / "trimmed", common=0)
    assert predict_labels(tmp_path / "trimmed", task, exs) == predicted
    m = export_bundle(
        ExportConfig(
            model=str(tmp_path / "trimmed"),
            out=str(tmp_path / "bundle"),
            quantize="none",
            parity_data=str(data / "pairs.jsonl"),
            parity_samples=12,
        ),
        echo=lambda *_: None,
    )
    assert m["parity"]["fp32_max_abs_logit_diff"] < 1e-4  # the graph parts the text at [SEP] as the torch model does
    assert predict_labels(tmp_path / "bundle", task, exs) == predicted


@pytest.mark.parametrize("base", BASES)
def test_training_encodes_each_question_once_with_the_one_pass_numbers(data, base):
    """Training takes the shortcut (each row's question encoded once, each choice alone: encode_apart) and scores
    exactly what the one pass does; a row whose choices carry different question tokens goes through the one pass."""
    from transformers import AutoTokenizer

    from edgedistill.distill.modeling_edgedistill import encode_apart

    torch.manual_seed(0)
    model = build_label_model(data / base, "multiple-choice", None, pooling="two-tower")
    _no_dropout(model)
    tok = pair_template(AutoTokenizer.from_pretrained(data / base), "two-tower")
    questions, choices = (
        ["where is the dog", "the cat is happy in the park with a dog"],
        [["park", "the big house"], ["street", "dog"]],
    )
    enc = tok(
        [q for q in questions for _ in range(2)], [c for cs in choices for c in cs], padding=True, return_tensors="pt"
    )
    inputs = {k: v.view(2, 2, -1) for k, v in enc.items()}
    flat = [enc[n] for n in ("input_ids", "attention_mask", "token_type_ids")]
    assert encode_apart(model.base_model, *flat, k=2) is not None
    calls = []
    model.base_model.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        trained, answered = model.train()(**inputs), model.eval()(**inputs)
        assert len(calls) == 4  # training and answering alike: the questions, then the choices
        torch.jit.trace(
            model.eval(),
            tuple(inputs[n] for n in ("input_ids", "attention_mask", "token_type_ids")),
            strict=False,
            check_trace=False,
        )
        assert len(calls) == 5  # traced (as export traces it): the one pass, the graph the runtimes feed
        model.one_pass = True  # the one pass in eager torch too, as benchmarks/two_tower_speed.py times it
        through_one_pass, one_pass = model.train()(**inputs), model.eval()(**inputs)
    assert len(calls) == 7
    assert torch.allclose(trained.logits, one_pass.logits, atol=1e-4)
    assert torch.allclose(answered.logits, one_pass.logits, atol=1e-4)
    assert torch.allclose(trained.in_batch_logits, through_one_pass.in_batch_logits, atol=1e-4)
    ids = flat[0].clone()
    ids[1, 1] = ids[0, 2]  # row 0's second choice now carries another question
    assert encode_apart(model.base_model, ids, *flat[1:], k=2) is None


def test_training_ranks_each_answer_among_every_choice_in_the_batch(data):
    """In training the forward also scores every question against every row's choices; their diagonal blocks are the
    row's own scores, and the label loss then ranks the answer among all of them (the other rows' choices too)."""
    from edgedistill.distill.student import RationaleStudent

    torch.manual_seed(0)
    model = build_label_model(data / "sent", "multiple-choice", None, pooling="two-tower")
    _no_dropout(model)  # the same question's states then match in every choice's row
    tok = pair_template(tiny.tiny_tokenizer(), "two-tower")
    questions = ["where is the dog", "the cat is happy"]
    enc = tok([q for q in questions for _ in PLACES], PLACES * 2, padding=True, return_tensors="pt")
    inputs = {k: v.view(2, 3, -1) for k, v in enc.items()}
    out = model.train()(**inputs)
    wide = out.in_batch_logits
    assert wide.shape == (2, 6)
    assert torch.allclose(wide[0, :3], out.logits[0], atol=1e-5) and torch.allclose(
        wide[1, 3:], out.logits[1], atol=1e-5
    )
    assert not hasattr(model.eval()(**inputs), "in_batch_logits")  # inference scores only the row's own choices
    student = RationaleStudent(model.train(), None, "multiple-choice", alpha=1.0)
    labels = torch.tensor([0, 2])
    loss = student(**inputs, labels=labels)["loss"]
    expected = torch.nn.functional.cross_entropy(wide, labels + torch.tensor([0, 3]))
    assert torch.allclose(loss, expected, atol=1e-5)
    assert not torch.allclose(loss, torch.nn.functional.cross_entropy(out.logits, labels), atol=1e-4)


def test_ragged_batches_rank_among_every_real_choice_too(data):
    """Rows with fewer choices than the longest (padding choices, `choice_mask`) run only their real pairs; the
    in-batch scores still hold one row per question over every real choice, each row's own ones at its offset."""
    from edgedistill.distill.student import RationaleStudent, label_outputs

    torch.manual_seed(0)
    model = build_label_model(data / "sent", "multiple-choice", None, pooling="two-tower")
    _no_dropout(model)
    tok = pair_template(tiny.tiny_tokenizer(), "two-tower")
    pairs = (
        [("where is the dog", c) for c in PLACES]
        + [("the cat is happy", c) for c in PLACES[:2]]
        + [("the cat is happy", "")]
    )
    enc = tok([q for q, _ in pairs], [c for _, c in pairs], padding=True, return_tensors="pt")
    inputs = {k: v.view(2, 3, -1) for k, v in enc.items()}
    choice_mask = torch.tensor([[True, True, True], [True, True, False]])
    student = RationaleStudent(model.train(), None, "multiple-choice", alpha=1.0)
    labels = torch.tensor([2, 1])
    out = student(**inputs, labels=labels, choice_mask=choice_mask)
    raw = label_outputs(model, inputs, choice_mask)
    wide, offsets = raw.in_batch_logits, raw.in_batch_offsets
    assert wide.shape == (2, 5) and offsets.tolist() == [0, 3]
    assert torch.allclose(wide[0, :3], raw.logits[0], atol=1e-5) and torch.allclose(
        wide[1, 3:], raw.logits[1, :2], atol=1e-5
    )
    assert torch.allclose(out["loss"], torch.nn.functional.cross_entropy(wide, labels + offsets), atol=1e-5)


def test_trimming_renumbers_the_sep_a_two_tower_classifier_parts_at(data, tmp_path):
    """The graph finds [SEP] by its id (config.sep_token_id): trimming the vocabulary renumbers it in both places."""
    base = tiny.tiny_sentence_encoder_dir(tmp_path / "late")
    tiny.tiny_tokenizer(sep_last=True).save_pretrained(base)
    _train(
        data,
        tmp_path / "student",
        task=str(data / "nli.yaml"),
        annotations=str(data / "pairs.jsonl"),
        student=str(base),
        epochs=1,
    )
    stripped = strip_student(tmp_path / "student", tmp_path / "stripped")
    task, exs = load_task(data / "nli.yaml"), _examples(data, "pairs.jsonl")
    trim_vocabulary(stripped, [e.input for e in exs], tmp_path / "trimmed", common=0)
    old, new = (json.loads((d / "config.json").read_text())["sep_token_id"] for d in (stripped, tmp_path / "trimmed"))
    assert new < old == len(tiny.tiny_tokenizer()) - 1
    assert predict_labels(tmp_path / "trimmed", task, exs) == predict_labels(stripped, task, exs)


def test_a_two_tower_multiple_choice_student_defaults_to_one_gentle_rate(data, tmp_path):
    """No fresh head to learn: every layer at TWO_TOWER_LR unless --lr / --layer-decay say otherwise; a two-tower
    classifier (a fresh head) keeps the encoder recipe."""
    from edgedistill.distill.train import ENCODER_LR, LAYER_DECAY, TWO_TOWER_LAYER_DECAY, TWO_TOWER_LR

    s = _train(data, tmp_path / "mc", lr=None, head_lr=None, layer_decay=None, epochs=1)
    assert (s["attempts"][0]["lr"], s["attempts"][0]["layer_decay"]) == (TWO_TOWER_LR, TWO_TOWER_LAYER_DECAY)
    s = _train(
        data,
        tmp_path / "cls",
        task=str(data / "nli.yaml"),
        annotations=str(data / "pairs.jsonl"),
        lr=None,
        head_lr=None,
        layer_decay=None,
        epochs=1,
    )
    assert (s["attempts"][0]["lr"], s["attempts"][0]["layer_decay"]) == (ENCODER_LR, LAYER_DECAY)


def test_auto_is_two_tower_for_multiple_choice_and_one_text_for_expressions(data, tmp_path):
    """--pooling auto on a sentence encoder: a multiple-choice student reads question and choice apart
    (benchmarks/results/two_tower.md); a numeric task's expressions, which the base never embedded, are read
    with the problem as one text; classification keeps the mean head."""
    s = _train(data, tmp_path / "mc", pooling="auto", epochs=1)
    assert s["pooling"] == "two-tower" and _cls_in_pair_template(tmp_path / "mc") == 2
    (data / "num.yaml").write_text('name: math\ntype: numeric\ninput: "{text}"\ngold: label\n')
    with open(data / "num.jsonl", "w") as f:
        for i in range(24):
            a, b = 2 + i % 5, 3 + i % 4
            f.write(
                json.dumps(
                    {
                        "id": str(i),
                        "input": f"the dog has {a} and {b} cats",
                        "label": str(a + b),
                        "gold": str(a + b),
                        "status": "ok",
                    }
                )
                + "\n"
            )
    s = _train(
        data,
        tmp_path / "num",
        task=str(data / "num.yaml"),
        annotations=str(data / "num.jsonl"),
        pooling="auto",
        numeric="expressions",
        epochs=1,
    )
    assert s["pooling"] == "mean" and s["family"] == "multiple-choice" and _head_pooling(tmp_path / "num") == "mean"
    s = _train(
        data,
        tmp_path / "cls",
        task=str(data / "nli.yaml"),
        annotations=str(data / "nli.jsonl"),
        pooling="auto",
        epochs=1,
    )
    assert s["pooling"] == "mean" and _head_pooling(tmp_path / "cls") == "mean"
    assert _head_pooling(tmp_path / "mc") == "two-tower"


def _head_pooling(student) -> str:
    """The head the student dir's label model was built and saved with (config.json, as load_label_model reads it)."""
    return json.loads((student / "config.json").read_text())["classifier_pooling"]


def test_one_decision_gives_each_student_its_head_and_rates(data):
    """train.student_head / fresh_head / default_rates, which prepare and benchmarks/distill_accuracy.py both ask:
    only a two-tower multiple-choice student starts as the base's own scorer and takes the gentle rate, whatever
    the task its choices come from; a numeric task's expressions are one text under auto."""
    from edgedistill.distill.train import (
        ENCODER_LR,
        LAYER_DECAY,
        SEQ2SEQ_LR,
        TWO_TOWER_LAYER_DECAY,
        TWO_TOWER_LR,
        default_rates,
        fresh_head,
        student_head,
    )

    base = str(data / "sent")
    heads = {
        (t, p): student_head(t, base, "expressions", p)
        for t in ("multiple-choice", "numeric", "classification")
        for p in ("auto", "two-tower")
    }
    assert heads == {
        ("multiple-choice", "auto"): ("multiple-choice", "two-tower"),
        ("multiple-choice", "two-tower"): ("multiple-choice", "two-tower"),
        ("numeric", "auto"): ("multiple-choice", "mean"),
        ("numeric", "two-tower"): ("multiple-choice", "two-tower"),
        ("classification", "auto"): ("sequence-classification", "mean"),
        ("classification", "two-tower"): ("sequence-classification", "two-tower"),
    }
    assert [fresh_head(*h) for h in heads.values()] == [False, False, True, False, True, True]
    assert default_rates("multiple-choice", "two-tower") == (TWO_TOWER_LR, TWO_TOWER_LAYER_DECAY)
    assert (
        default_rates("sequence-classification", "two-tower")
        == default_rates("multiple-choice", "mean")
        == (ENCODER_LR, LAYER_DECAY)
    )
    assert default_rates("seq2seq", None) == (SEQ2SEQ_LR, 1.0)
