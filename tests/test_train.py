"""Multi-task distillation on tiny config-built students: losses, modes, strip, eval, bad input."""

import json
import random
from dataclasses import replace

import numpy as np
import pytest
import tiny
import torch
from click.testing import CliRunner

from edgedistill.cli import main
from edgedistill.data import load_examples
from edgedistill.distill.strip import strip_student
from edgedistill.distill.student import RationaleStudent, build_label_model, build_rationale_decoder
from edgedistill.distill.train import TrainConfig, train
from edgedistill.errors import UserError
from edgedistill.evaluate import evaluate_model
from edgedistill.task import load_task

LABELS = ["entailment", "neutral", "contradiction"]
WORDS = "the dog is happy a cat sat on my house man woman running park red blue big small".split()
NLI_TASK = (
    'name: nli\ntype: classification\ninput: "{text}"\nlabels: [entailment, neutral, contradiction]\ngold: label\n'
)


def write_annotations(path, n=48, rationale_every=2, seed=0):
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            label = LABELS[i % 3]
            text = f"{label} " + " ".join(rng.choice(WORDS) for _ in range(5))
            f.write(
                json.dumps(
                    {
                        "id": str(i),
                        "input": text,
                        "label": label,
                        "gold": label,
                        "status": "ok",
                        "rationale": f"because the dog is {label} and happy" if i % rationale_every == 0 else None,
                    }
                )
                + "\n"
            )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    tiny.tiny_encoder_dir(d / "enc")
    tiny.tiny_t5_dir(d / "t5")
    (d / "task.yaml").write_text(NLI_TASK)
    (d / "num.yaml").write_text('name: math\ntype: numeric\ninput: "{text}"\ngold: label\n')
    (d / "mc.yaml").write_text('name: qa\ntype: multiple-choice\ninput: "{text}"\nchoices: choices\ngold: label\n')
    write_annotations(d / "ann.jsonl")
    rng = random.Random(1)
    with open(d / "num.jsonl", "w") as f:
        for i in range(32):
            a = rng.randint(1, 9)
            f.write(
                json.dumps(
                    {
                        "id": str(i),
                        "input": f"how many {a} dog",
                        "label": str(a),
                        "gold": str(a),
                        "status": "ok",
                        "rationale": f"there are {a} dog so the answer is {a}" if i % 2 else None,
                    }
                )
                + "\n"
            )
    with open(d / "num_test.jsonl", "w") as f:
        for a in range(1, 10):
            f.write(json.dumps({"text": f"how many {a} dog", "label": f"( {a}.0 * 1 )"}) + "\n")
    with open(d / "mc.jsonl", "w") as f:
        for i in range(24):
            choices = ["park", "house", "street"]
            f.write(
                json.dumps(
                    {
                        "id": str(i),
                        "input": f"where is the {choices[i % 3]} dog",
                        "choices": choices,
                        "label": choices[i % 3],
                        "gold": choices[i % 3],
                        "status": "ok",
                        "rationale": f"the dog is at the {choices[i % 3]} because it says so" if i % 2 else None,
                    }
                )
                + "\n"
            )
    with open(d / "test.jsonl", "w") as f:
        for i in range(12):
            f.write(json.dumps({"text": f"{LABELS[i % 3]} the dog", "label": LABELS[i % 3]}) + "\n")
    return d


def run(setup, name, **kw):
    args = dict(
        task=str(setup / "task.yaml"),
        annotations=str(setup / "ann.jsonl"),
        out=str(setup / name),
        student=str(setup / "enc"),
        epochs=4,
        batch_size=8,
        lr=2e-3,
        head_lr=2e-3,
        layer_decay=1.0,
        seed=0,
        progress=False,
        min_steps=0,
    )  # toy rows: as many epochs as asked (min_steps is a recipe for real data; its own test below)
    args.update(kw)
    return train(TrainConfig(**args), echo=lambda *_: None)


def losses(summary, key):
    return [h[key] for h in summary["history"] if key in h and h.get("loss") is not None]


@pytest.mark.parametrize("mode", ["multitask", "label-only", "standard"])
def test_encoder_student_trains_and_loss_falls(setup, mode):
    s = run(setup, f"s_{mode}", mode=mode, epochs=20)
    lab = losses(s, "label_loss")
    assert lab[-1] < lab[0] - 0.2, lab
    if mode == "multitask":
        rat = losses(s, "rationale_loss")
        rat = [r for r in rat if r > 0]
        assert rat[-1] < rat[0], rat
        assert (setup / f"s_{mode}" / "rationale_decoder" / "decoder.pt").exists()
    else:
        assert all(r == 0 for r in losses(s, "rationale_loss"))
    meta = json.loads((setup / f"s_{mode}" / "edgedistill.json").read_text())
    assert meta["kind"] == "student" and meta["family"] == "sequence-classification"
    card = (setup / f"s_{mode}" / "README.md").read_text()
    assert mode in card and ("alpha (0.5)" in card) == (mode == "multitask")


def _batch(setup, with_rationale):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(setup / "enc")
    enc = tok(["the dog is happy", "a cat sat"], padding=True, return_tensors="pt")
    r = tok(["because the dog is happy", "the cat sat on a house"], padding=True, return_tensors="pt")
    return dict(
        **enc,
        labels=torch.tensor([0, 2]),
        rationale_ids=r["input_ids"],
        rationale_mask=r["attention_mask"],
        has_rationale=torch.tensor(with_rationale),
    )


def _student(setup, alpha):
    torch.manual_seed(0)
    lm = build_label_model(setup / "enc", "sequence-classification", LABELS)
    return RationaleStudent(
        lm, build_rationale_decoder(lm, "sequence-classification"), "sequence-classification", alpha
    )


def test_alpha_one_ignores_rationales(setup):
    m = _student(setup, 1.0)
    out = m(**_batch(setup, [True, True]))
    assert torch.allclose(out["loss"], out["label_loss"])
    out["loss"].backward()
    assert all(
        p.grad is None or p.grad.abs().sum() == 0 for n, p in m.decoder.named_parameters() if "crossattention" in n
    )


def test_rationale_warmup_keeps_the_rationale_loss_off_the_encoder(setup):
    from edgedistill.distill.train import _rationale_warmup

    def encoder_grad(m):
        m.zero_grad()
        b = _batch(setup, [True, True])
        enc = m.label_model.base_model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
        m.rationale_loss(
            enc, b["attention_mask"], b["rationale_ids"], b["rationale_mask"], b["has_rationale"]
        ).backward()
        decoder = sum(float(p.grad.abs().sum()) for p in m.decoder.parameters() if p.grad is not None)
        return sum(float(p.grad.abs().sum()) for p in m.label_model.parameters() if p.grad is not None), decoder

    m = _student(setup, 0.5)
    for layer in m.decoder.bert.encoder.layer:  # as after some training: cross-attention reads the encoder
        torch.nn.init.normal_(layer.crossattention.output.dense.weight, std=0.02)
    callback, state = _rationale_warmup(0.25), type("State", (), {"max_steps": 100})()
    for step, shielded in ((0, True), (24, True), (25, False), (99, False)):
        state.global_step = step
        callback.on_step_begin(None, state, None, model=m)
        to_encoder, to_decoder = encoder_grad(m)
        assert to_decoder > 0 and (to_encoder == 0) == shielded, (step, to_encoder)


