"""A student, stripped or compressed dir loads outside edgedistill: transformers' Auto class with
trust_remote_code=True gives the logits edgedistill's own loader gives, for every head and family, and a load
without it is refused wherever transformers has no class for the head (issue 42)."""

import json

import pytest
import tiny
import torch
from test_train import LABELS, NLI_TASK, write_annotations
from transformers import (
    AutoModelForMultipleChoice,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

from edgedistill.compress.smaller import drop_layers
from edgedistill.compress.vocabulary import trim_vocabulary
from edgedistill.distill.strip import strip_student
from edgedistill.distill.student import build_label_model, load_label_model, pair_template, save_label_model
from edgedistill.distill.train import TrainConfig, train
from edgedistill.errors import UserError
from edgedistill.model_dir import load_config, write_meta

AUTO = {
    "sequence-classification": AutoModelForSequenceClassification,
    "multiple-choice": AutoModelForMultipleChoice,
    "seq2seq": AutoModelForSeq2SeqLM,
}
CODE = "modeling_edgedistill.py"
TEXTS = ["the dog is happy", "a cat sat in the park [SEP] the man is sitting on my house"]  # a [SEP]: two-tower's parts
QUESTIONS = [
    ("where is the dog", ["park", "the big house", "street"]),
    ("the cat is happy in the red car", ["yes", "no", "maybe"]),
]


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    d = tmp_path_factory.mktemp("load")
    tiny.tiny_sentence_encoder_dir(d / "bert")  # pools by the token mean, as all-MiniLM-L6-v2
    tiny.tiny_mpnet_sentence_encoder_dir(d / "mpnet")
    tiny.tiny_t5_dir(d / "t5")
    return d


def _student(base, family: str, pooling: str, path, save=save_label_model):
    """A student dir as train writes it (random head weights), from base."""
    torch.manual_seed(0)
    labels = LABELS if family == "sequence-classification" else None
    model = build_label_model(base, family, labels, pooling=pooling).eval()
    save(model, path)
    pair_template(AutoTokenizer.from_pretrained(base), pooling).save_pretrained(path)
    write_meta(path, {"kind": "student", "family": family, "max_length": 64, "labels": labels, "mode": "label-only"})
    return path


def _inputs(model_dir, family: str) -> dict:
    """A padded batch for model_dir's tokenizer: texts, (question, choice) pairs as (rows, choices, tokens), or texts
    with a decoder prompt."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    if family == "multiple-choice":
        enc = tok(
            [q for q, cs in QUESTIONS for _ in cs],
            [c for _, cs in QUESTIONS for c in cs],
            padding=True,
            return_tensors="pt",
        )
        return {k: v.view(len(QUESTIONS), -1, v.shape[-1]) for k, v in enc.items()}
    enc = dict(tok(TEXTS, padding=True, return_tensors="pt"))
    if family == "seq2seq":
        enc["decoder_input_ids"] = tok(["( 84 / 2 )"] * len(TEXTS), return_tensors="pt")["input_ids"]
    return enc


def _logits(model, inputs):
    with torch.no_grad():
        return model.eval()(**inputs).logits


def _max_diff(model_dir, family: str, **load) -> float:
    """max |logit difference| between transformers' Auto class and edgedistill's own loader on model_dir."""
    inputs = _inputs(model_dir, family)
    theirs = _logits(AUTO[family].from_pretrained(model_dir, **load), inputs)
    ours = _logits(load_label_model(model_dir, family), inputs)
    return float((theirs - ours).abs().max())


HEADS = [
    ("bert", family, pooling)
    for family in ("sequence-classification", "multiple-choice")
    for pooling in ("cls", "mean", "two-tower")
]
HEADS += [
    ("mpnet", family, pooling)
    for family in ("sequence-classification", "multiple-choice")
    for pooling in ("mean", "two-tower")
]


@pytest.mark.parametrize("base,family,pooling", HEADS)
def test_transformers_loads_each_head_as_edgedistill_does(bases, tmp_path, base, family, pooling):
    stripped = strip_student(_student(bases / base, family, pooling, tmp_path / "student"), tmp_path / "stripped")
    assert _max_diff(stripped, family, trust_remote_code=True) <= 1e-5
    config = json.loads((stripped / "config.json").read_text())
    if pooling == "cls":  # transformers' own class: no code carried, and a plain load is the same model
        assert not (stripped / CODE).exists() and "auto_map" not in config
        assert _max_diff(stripped, family) <= 1e-5
        return
    assert (stripped / CODE).exists() and config["classifier_pooling"] == pooling
    for refused in ({}, {"trust_remote_code": False}):  # never a [CLS] head in its place
        with pytest.raises(ValueError, match="trust_remote_code=True"):
            AUTO[family].from_pretrained(stripped, **refused)


def test_the_carried_code_imports_nothing_of_edgedistill(bases, tmp_path):
    """The dir's code runs where edgedistill is not installed: it imports torch and transformers only."""
    stripped = strip_student(
        _student(bases / "bert", "multiple-choice", "mean", tmp_path / "student"), tmp_path / "stripped"
    )
    source = (stripped / CODE).read_text()
    imports = {line.split()[1].split(".")[0] for line in source.splitlines() if line.startswith(("import ", "from "))}
    assert imports == {"__future__", "torch", "transformers"}


@pytest.mark.parametrize("base", ["t5", "bert"])  # a T5 base, and bert2bert from an encoder (EncoderDecoderModel)
def test_a_seq2seq_student_is_transformers_own_model(bases, tmp_path, base):
    stripped = strip_student(_student(bases / base, "seq2seq", "cls", tmp_path / "student"), tmp_path / "stripped")
    assert not (stripped / CODE).exists()
    assert _max_diff(stripped, "seq2seq") <= 1e-5 and _max_diff(stripped, "seq2seq", trust_remote_code=True) <= 1e-5


def test_a_dir_an_older_version_wrote_still_loads_and_strip_gives_it_the_code(bases, tmp_path):
    """Older dirs: plain bert config with classifier_pooling, no auto_map. edgedistill's loader reads them as
    trained; strip writes the code into the stripped dir."""
    old = _student(
        bases / "bert",
        "sequence-classification",
        "mean",
        tmp_path / "old",
        save=lambda model, path: model.save_pretrained(path),
    )
    assert json.loads((old / "config.json").read_text())["model_type"] == "bert" and not (old / CODE).exists()
    torch.manual_seed(0)
    built = build_label_model(bases / "bert", "sequence-classification", LABELS, pooling="mean")
    inputs = _inputs(old, "sequence-classification")
    assert torch.equal(_logits(load_label_model(old, "sequence-classification"), inputs), _logits(built, inputs))
    stripped = strip_student(old, tmp_path / "stripped")
    assert _max_diff(stripped, "sequence-classification", trust_remote_code=True) <= 1e-5


def test_a_load_outside_edgedistill_saves_a_dir_that_loads_again(bases, tmp_path):
    """Fine-tuned and saved with transformers alone, the model keeps its head: the saved dir loads as it was."""
    stripped = strip_student(
        _student(bases / "bert", "sequence-classification", "two-tower", tmp_path / "student"), tmp_path / "stripped"
    )
    model = AutoModelForSequenceClassification.from_pretrained(stripped, trust_remote_code=True)
    model.save_pretrained(tmp_path / "again")
    inputs = _inputs(stripped, "sequence-classification")
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "again", trust_remote_code=True)
    assert float((_logits(again, inputs) - _logits(model, inputs)).abs().max()) <= 1e-5


