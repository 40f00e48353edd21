"""The label head's pooling: mean token state for bases pretrained that way (all-MiniLM-L6-v2), kept through
train, strip, compress and export (distill.student.pooling_for / load_label_model / exportable)."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import tiny
import torch
from test_train import NLI_TASK, write_annotations

from edgedistill.deploy.export import ExportConfig, export_bundle
from edgedistill.distill.strip import strip_student
from edgedistill.distill.student import build_label_model, load_label_model, pooling_for
from edgedistill.distill.train import TrainConfig, train
from edgedistill.errors import UserError
from edgedistill.evaluate import predict_labels
from edgedistill.task import load_task


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    d = tmp_path_factory.mktemp("pooling")
    tiny.tiny_sentence_encoder_dir(d / "sent")
    tiny.tiny_mpnet_sentence_encoder_dir(d / "mpnet")
    tiny.tiny_encoder_dir(d / "plain")
    (d / "task.yaml").write_text(NLI_TASK)
    write_annotations(d / "ann.jsonl")
    return d


def _train(bases, out, **kw):
    args = dict(
        task=str(bases / "task.yaml"),
        annotations=str(bases / "ann.jsonl"),
        out=str(out),
        student=str(bases / "sent"),
        mode="label-only",
        epochs=6,
        batch_size=8,
        lr=2e-3,
        head_lr=2e-3,
        layer_decay=1.0,
        progress=False,
        min_steps=0,
    )
    return train(TrainConfig(**{**args, **kw}), echo=lambda *_: None)


def test_auto_pools_as_the_base_was_pretrained(bases):
    assert pooling_for(bases / "sent") == "mean" and pooling_for(bases / "mpnet") == "mean"  # 1_Pooling: mean tokens
    assert pooling_for(bases / "plain") == "cls"  # no sentence-transformers pooling recorded
    assert pooling_for(bases / "sent", "cls") == "cls" and pooling_for(bases / "plain", "mean") == "mean"
    m = build_label_model(bases / "sent", "sequence-classification", ["a", "b", "c"], pooling="mean")
    assert m.bert.pooler is None and m.config.classifier_pooling == "mean"
    m.save_pretrained(bases / "built")
    assert pooling_for(bases / "built") == "mean"  # a trained or compressed base keeps its own
    assert pooling_for(bases / "sent", pairs=True) == "two-tower"  # (question, choice) pairs: the base's own comparison
    assert pooling_for(bases / "built", pairs=True) == "mean" and pooling_for(bases / "plain", pairs=True) == "cls"


def test_mean_pooled_logits_ignore_padding_and_differ_from_cls(bases):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    mean = build_label_model(bases / "sent", "sequence-classification", ["a", "b", "c"], pooling="mean").eval()
    tok = tiny.tiny_tokenizer()
    both = tok(["the dog", "the dog is happy in the park with a cat"], padding=True, return_tensors="pt")
    with torch.no_grad():
        padded = mean(**both).logits[0]
        alone = mean(**tok(["the dog"], return_tensors="pt")).logits[0]
        by_hand = mean.classifier(mean.bert(**tok(["the dog"], return_tensors="pt")).last_hidden_state.mean(1))[0]
    assert torch.allclose(padded, alone, atol=1e-5) and torch.allclose(alone, by_hand, atol=1e-5)
    mean.save_pretrained(bases / "m")
    plain = AutoModelForSequenceClassification.from_pretrained(bases / "m").eval()  # transformers' class reads [CLS]
    with torch.no_grad():
        assert not torch.allclose(plain(**both).logits[0], padded, atol=1e-3)
        assert torch.equal(load_label_model(bases / "m", "sequence-classification").eval()(**both).logits[0], padded)


@pytest.mark.parametrize("base", ["sent", "mpnet"])  # a BERT and an MPNet sentence encoder
def test_mean_pooled_student_trains_strips_and_exports_its_own_head(bases, tmp_path, base):
    s = _train(bases, tmp_path / "student", student=str(bases / base))
    assert (
        s["pooling"] == "mean"
        and json.loads((tmp_path / "student" / "config.json").read_text())["classifier_pooling"] == "mean"
    )
    task = load_task(bases / "task.yaml")
    stripped = strip_student(tmp_path / "student", tmp_path / "stripped")
    m = export_bundle(
        ExportConfig(
            model=str(stripped),
            out=str(tmp_path / "bundle"),
            quantize="none",
            parity_data=str(bases / "ann.jsonl"),
            parity_samples=40,
        ),
        echo=lambda *_: None,
    )
    # parity compares the ONNX graph with the mean-pooled torch model: a [CLS] export would not match
    assert m["parity"]["fp32_max_abs_logit_diff"] < 1e-4
    rows = [json.loads(line) for line in (bases / "ann.jsonl").read_text().splitlines()]
    from edgedistill.data import Example

    exs = [Example(id=r["id"], input=r["input"], choices=None, gold=r["gold"]) for r in rows]
    assert predict_labels(tmp_path / "bundle", task, exs) == predict_labels(stripped, task, exs)
    assert np.mean([p == e.gold for p, e in zip(predict_labels(stripped, task, exs), exs)]) > 0.6


def watch_training(monkeypatch):
    """What a training run did, seen from inside it: the label model as training ended with it (the one
    train.save_label_model writes into the student dir), and every encoded row the Trainer trained on (a row its
    training dataset, train_data.Features, served; not the validation rows)."""
    from transformers import Trainer

    from edgedistill.distill import train as train_module
    from edgedistill.distill import train_data

    trained, served = [], []
    save, serve, loader = train_module.save_label_model, train_data.Features.__getitem__, Trainer.get_train_dataloader

    def save_and_keep(model, out):
        trained.append(copy.deepcopy(model).eval())
        save(model, out)

    def training_loader(self):
        self.train_dataset.trains = True
        return loader(self)

    def serve_and_keep(self, i):
        item = serve(self, i)
        if getattr(self, "trains", False):
            served.append(item)
        return item

    monkeypatch.setattr(train_module, "save_label_model", save_and_keep)
    monkeypatch.setattr(Trainer, "get_train_dataloader", training_loader)
    monkeypatch.setattr(train_data.Features, "__getitem__", serve_and_keep)
    return trained, served


def rationales_read(served, student_dir, annotations) -> int:
    """How many rows trained on held a rationale of `annotations` in their input (a multiple-choice row: in its first
    pair), as train_data.with_rationale_input appends it: `input\\nExplanation: RATIONALE`."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(student_dir)
    rationales = {json.loads(line)["rationale"] for line in Path(annotations).read_text().splitlines()} - {None}

    def text(item):
        ids = item["input_ids"]
        return tok.decode(ids[0] if isinstance(ids[0], list) else ids)

    return sum(any(f": {r}" in text(item) for r in rationales) for item in served)