def test_rows_without_rationale_add_no_rationale_loss(setup):
    m = _student(setup, 0.5).eval()
    both = m(**_batch(setup, [True, True]))
    first_only = m(**_batch(setup, [True, False]))
    b = _batch(setup, [True, False])
    alone = m.rationale_loss(
        m.label_model.base_model(
            input_ids=b["input_ids"][:1], attention_mask=b["attention_mask"][:1]
        ).last_hidden_state,
        b["attention_mask"][:1],
        b["rationale_ids"][:1],
        b["rationale_mask"][:1],
        torch.tensor([True]),
    )
    assert torch.allclose(first_only["rationale_loss"], alone, atol=1e-5)
    assert not torch.allclose(both["rationale_loss"], first_only["rationale_loss"])
    none = m(**_batch(setup, [False, False]))
    assert none["rationale_loss"] == 0 and torch.allclose(none["loss"], 0.5 * none["label_loss"])


def test_strip_gives_plain_model_with_same_predictions(setup, tmp_path):
    from transformers import AutoModelForSequenceClassification

    student = setup / "s_multitask"
    if not student.exists():
        run(setup, "s_multitask", mode="multitask", epochs=20)
    out = strip_student(student, tmp_path / "stripped")
    names = [p.name for p in out.rglob("*")]
    assert "rationale_decoder" not in names and "decoder.pt" not in names
    plain = AutoModelForSequenceClassification.from_pretrained(out)
    assert not any("crossattention" in n or "decoder" in n for n, _ in plain.named_parameters())
    task = load_task(setup / "task.yaml")
    exs = load_examples(task, setup / "test.jsonl")
    from edgedistill.evaluate import predict_labels

    assert predict_labels(student, task, exs) == predict_labels(out, task, exs)  # the same answer on every input
    a, b = evaluate_model(student, task, exs), evaluate_model(out, task, exs)
    assert a["accuracy"] == b["accuracy"] and a["accuracy"] > 0.5
    r = CliRunner().invoke(
        main, ["eval", str(out), "--task", str(setup / "task.yaml"), "--data", str(setup / "test.jsonl"), "--json"]
    )
    assert r.exit_code == 0 and json.loads(r.output)["accuracy"] == b["accuracy"]


@pytest.mark.parametrize("base", ["t5", "enc"])  # enc: an encoder-only base becomes bert2bert
def test_seq2seq_student_trains_and_strips(setup, tmp_path, base):
    from transformers import AutoModelForSeq2SeqLM

    s = train(
        TrainConfig(
            min_steps=0,
            task=str(setup / "num.yaml"),
            annotations=str(setup / "num.jsonl"),
            out=str(tmp_path / "st"),
            student=str(setup / base),
            epochs=6,
            batch_size=8,
            lr=3e-3,
            mode="multitask",
            numeric="generate",
        ),
        echo=lambda *_: None,
    )
    assert s["family"] == "seq2seq"
    lab, rat = losses(s, "label_loss"), [r for r in losses(s, "rationale_loss") if r > 0]
    assert lab[-1] < lab[0] and rat[-1] < rat[0]
    out = strip_student(tmp_path / "st", tmp_path / "stripped")
    model = AutoModelForSeq2SeqLM.from_pretrained(out)
    assert model.config.is_encoder_decoder and not (out / "rationale_decoder").exists()
    assert sum(p.numel() for p in model.parameters()) < sum(
        p.numel()
        for p in RationaleStudent(model, build_rationale_decoder(model, "seq2seq"), "seq2seq", 0.5).parameters()
    )
    task, data = load_task(setup / "num.yaml"), load_examples(load_task(setup / "num.yaml"), setup / "num_test.jsonl")
    from edgedistill.evaluate import predict_labels

    assert predict_labels(tmp_path / "st", task, data) == predict_labels(out, task, data)


def test_bert2bert_starts_from_the_encoder_and_decodes_answers(setup):
    """The decoder is warm-started from the encoder's layers, and a generated answer starts after [CLS]."""
    model = build_label_model(setup / "enc", "seq2seq", None, decoder_layers=1)
    enc, dec = model.encoder.state_dict(), model.decoder.bert.state_dict()
    assert torch.equal(
        enc["encoder.layer.0.attention.self.query.weight"], dec["encoder.layer.0.attention.self.query.weight"]
    )
    assert model.config.decoder.num_hidden_layers == 1
    tok = tiny.tiny_tokenizer("bert")
    assert model.generation_config.decoder_start_token_id == tok.cls_token_id == model.config.decoder_start_token_id
    assert model.generation_config.eos_token_id == tok.sep_token_id
    ids = tok(["how many 4 dog"], return_tensors="pt")
    gen = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert gen[0, 0] == tok.cls_token_id


def test_numeric_task_refuses_an_encoder_that_cannot_decode(tmp_path, setup):
    from transformers import DistilBertConfig, DistilBertModel

    DistilBertModel(
        DistilBertConfig(vocab_size=len(tiny.tiny_tokenizer()), dim=32, n_layers=1, n_heads=2, hidden_dim=64)
    ).save_pretrained(tmp_path / "db")
    tiny.tiny_tokenizer().save_pretrained(tmp_path / "db")
    with pytest.raises(UserError, match="cannot be warm-started as a decoder"):
        train(
            TrainConfig(
                min_steps=0,
                task=str(setup / "num.yaml"),
                annotations=str(setup / "num.jsonl"),
                out=str(tmp_path / "st"),
                student=str(tmp_path / "db"),
                epochs=1,
                numeric="generate",
            ),
            echo=lambda *_: None,
        )
    assert not (tmp_path / "st").exists()


def test_multiple_choice_student(setup, tmp_path):
    s = train(
        TrainConfig(
            min_steps=0,
            task=str(setup / "mc.yaml"),
            annotations=str(setup / "mc.jsonl"),
            out=str(tmp_path / "mc"),
            student=str(setup / "enc"),
            epochs=3,
            batch_size=8,
            lr=2e-3,
            mode="multitask",
        ),
        echo=lambda *_: None,
    )
    assert s["family"] == "multiple-choice" and [r for r in losses(s, "rationale_loss") if r > 0]
    from transformers import AutoModelForMultipleChoice

    from edgedistill.evaluate import predict_labels

    out = strip_student(tmp_path / "mc", tmp_path / "mc_stripped")
    plain = AutoModelForMultipleChoice.from_pretrained(out)  # a plain transformers model, no rationale weights
    assert not (out / "rationale_decoder").exists() and not any("decoder" in n for n, _ in plain.named_parameters())
    task = load_task(setup / "mc.yaml")
    from edgedistill.data import Example

    exs = [
        Example(id=r["id"], input=r["input"], choices=r["choices"], gold=r["gold"])
        for r in (json.loads(line) for line in (setup / "mc.jsonl").read_text().splitlines()[:12])
    ]
    assert predict_labels(out, task, exs) == predict_labels(tmp_path / "mc", task, exs)