@pytest.mark.parametrize("pooling", ["mean", "two-tower"])
def test_compressed_dirs_carry_the_code_too(bases, tmp_path, pooling):
    """compress writes its dirs through the same save: trimmed vocabulary and fewer layers load outside too."""
    stripped = strip_student(
        _student(bases / "bert", "multiple-choice", pooling, tmp_path / "student"), tmp_path / "stripped"
    )
    trim_vocabulary(
        stripped, [q for q, _ in QUESTIONS] + [c for _, cs in QUESTIONS for c in cs], tmp_path / "trimmed", common=0
    )
    drop_layers(stripped, 1, tmp_path / "one-layer")
    for out in (tmp_path / "trimmed", tmp_path / "one-layer"):
        assert (out / CODE).exists()
        assert _max_diff(out, "multiple-choice", trust_remote_code=True) <= 1e-5
        with pytest.raises(ValueError, match="trust_remote_code=True"):
            AutoModelForMultipleChoice.from_pretrained(out)


def test_a_trained_student_and_its_stripped_dir_load_outside(bases, tmp_path):
    (tmp_path / "task.yaml").write_text(NLI_TASK)
    write_annotations(tmp_path / "ann.jsonl", n=24)
    train(
        TrainConfig(
            task=str(tmp_path / "task.yaml"),
            annotations=str(tmp_path / "ann.jsonl"),
            out=str(tmp_path / "st"),
            student=str(bases / "mpnet"),
            mode="label-only",
            epochs=1,
            batch_size=8,
            progress=False,
            min_steps=0,
        ),
        echo=lambda *_: None,
    )
    stripped = strip_student(tmp_path / "st", tmp_path / "stripped")
    for d in (tmp_path / "st", stripped):
        assert json.loads((d / "config.json").read_text())["model_type"] == "edgedistill_mpnet"
        assert _max_diff(d, "sequence-classification", trust_remote_code=True) <= 1e-5
    # the model card's snippet, run as written, gives the model edgedistill loads
    card = (tmp_path / "st" / "README.md").read_text()
    snippet = card.split("```python\n")[1].split("```")[0].replace("DIR", repr(str(stripped)))
    scope = {}
    exec(snippet, scope)  # noqa: S102 (the card's own snippet, as a reader would run it)
    inputs = _inputs(stripped, "sequence-classification")
    ours = _logits(load_label_model(stripped, "sequence-classification"), inputs)
    assert float((_logits(scope["model"], inputs) - ours).abs().max()) <= 1e-5


def test_edgedistill_reads_its_own_dirs_as_plain_configs(bases, tmp_path):
    """edgedistill's own reads (export's optimum config, fusions, compress's layer check) see the encoder's model
    type, never run the dir's code, and tell a user which file is broken."""
    stripped = strip_student(
        _student(bases / "mpnet", "sequence-classification", "mean", tmp_path / "student"), tmp_path / "stripped"
    )
    config = load_config(stripped)
    assert config.model_type == "mpnet" and config.classifier_pooling == "mean" and not hasattr(config, "auto_map")
    (stripped / "config.json").write_text("{ not json")
    with pytest.raises(UserError, match="config.json:1"):
        load_config(stripped)