def assert_the_rationales_did_their_part(summary, mode, served, student_dir, annotations):
    """What each rationale mode does with the teacher's rationales, seen in its run: multitask's decoder learned to
    write them (its loss fell, and its cross-attention, which starts at zero, now reads the encoder) while the
    encoder read the input alone; rationale-teacher's teacher trained on them and the student's distance to that
    teacher fell; rationale-dropout trained on some rows with their rationale and on the rest without."""
    rationale_loss = [h["rationale_loss"] for h in summary["history"] if h.get("rationale_loss")]  # the nonzero ones
    read = rationales_read(served, student_dir, annotations)
    if mode in ("multitask", "rationale-teacher"):
        assert len(rationale_loss) >= 6 and np.mean(rationale_loss[-3:]) < np.mean(rationale_loss[:3]), rationale_loss
    if mode == "multitask":
        decoder = torch.load(Path(student_dir) / "rationale_decoder" / "decoder.pt")
        cross = [w for k, w in decoder.items() if k.endswith("crossattention.output.dense.weight")]
        assert cross and all(w.abs().max() > 0 for w in cross)
        assert read == 0
    elif mode == "rationale-teacher":
        assert summary["rationale_teacher"]["val_reads_rationales"]
        assert 0 < read < len(served)  # the teacher's rows (those with a rationale), not the student's
    else:
        assert not rationale_loss and 0 < read < len(served)