@pytest.mark.parametrize(
    "content, match",
    [
        ('{"id": "1", "input": "x", "label": "maybe", "status": "ok"}\n', r"ann.jsonl:1: label: 'maybe' is not one of"),
        ("", r"empty annotations file"),
        ('{"id": "1", "input": "x", "label": "neutral", "status": "failed"}\n', r"no usable rows"),
    ],
)
def test_bad_annotations_leave_no_student(setup, tmp_path, content, match):
    (tmp_path / "ann.jsonl").write_text(content)
    with pytest.raises(UserError, match=match):
        run(setup, "unused", annotations=str(tmp_path / "ann.jsonl"), out=str(tmp_path / "student"))
    assert not (tmp_path / "student").exists()


def test_task_mismatch_and_missing_student(setup, tmp_path):
    with pytest.raises(UserError, match="choices: missing, but the task 'qa' is multiple-choice"):
        run(setup, "x", task=str(setup / "mc.yaml"), out=str(tmp_path / "a"))
    r = CliRunner().invoke(
        main,
        [
            "train",
            "--task",
            str(setup / "task.yaml"),
            "--annotations",
            str(setup / "ann.jsonl"),
            "--out",
            str(tmp_path / "b"),
            "--student",
            str(tmp_path / "nope"),
        ],
    )
    assert r.exit_code != 0 and "does not exist" in r.output and not (tmp_path / "b").exists()


def test_torchrun_two_processes(setup, tmp_path):
    """The same command under torchrun (CPU, gloo): DDP over 2 processes, one student dir written."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "-m",
        "edgedistill.cli",
        "train",
        "--task",
        str(setup / "task.yaml"),
        "--annotations",
        str(setup / "ann.jsonl"),
        "--out",
        str(out),
        "--student",
        str(setup / "enc"),
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--min-steps",
        "0",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((out / "train.json").read_text())
    assert summary["processes"] == 2 and summary["best_checkpoint"]
    assert not list(tmp_path.glob(".ddp*"))


@pytest.mark.parametrize("base", ["t5", "enc"])
def test_shared_decoder_learns_both_tasks_in_the_label_model(setup, tmp_path, base):
    """--rationale-decoder shared (the DSS original): one decoder, nothing extra to strip."""
    s = train(
        TrainConfig(
            min_steps=0,
            task=str(setup / "num.yaml"),
            annotations=str(setup / "num.jsonl"),
            out=str(tmp_path / "st"),
            student=str(setup / base),
            epochs=6,
            batch_size=8,
            lr=3e-3,
            rationale_decoder="shared",
            mode="multitask",
            numeric="generate",
        ),
        echo=lambda *_: None,
    )
    lab, rat = losses(s, "label_loss"), [r for r in losses(s, "rationale_loss") if r > 0]
    assert lab[-1] < lab[0] and rat[-1] < rat[0]
    assert not (tmp_path / "st" / "rationale_decoder").exists()
    assert "rationale:" in (tmp_path / "st" / "README.md").read_text()
    task, data = load_task(setup / "num.yaml"), load_examples(load_task(setup / "num.yaml"), setup / "num_test.jsonl")
    from edgedistill.evaluate import predict_labels

    out = strip_student(tmp_path / "st", tmp_path / "stripped")
    assert predict_labels(tmp_path / "st", task, data) == predict_labels(out, task, data)


def test_shared_decoder_prefix_is_given_not_learned(setup):
    """The prefix tokens after the start token carry no loss: only the rationale's own tokens do."""
    model = build_label_model(setup / "t5", "seq2seq", None)
    student = RationaleStudent(model, build_rationale_decoder(model, "seq2seq", shared=True), "seq2seq", 0.5)
    assert student.decoder is model.get_decoder()
    enc = torch.randn(1, 3, model.config.d_model)
    ids, mask, has = torch.tensor([[0, 5, 6, 7, 8]]), torch.ones(1, 5, dtype=torch.long), torch.tensor([True])
    student.rationale_prefix_len = 2
    with_prefix = student.rationale_loss(enc, torch.ones(1, 3, dtype=torch.long), ids, mask, has)
    # the same two targets scored by hand: positions 3 and 4 predicted from the first 3 and 4 tokens
    hidden = model.get_decoder()(input_ids=ids[:, :-1], encoder_hidden_states=enc)[0] * model.config.d_model**-0.5
    logp = torch.log_softmax(model.get_output_embeddings()(hidden), -1)
    by_hand = -(logp[0, 2, 7] + logp[0, 3, 8]) / 2
    assert torch.allclose(with_prefix, by_hand, atol=1e-5)


def test_shared_decoder_needs_a_seq2seq_student(setup, tmp_path):
    with pytest.raises(UserError, match="only seq2seq students"):
        run(setup, "cls-shared", rationale_decoder="shared", out=str(tmp_path / "x"), mode="multitask")
    assert not (tmp_path / "x").exists()


def test_seq2seq_selection_breaks_exact_match_ties_by_tokens():
    """All-zero exact match must not hand the best checkpoint to epoch 1."""
    from types import SimpleNamespace

    from edgedistill.distill.train import _metrics

    labels = np.array([[5, 6, 7], [5, 8, -100]])
    worse = _metrics("seq2seq")(SimpleNamespace(predictions=np.array([[1, 1, 1], [1, 1, 1]]), label_ids=labels))
    better = _metrics("seq2seq")(SimpleNamespace(predictions=np.array([[5, 6, 1], [5, 1, 1]]), label_ids=labels))
    assert worse["accuracy"] == better["accuracy"] == 0 and better["selection"] > worse["selection"]
    best = _metrics("seq2seq")(SimpleNamespace(predictions=np.array([[5, 6, 7], [1, 1, 1]]), label_ids=labels))
    assert best["accuracy"] == 0.5 and best["selection"] > better["selection"]


# ---------------------------------------------------------------- rationale modes, auto, the floor


def _without_rationales(src, dst):
    rows = [json.loads(line) for line in open(src)]
    with open(dst, "w") as f:
        for r in rows:
            f.write(json.dumps({**r, "rationale": None}) + "\n")


@pytest.mark.parametrize("mode", ["rationale-teacher", "rationale-dropout"])
def test_rationale_input_modes_ship_an_input_only_label_model(setup, tmp_path, mode):
    from transformers import AutoModelForSequenceClassification

    s = run(setup, "x", mode=mode, out=str(tmp_path / "st"), epochs=20)
    assert s["mode"] == mode and s["rows"]["with_rationale"] > 0
    assert not (tmp_path / "st" / "rationale_decoder").exists()
    if mode == "rationale-teacher":
        assert s["rationale_teacher"]["elapsed_s"] > 0
        kd = [r for r in losses(s, "rationale_loss") if r > 0]
        assert kd and kd[-1] < kd[0], kd  # the student moves toward the rationale-reading teacher
    model = AutoModelForSequenceClassification.from_pretrained(strip_student(tmp_path / "st", tmp_path / "stripped"))
    assert model.config.id2label[0] == "entailment"
    task = load_task(setup / "task.yaml")
    assert evaluate_model(tmp_path / "stripped", task, load_examples(task, setup / "test.jsonl"))["accuracy"] > 0.5


def test_distill_loss_is_zero_at_the_teacher_and_grows_away_from_it(setup):
    m = _student(setup, 0.0).eval()
    m.decoder = None
    b = _batch(setup, [True, True])
    with torch.no_grad():
        out = m.label_model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], output_hidden_states=True)
    own = torch.softmax(out.logits / m.temperature, -1)
    hidden = out.hidden_states[-1][:, 0]
    same = m(
        input_ids=b["input_ids"],
        attention_mask=b["attention_mask"],
        labels=b["labels"],
        soft_labels=own,
        teacher_hidden=hidden,
    )
    assert abs(float(same["loss"])) < 1e-5
    other = m(
        input_ids=b["input_ids"],
        attention_mask=b["attention_mask"],
        labels=b["labels"],
        soft_labels=own.flip(-1),
        teacher_hidden=-hidden,
    )
    assert float(other["loss"]) > 0.5


def test_rationale_dropout_serves_the_alternative_at_its_rate():
    from edgedistill.distill.train_data import Features

    random.seed(0)
    ds = Features([{"v": 0}] * 2, [{"v": 1}, None], 0.3)
    seen = [ds[0]["v"] for _ in range(2000)]
    assert 0.25 < sum(seen) / len(seen) < 0.35 and all(ds[1]["v"] == 0 for _ in range(50))
    assert all(Features([{"v": 0}], [{"v": 1}], 1.0)[0]["v"] == 1 for _ in range(20))


def test_head_gets_its_own_learning_rate_and_layers_decay(setup):
    from edgedistill.distill.train import param_groups

    m = _student(setup, 0.5)
    groups = param_groups(m, 1e-4, 1e-2, 0.5, 0.01)
    rate = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(m.named_parameters())
    layers = m.label_model.config.num_hidden_layers
    assert rate[id(named["label_model.classifier.weight"])] == 1e-2
    assert rate[id(named["label_model.bert.pooler.dense.weight"])] == 1e-2
    assert rate[id(named[f"label_model.bert.encoder.layer.{layers - 1}.output.dense.weight"])] == 1e-4
    assert rate[id(named["label_model.bert.encoder.layer.0.output.dense.weight"])] == pytest.approx(
        1e-4 * 0.5 ** (layers - 1)
    )
    assert rate[id(named["label_model.bert.embeddings.word_embeddings.weight"])] == pytest.approx(1e-4 * 0.5**layers)
    assert sum(len(g["params"]) for g in groups) == len([p for p in m.parameters() if p.requires_grad])
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert (
        id(named["label_model.classifier.bias"]) in no_decay
        and id(named["label_model.classifier.weight"]) not in no_decay
    )


def test_auto_trains_every_mode_and_records_them(setup, tmp_path):
    # validation rows whose gold label is the next label round: a student that learned the rows gets them wrong,
    # so label-only leaves the rivals rows to win (select.rows_to_win) and every candidate is trained
    (tmp_path / "val.jsonl").write_text(
        "".join(
            json.dumps({"text": f"{LABELS[i % 3]} the dog", "label": LABELS[(i + 1) % 3]}) + "\n" for i in range(12)
        )
    )
    s = run(setup, "x", out=str(tmp_path / "st"), epochs=3, eval_data=str(tmp_path / "val.jsonl"))
    modes = [c["mode"] for c in s["candidates"]]
    assert modes == ["label-only", "multitask", "rationale-teacher", "rationale-dropout"] and "auto_skipped" not in s
    assert s["selected_by"] == "auto" and sum(c["selected"] for c in s["candidates"]) == 1
    chosen = next(c for c in s["candidates"] if c["selected"])
    assert s["mode"] == chosen["mode"] and s["val_accuracy"] == chosen["val_accuracy"]
    assert all(c["val_accuracy"] is not None and c["elapsed_s"] >= 0 for c in s["candidates"])
    saved = json.loads((tmp_path / "st" / "train.json").read_text())
    assert saved["candidates"] == s["candidates"]
    card = (tmp_path / "st" / "README.md").read_text()
    assert "| label-only" in card and "rationale-dropout" in card and "(shipped)" in card


# 40 validation rows each, as "1" = right. label-only gets the first 24 right.
_LO = "1" * 24 + "0" * 16
_NOISE = "1" * 22 + "0" * 2 + "1" * 3 + "0" * 13  # 25 right: 3 rows won, 2 lost, a coin toss
_CLEAR = "1" * 24 + "1" * 10 + "0" * 6  # 34 right: 10 won, 0 lost (p = 0.001)
_CLEARER = "1" * 23 + "0" + "1" * 12 + "0" * 4  # 35 right: 12 won, 1 lost (p = 0.002)


@pytest.mark.parametrize(
    "rows, shipped",
    [
        ({"label-only": _LO, "multitask": _LO, "rationale-teacher": "0" * 40, "rationale-dropout": _LO}, "label-only"),
        (
            {"label-only": _LO, "multitask": _NOISE, "rationale-teacher": _NOISE, "rationale-dropout": _NOISE},
            "label-only",
        ),
        (
            {"label-only": _LO, "multitask": _NOISE, "rationale-teacher": _CLEAR, "rationale-dropout": _NOISE},
            "rationale-teacher",
        ),
        (
            {"label-only": _LO, "multitask": _CLEAR, "rationale-teacher": _NOISE, "rationale-dropout": _CLEARER},
            "rationale-dropout",
        ),
        ({"label-only": _LO, "multitask": None, "rationale-teacher": _NOISE, "rationale-dropout": _LO}, "label-only"),
    ],
)
def test_auto_ships_a_rationale_mode_only_on_a_validation_win_beyond_noise(setup, tmp_path, monkeypatch, rows, shipped):
    """Ties and wins by a few rows keep label-only; a failed candidate is recorded, not shipped; of
    the modes that beat label-only beyond noise, the most accurate ships."""
    import edgedistill.distill.train as train_module  # train_auto's fits

    monkeypatch.setattr(train_module, "fit_with_retries", _fake_fits(rows))
    lines = []
    s = train(
        TrainConfig(
            min_steps=0,
            task=str(setup / "task.yaml"),
            annotations=str(setup / "ann.jsonl"),
            out=str(tmp_path / "st"),
            student=str(setup / "enc"),
            epochs=1,
            batch_size=8,
            lr=2e-3,
        ),
        echo=lines.append,
    )
    assert s["mode"] == shipped
    assert [c["mode"] for c in s["candidates"] if c.get("failed")] == [m for m, a in rows.items() if a is None]
    by = {c["mode"]: c for c in s["candidates"]}
    if rows["rationale-teacher"] == _CLEAR:
        assert by["rationale-teacher"]["vs_label_only"] == {"wins": 10, "losses": 0, "p": round(0.5**10, 4)}
        assert any(
            "rationale-teacher: validation accuracy 85.0 %; against label-only: won 10, lost 0 of the validation rows "
            "(p = 0.001)" in x
            for x in lines
        )
    card = (tmp_path / "st" / "README.md").read_text()
    assert "| label-only" in card and "reference" in card and f"| {shipped} (shipped)" in card