@pytest.mark.parametrize("mode", ["rationale-teacher", "multitask", "rationale-dropout"])
def test_rationale_modes_train_a_mean_pooled_student(bases, tmp_path, monkeypatch, mode):
    """Each rationale mode does its part on a mean-pooled student, and the head training ended with, which strip
    ships unchanged, reads the mean of the token states (padding not read)."""
    trained, served = watch_training(monkeypatch)
    s = _train(bases, tmp_path / "s", mode=mode, epochs=2)
    assert s["pooling"] == "mean" and s["mode"] == mode
    assert_the_rationales_did_their_part(s, mode, served, tmp_path / "s", bases / "ann.jsonl")
    stripped = strip_student(tmp_path / "s", tmp_path / "stripped")
    model = load_label_model(stripped, "sequence-classification").eval()
    tok = tiny.tiny_tokenizer()
    both = tok(["the dog", "the dog is happy in the park with a cat"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**both).logits
        assert torch.allclose(trained[-1](**both).logits, logits, atol=1e-5)  # what training ended with ships
        alone = model(**tok(["the dog"], return_tensors="pt")).logits[0]
        states, mask = model.bert(**both).last_hidden_state, both["attention_mask"][..., None]
        by_hand = model.classifier((states * mask).sum(1) / mask.sum(1))
    assert torch.allclose(logits[0], alone, atol=1e-5) and torch.allclose(logits, by_hand, atol=1e-5)


def test_multiple_choice_student_pools_each_choice(bases, tmp_path):
    (bases / "mc.yaml").write_text('name: qa\ntype: multiple-choice\ninput: "{text}"\nchoices: choices\ngold: label\n')
    with open(bases / "mc.jsonl", "w") as f:
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
                        "rationale": f"the dog is at the {choices[i % 3]}",
                    }
                )
                + "\n"
            )
    s = _train(
        bases,
        tmp_path / "mc",
        task=str(bases / "mc.yaml"),
        annotations=str(bases / "mc.jsonl"),
        mode="rationale-teacher",
        epochs=2,
        pooling="mean",
    )
    assert s["pooling"] == "mean" and s["family"] == "multiple-choice"
    stripped = strip_student(tmp_path / "mc", tmp_path / "mc_stripped")
    # each choice is scored from the mean state of its own (question, choice) text
    model = load_label_model(stripped, "multiple-choice").eval()
    pairs = tiny.tiny_tokenizer()(
        ["where is the dog"] * 3, ["park", "the big house", "street"], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        logits = model(**{k: v[None] for k, v in pairs.items()}).logits[0]
        states, mask = model.bert(**pairs).last_hidden_state, pairs["attention_mask"][..., None]
        by_hand = model.classifier((states * mask).sum(1) / mask.sum(1))[:, 0]
    assert torch.allclose(logits, by_hand, atol=1e-5)
    m = export_bundle(
        ExportConfig(
            model=str(stripped),
            out=str(tmp_path / "b"),
            quantize="none",
            parity_data=str(bases / "mc.jsonl"),
            parity_samples=12,
        ),
        echo=lambda *_: None,
    )
    assert m["parity"]["fp32_max_abs_logit_diff"] < 1e-4


def test_pooling_choice_errors(bases, tmp_path):
    with pytest.raises(UserError, match="--pooling"):
        _train(bases, tmp_path / "x", pooling="max")
    (bases / "num.yaml").write_text('name: math\ntype: numeric\ninput: "{text}"\ngold: label\n')
    with pytest.raises(UserError, match="--pooling mean: only classification and multiple-choice"):
        _train(
            bases,
            tmp_path / "y",
            task=str(bases / "num.yaml"),
            pooling="mean",
            head_lr=None,
            layer_decay=None,
            numeric="generate",
        )
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