def _fake_fits(rows: dict, trained: list | None = None):
    """A fit_with_retries whose candidates answer the validation rows as `rows` says ("1" = right; None: the
    candidate fails), all with one real tiny model's weights; the modes it is asked for go to `trained`."""
    from edgedistill.distill.train import fit

    real = {}

    def fake(cfg, prep, echo=print):
        if trained is not None:
            trained.append(cfg.mode)
        if rows[cfg.mode] is None:
            raise UserError("every attempt ended at the floor")
        if "fit" not in real:
            real["fit"] = fit(cfg, prep, 0, 1e-3)
        bits = rows[cfg.mode]
        return (
            replace(
                real["fit"],
                final_eval={"eval_accuracy": bits.count("1") / len(bits)},
                val_correct=[b == "1" for b in bits],
            ),
            [{"elapsed_s": 1.0, "seed": 0, "epochs": cfg.epochs}],
        )

    return fake


def test_rows_to_win_is_the_rules_best_case():
    """A rival ships only when it wins rows_to_win() rows that label-only got wrong: fewer never ship, even all won."""
    from edgedistill.distill.select import best_candidate, rows_to_win

    assert rows_to_win() == 5  # one-sided: 0.5 ** 4 = 0.0625, 0.5 ** 5 = 0.031
    assert rows_to_win(0.01) == 7 and rows_to_win(1.0) == 1
    for n in range(1, 9):
        ref, rival = (
            {"mode": "label-only", "val_accuracy": 0.0, "val_correct": "0" * n},
            {"mode": "multitask", "val_accuracy": 1.0, "val_correct": "1" * n},
        )
        assert (best_candidate([ref, rival]) is rival) == (n >= rows_to_win()), n
    with pytest.raises(ValueError, match="above 0"):
        rows_to_win(0)


def test_auto_with_too_few_validation_rows_trains_label_only_and_says_why(setup, tmp_path):
    write_annotations(tmp_path / "ann32.jsonl", n=32)  # 10 % of 32: 3 validation rows
    r = CliRunner().invoke(
        main,
        [
            "train",
            "--task",
            str(setup / "task.yaml"),
            "--annotations",
            str(tmp_path / "ann32.jsonl"),
            "--out",
            str(tmp_path / "st"),
            "--student",
            str(setup / "enc"),
            "--epochs",
            "2",
            "--min-steps",
            "0",
            "--batch-size",
            "8",
        ],
    )
    assert r.exit_code == 0, r.output
    said = [line for line in r.output.splitlines() if line.startswith("auto: not training")]
    assert len(said) == 1 and "multitask, rationale-teacher, rationale-dropout" in said[0]
    assert all(x in said[0] for x in ("3 validation rows", "at least 5", "--eval-data", "--val-fraction", "now 0.1"))
    assert "auto: candidate 1/1: label-only" in r.output and "candidate 2/" not in r.output
    s = json.loads((tmp_path / "st" / "train.json").read_text())
    assert [c["mode"] for c in s["candidates"]] == ["label-only"] and s["mode"] == "label-only"
    assert {k: s["auto_skipped"][k] for k in ("modes", "validation_rows", "winnable_rows", "rows_to_win")} == {
        "modes": ["multitask", "rationale-teacher", "rationale-dropout"],
        "validation_rows": 3,
        "winnable_rows": 3,
        "rows_to_win": 5,
    }
    card = (tmp_path / "st" / "README.md").read_text()
    assert "Not trained: multitask, rationale-teacher, rationale-dropout" in card and "3 validation rows" in card
    assert "Not trained: multitask" in r.output  # the summary after training repeats it


def test_auto_without_validation_rows_ships_label_only(setup, tmp_path):
    write_annotations(tmp_path / "ann4.jsonl", n=4)  # 4 rows or fewer: none held out
    s = run(setup, "x", out=str(tmp_path / "st"), annotations=str(tmp_path / "ann4.jsonl"), epochs=1)
    assert (
        s["val_examples"] == 0 and s["mode"] == "label-only" and [c["mode"] for c in s["candidates"]] == ["label-only"]
    )
    assert s["auto_skipped"]["validation_rows"] == 0 and s["candidates"][0]["selected"]


@pytest.mark.parametrize("wrong", [4, 5])
def test_auto_trains_the_rivals_only_where_label_only_leaves_rows_to_win(setup, tmp_path, monkeypatch, wrong):
    """Once label-only is trained, its wrong validation rows are all a rival can win: under rows_to_win, the rivals
    are not trained (what ships is label-only either way); at rows_to_win, every rival is trained as before."""
    import edgedistill.distill.train as train_module  # train_auto's fits

    ref = "1" * (5 - wrong) + "0" * wrong  # 10 % of 48 rows: 5 validation rows
    rows = {"label-only": ref, "multitask": "1" * 5, "rationale-teacher": ref, "rationale-dropout": ref}
    trained, lines = [], []
    monkeypatch.setattr(train_module, "fit_with_retries", _fake_fits(rows, trained))
    s = train(
        TrainConfig(
            min_steps=0,
            task=str(setup / "task.yaml"),
            annotations=str(setup / "ann.jsonl"),
            out=str(tmp_path / "st"),
            student=str(setup / "enc"),
            epochs=1,
            batch_size=8,
            lr=2e-3,
        ),
        echo=lines.append,
    )
    if wrong < 5:
        assert trained == ["label-only"] and s["mode"] == "label-only"
        assert s["auto_skipped"]["winnable_rows"] == 4 and s["auto_skipped"]["validation_rows"] == 5
        assert any("label-only got 4 of the 5 validation rows wrong" in x and "at least 5" in x for x in lines)
    else:
        assert trained == ["label-only", "multitask", "rationale-teacher", "rationale-dropout"]
        assert "auto_skipped" not in s
        assert s["mode"] == "multitask"  # won all 5 rows label-only got wrong: p = 0.031


def test_paired_win_counts_disagreements_and_gives_the_exact_sign_test():
    from edgedistill.distill.select import paired_win

    assert paired_win("1100", "1010") == {"wins": 1, "losses": 1, "p": 0.75}  # P(X >= 1 | n = 2) = 3/4
    assert paired_win("11111", "00000") == {"wins": 5, "losses": 0, "p": round(1 / 32, 4)}
    assert paired_win("0000", "1111")["p"] == 1.0
    assert paired_win("1010", "1010") == {"wins": 0, "losses": 0, "p": 1.0}  # identical answers: no evidence either way
    with pytest.raises(ValueError, match="same rows"):
        paired_win("10", "101")


def test_rationale_modes_without_rationales_fail_clearly_and_auto_trains_label_only(setup, tmp_path):
    _without_rationales(setup / "ann.jsonl", tmp_path / "bare.jsonl")
    for mode in ("multitask", "rationale-teacher", "rationale-dropout"):
        r = CliRunner().invoke(
            main,
            [
                "train",
                "--task",
                str(setup / "task.yaml"),
                "--annotations",
                str(tmp_path / "bare.jsonl"),
                "--out",
                str(tmp_path / mode),
                "--student",
                str(setup / "enc"),
                "--mode",
                mode,
                "--epochs",
                "1",
            ],
        )
        assert (
            r.exit_code != 0
            and f"--mode {mode}" in r.output
            and "no rationales" in r.output
            and "--mode label-only" in r.output
        )
        assert not (tmp_path / mode).exists()
    lines = []
    s = train(
        TrainConfig(
            min_steps=0,
            task=str(setup / "task.yaml"),
            annotations=str(tmp_path / "bare.jsonl"),
            out=str(tmp_path / "auto"),
            student=str(setup / "enc"),
            epochs=2,
            batch_size=8,
            lr=2e-3,
        ),
        echo=lines.append,
    )
    assert [c["mode"] for c in s["candidates"]] == ["label-only"] and s["mode"] == "label-only"
    assert any("no rationales" in line and "label-only" in line for line in lines)


def test_seq2seq_students_refuse_input_changing_modes(setup, tmp_path):
    with pytest.raises(UserError, match="--mode rationale-teacher: needs a classification or multiple-choice student"):
        train(
            TrainConfig(
                min_steps=0,
                task=str(setup / "num.yaml"),
                annotations=str(setup / "num.jsonl"),
                out=str(tmp_path / "st"),
                student=str(setup / "t5"),
                mode="rationale-teacher",
                epochs=1,
            ),
            echo=lambda *_: None,
        )
    from edgedistill.distill.select import candidate_modes

    modes, skipped = candidate_modes(TrainConfig(task="", annotations="", out=""), "seq2seq", 5, "t5")
    assert modes == ["label-only", "multitask"] and set(skipped) == {"rationale-teacher", "rationale-dropout"}
    with pytest.raises(UserError, match="--head-lr / --layer-decay: only for classification and multiple-choice"):
        train(
            TrainConfig(
                min_steps=0,
                task=str(setup / "num.yaml"),
                annotations=str(setup / "num.jsonl"),
                out=str(tmp_path / "st"),
                student=str(setup / "t5"),
                mode="label-only",
                layer_decay=0.8,
                epochs=1,
            ),
            echo=lambda *_: None,
        )
    with pytest.raises(UserError, match="--candidates: 'standard'"):
        run(setup, "x", candidates=["label-only", "standard"], out=str(tmp_path / "c"))


def test_floor_rule():
    from edgedistill.distill.train import _at_floor

    ev = {"eval_accuracy": 0.40, "eval_floor": 0.40, "eval_rows": 100, "eval_one_label": 0.5}
    assert _at_floor(ev, "sequence-classification")
    assert not _at_floor({**ev, "eval_accuracy": 0.45}, "sequence-classification")
    assert _at_floor({**ev, "eval_accuracy": 0.41, "eval_one_label": 0.92}, "sequence-classification")  # one class
    # mostly one label but clearly better than always giving it: a good student of skewed labels
    assert not _at_floor(
        {**ev, "eval_floor": 0.75, "eval_accuracy": 0.85, "eval_one_label": 0.92}, "sequence-classification"
    )
    assert not _at_floor({**ev, "eval_rows": 10}, "sequence-classification")  # too few rows to judge
    assert not _at_floor({**ev, "eval_floor": 0.85, "eval_accuracy": 0.85}, "sequence-classification")  # skewed labels
    assert not _at_floor(ev, "seq2seq")


def test_multiple_choice_floor_is_chance_not_the_commonest_gold_position():
    """CQA, 300 rows, seed 2: 29 validation rows whose commonest gold position held 34 % refused every
    mode at "the floor", though each choice is scored alone and no student can learn a position."""
    from types import SimpleNamespace

    from edgedistill.distill.train import _at_floor, _chance, _metrics

    rows = [SimpleNamespace(choices=list("abcde"))] * 29
    labels = np.array([0] * 10 + [1, 2, 3, 4] * 4 + [1, 2, 3])  # position 0 holds 10 / 29 = 34 %
    learner = labels.copy()
    learner[:19] = (learner[:19] + 1) % 5  # 10 / 29 right (34 %): a weak learner, well above chance
    m = _metrics("multiple-choice", _chance(rows))(SimpleNamespace(predictions=learner, label_ids=labels))
    assert m["floor"] == pytest.approx(0.2) and m["accuracy"] == pytest.approx(10 / 29)
    ev = {f"eval_{k}": v for k, v in m.items()}
    assert not _at_floor(ev, "multiple-choice")
    # the classification rule on the same numbers (floor = commonest label, 34 %) would have refused it
    cls = _metrics("sequence-classification")(SimpleNamespace(predictions=learner, label_ids=labels))
    assert _at_floor({f"eval_{k}": v for k, v in cls.items()}, "sequence-classification")
    # a tie-breaking scorer (every answer at position 0) is caught, though it is "right" 34 % of the time
    tied = _metrics("multiple-choice", _chance(rows))(SimpleNamespace(predictions=np.zeros(29, int), label_ids=labels))
    assert _at_floor({f"eval_{k}": v for k, v in tied.items()}, "multiple-choice")
    assert _at_floor({**ev, "eval_accuracy": 0.2}, "multiple-choice")


def test_a_run_at_the_floor_is_retried_then_refused(setup, tmp_path, monkeypatch):
    import edgedistill.distill.train as tr

    real, calls = tr.fit_mode, []

    def floor_first(cfg, prep, seed, lr):
        f = real(cfg, prep, seed, lr)
        calls.append((seed, lr, cfg.epochs))
        ok = len(calls) > 1 and cfg.retries > 0
        return tr.replace(f, final_eval={"eval_accuracy": 0.9 if ok else 0.34, "eval_floor": 0.34, "eval_rows": 50})

    monkeypatch.setattr(tr, "fit_mode", floor_first)
    s = run(setup, "x", mode="label-only", out=str(tmp_path / "ok"), epochs=1, lr=1e-3, seed=5, retries=2)
    # the retry: the next seed and twice the steps (a collapse at few rows is a run stopped too soon)
    assert [(a["seed"], a["epochs"], a["at_floor"]) for a in s["attempts"]] == [(5, 1, True), (6, 2, False)] and calls[
        1
    ] == (6, 1e-3, 2)
    assert s["epochs"] == 2
    calls.clear()
    with pytest.raises(
        UserError, match="every attempt \\(1\\) ended no better than always answering the commonest label"
    ):
        run(setup, "x", mode="label-only", out=str(tmp_path / "bad"), epochs=1, retries=0)
    assert not (tmp_path / "bad").exists()


def test_few_rows_train_more_epochs_up_to_min_steps(setup, tmp_path, monkeypatch):
    from edgedistill.distill.train import epochs_for

    cfg = TrainConfig(task="", annotations="", out="", epochs=3, batch_size=16, min_steps=150)
    assert epochs_for(cfg, 180) == 13  # 12 steps an epoch: 180 e-SNLI rows, the curves' smallest size
    assert epochs_for(cfg, 2000) == 3 and epochs_for(replace(cfg, min_steps=0), 180) == 3
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun: each step takes a batch on every process
    assert epochs_for(cfg, 180) == 25
    monkeypatch.delenv("WORLD_SIZE")
    printed = []
    s = train(
        TrainConfig(
            min_steps=20,
            task=str(setup / "task.yaml"),
            annotations=str(setup / "ann.jsonl"),
            out=str(tmp_path / "s"),
            student=str(setup / "enc"),
            mode="label-only",
            epochs=1,
            batch_size=8,
            progress=False,
        ),
        echo=printed.append,
    )
    steps = max(h["step"] for h in s["history"])
    assert s["epochs"] == 4 and 20 <= steps <= 24, (s["epochs"], steps)  # 43 rows: 6 steps an epoch
    assert any(
        "43 training rows give 6 optimizer steps an epoch; training 4 epochs instead of 1, for at least 20 steps"
        in line
        for line in printed
    ), printed
    assert json.loads((tmp_path / "s" / "train.json").read_text())["config"]["min_steps"] == 20
    r = CliRunner().invoke(
        main,
        [
            "train",
            "--task",
            str(setup / "task.yaml"),
            "--annotations",
            str(setup / "ann.jsonl"),
            "--out",
            str(tmp_path / "neg"),
            "--min-steps",
            "-1",
        ],
    )
    assert r.exit_code == 2 and "--min-steps" in r.output and not (tmp_path / "neg").exists()


def test_too_few_validation_rows_to_show_the_floor_is_beaten_are_said(setup, tmp_path, monkeypatch):
    """e-SNLI, 200 rows, seed 3: 12 of 20 validation rows right passed the floor rule (55 %) and the run tested
    at 34.4 %, under the floor (benchmarks/results/min_steps.md). train says when its validation shows nothing."""
    import edgedistill.distill.train as tr
    from edgedistill.distill.model_card import floor_warning
    from edgedistill.distill.train import summary_lines

    assert tr.binomial_tail(12, 20, 0.55) == pytest.approx(0.41430, abs=1e-5)  # P(X >= 12), X ~ Binomial(20, 0.55)
    assert tr.binomial_tail(15, 20, 0.5) == pytest.approx(0.020695, abs=1e-6) and tr.binomial_tail(
        0, 7, 0.3
    ) == pytest.approx(1)
    weak = tr.floor_evidence({"eval_floor": 0.55}, [True] * 12 + [False] * 8)
    assert weak == {"correct": 12, "rows": 20, "floor": 0.55, "p": 0.4143, "shown": False}
    assert tr.floor_evidence({"eval_floor": 0.2}, [True] * 45 + [False] * 55)[
        "shown"
    ]  # CQA-like: 45 % of 100, chance 20 %
    assert (
        tr.floor_evidence({}, [True]) is None and tr.floor_evidence({"eval_floor": 0.5}, None) is None
    )  # seq2seq, no validation
    assert floor_warning({**weak, "shown": True}, "classification") is None

    real = tr.fit_mode

    def validated(correct):
        def fit(cfg, prep, seed, lr):
            f = real(cfg, prep, seed, lr)
            return tr.replace(
                f,
                final_eval={
                    "eval_accuracy": sum(correct) / len(correct),
                    "eval_floor": 0.55,
                    "eval_rows": len(correct),
                },
                val_correct=correct,
            )

        return fit

    for correct, warned in (([True] * 12 + [False] * 8, True), ([True] * 19 + [False], False)):
        monkeypatch.setattr(tr, "fit_mode", validated(correct))
        printed, out = [], tmp_path / str(warned)
        s = train(
            TrainConfig(
                task=str(setup / "task.yaml"),
                annotations=str(setup / "ann.jsonl"),
                out=str(out),
                student=str(setup / "enc"),
                mode="label-only",
                epochs=1,
                batch_size=8,
                progress=False,
                min_steps=0,
            ),
            echo=printed.append,
        )
        warnings = [line for line in printed if line.startswith("warning: ")]
        saved = json.loads((out / "train.json").read_text())["val_vs_floor"]
        assert saved["shown"] is not warned and saved["correct"] == sum(correct)
        line = next(x for x in summary_lines(s, out) if "best val accuracy" in x)
        card = (out / "README.md").read_text()
        if warned:
            assert warnings == [
                "warning: 20 validation rows cannot show this student beats always answering the commonest label "
                "(55.0 %): it got 12 right (p = 0.41), so on new inputs it may do no better. More annotated rows "
                "(or `train --eval-data` with more gold rows) give a student that can be checked."
            ]
            assert "(12 of 20 rows; floor 55.0 %: not shown, p = 0.41)" in line and "not shown, p = 0.41" in card
        else:
            assert (
                not warnings
                and "(19 of 20 rows; floor 55.0 %: beaten, p < 0.001)" in line
                and "beaten, p < 0.001" in card
            )


def test_the_run_report_repeats_the_floor_warning(tmp_path):
    from edgedistill.pipeline import load_pipeline
    from edgedistill.run_report import write_report

    (tmp_path / "task.yaml").write_text(NLI_TASK)
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": "a dog", "label": "neutral"}) + "\n")
    (tmp_path / "p.yaml").write_text("task: task.yaml\ndata: d.jsonl\nrun_dir: run\n")
    (tmp_path / "run" / "student").mkdir(parents=True)
    train_json = {
        "family": "classification",
        "mode": "label-only",
        "val_vs_floor": {"correct": 12, "rows": 20, "floor": 0.55, "p": 0.4143, "shown": False},
    }
    (tmp_path / "run" / "student" / "train.json").write_text(json.dumps(train_json))
    report = write_report(load_pipeline(tmp_path / "p.yaml"), {}).read_text()
    assert (
        "**Warning: the student.** 20 validation rows cannot show this student beats always answering the "
        "commonest label" in report
    )
    train_json["val_vs_floor"]["shown"] = True
    (tmp_path / "run" / "student" / "train.json").write_text(json.dumps(train_json))
    assert "Warning" not in write_report(load_pipeline(tmp_path / "p.yaml"), {}).read_text()


def test_the_run_report_says_which_candidates_auto_did_not_train(tmp_path):
    from edgedistill.pipeline import load_pipeline
    from edgedistill.run_report import write_report

    (tmp_path / "task.yaml").write_text(NLI_TASK)
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": "a dog", "label": "neutral"}) + "\n")
    (tmp_path / "p.yaml").write_text("task: task.yaml\ndata: d.jsonl\nrun_dir: run\n")
    (tmp_path / "run" / "student").mkdir(parents=True)
    skipped = {
        "modes": ["multitask"],
        "validation_rows": 3,
        "winnable_rows": 3,
        "rows_to_win": 5,
        "reason": "there are 3 validation rows, so a rival can win at most 3",
        "fix": "--eval-data",
    }
    train_json = {
        "family": "classification",
        "mode": "label-only",
        "val_examples": 3,
        "auto_skipped": skipped,
        "candidates": [{"mode": "label-only", "val_accuracy": 1.0, "elapsed_s": 1.0, "selected": True}],
    }
    (tmp_path / "run" / "student" / "train.json").write_text(json.dumps(train_json))
    report = write_report(load_pipeline(tmp_path / "p.yaml"), {}).read_text()
    assert "Not trained: multitask, which could not ship: there are 3 validation rows" in report


# ---------------------------------------------------------------- the teacher's label distribution (label_probs)


def test_label_probs_are_read_in_label_order_and_checked():
    from edgedistill.distill.train_data import label_probs

    assert label_probs({"neutral": 0.25, "entailment": 0.75}, LABELS, "a:1") == [0.75, 0.25, 0.0]
    with pytest.raises(UserError, match=r"a:3: label_probs: 'maybe' is not one of"):
        label_probs({"maybe": 1.0}, LABELS, "a:3")
    with pytest.raises(UserError, match=r"a:4: label_probs: the probabilities sum to 0.5000, not 1"):
        label_probs({"neutral": 0.5}, LABELS, "a:4")
    with pytest.raises(UserError, match=r"a:5: label_probs: expected an object"):
        label_probs([0.5, 0.5], LABELS, "a:5")
    # a choice listed twice (CQA has some) shares its probability between its copies
    assert label_probs({"car door": 0.6, "gate": 0.4}, ["car door", "gate", "car door"], "a:6") == [0.3, 0.4, 0.3]


def test_soft_label_loss_blends_hard_and_teacher_distribution(setup):
    m = _student(setup, 1.0)
    logits, labels = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]]), torch.tensor([0, 2])
    hard = torch.nn.functional.cross_entropy(logits, labels)
    one_hot = torch.nn.functional.one_hot(labels, 3).float()
    # a teacher sure of the hard label: KL to it is the cross-entropy itself
    assert torch.allclose(m.label_loss(logits, labels, one_hot, torch.tensor([True, True])), hard, atol=1e-6)
    uniform = torch.full((2, 3), 1 / 3)
    blended = m.label_loss(logits, labels, uniform, torch.tensor([True, True]))
    kl = (uniform * (uniform.log() - torch.log_softmax(logits, -1))).sum(-1)
    assert torch.allclose(
        blended, (0.5 * torch.nn.functional.cross_entropy(logits, labels, reduction="none") + 0.5 * kl).mean()
    )
    # rows without a distribution train on the hard label alone
    assert torch.allclose(m.label_loss(logits, labels, uniform, torch.tensor([False, False])), hard)
    m.soft_weight = 0.0
    assert torch.allclose(m.label_loss(logits, labels, uniform, torch.tensor([True, True])), hard)


def test_training_uses_label_probs_and_drops_unsure_rows(setup, tmp_path):
    rows = [json.loads(line) for line in open(setup / "ann.jsonl")]
    with open(tmp_path / "ann.jsonl", "w") as f:
        for i, r in enumerate(rows):
            if i % 3:  # two rows in three carry the teacher's distribution, one in those is unsure
                p = 0.9 if i % 3 == 1 else 0.4
                others = [lab for lab in LABELS if lab != r["label"]]
                r["label_probs"] = {r["label"]: p, others[0]: 1 - p}
            f.write(json.dumps(r) + "\n")
    s = run(
        setup,
        "x",
        mode="label-only",
        annotations=str(tmp_path / "ann.jsonl"),
        out=str(tmp_path / "st"),
        epochs=2,
        min_confidence=0.5,
    )
    assert s["rows"]["skipped_low_confidence"] == 16 and s["rows"]["with_probs"] == 16
    # every mode takes them, the rationale-reading teacher's pass included
    for mode in ("rationale-teacher", "rationale-dropout", "multitask"):
        assert (
            run(setup, "x", mode=mode, annotations=str(tmp_path / "ann.jsonl"), out=str(tmp_path / mode), epochs=1)[
                "mode"
            ]
            == mode
        )
    assert s["train_examples"] + s["val_examples"] == len(rows) - 16
    (tmp_path / "bad.jsonl").write_text(json.dumps({**rows[0], "label_probs": {"entailment": 2.0}}) + "\n")
    with pytest.raises(UserError, match=r"bad.jsonl:1: label_probs: every value must be a probability"):
        run(setup, "x", mode="label-only", annotations=str(tmp_path / "bad.jsonl"), out=str(tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("mode", ["rationale-teacher", "rationale-dropout"])
def test_rationale_input_modes_on_a_multiple_choice_student(setup, tmp_path, mode):
    s = train(
        TrainConfig(
            min_steps=0,
            task=str(setup / "mc.yaml"),
            annotations=str(setup / "mc.jsonl"),
            out=str(tmp_path / "mc"),
            student=str(setup / "enc"),
            epochs=3,
            batch_size=8,
            lr=2e-3,
            mode=mode,
            progress=False,
        ),
        echo=lambda *_: None,
    )
    assert s["family"] == "multiple-choice" and s["mode"] == mode
    task = load_task(setup / "mc.yaml")
    from edgedistill.data import Example
    from edgedistill.evaluate import predict_labels

    rows = [json.loads(line) for line in open(setup / "mc.jsonl")]
    exs = [Example(id=r["id"], input=r["input"], choices=r["choices"], gold=r["gold"]) for r in rows]
    preds = predict_labels(strip_student(tmp_path / "mc", tmp_path / "stripped"), task, exs)
    assert len(preds) == len(rows) and set(preds) <= {"park", "house", "street"}
