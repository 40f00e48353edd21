"""`export --text-model`: a tiny WordPiece classifier's text-in model answers like the bundle's EdgeModel.

The Python onnxruntime + onnxruntime-extensions session here is the stand-in for ORT Mobile on a device.
"""

import json

import numpy as np
import pytest
import tiny
from click.testing import CliRunner

from edgedistill.cli import main
from edgedistill.deploy.export import ExportConfig, export_bundle
from edgedistill.edge.runtime import EdgeModel, sha256_file
from edgedistill.errors import UserError

try:
    import onnxruntime_extensions  # noqa: F401
except ImportError as e:
    pytest.skip(
        f"onnxruntime-extensions cannot be imported ({e}): pip install onnxruntime-extensions==0.15.2",
        allow_module_level=True,
    )

from edgedistill.deploy import text_model

MAX_LENGTH = 24  # short, so that many inputs are truncated
SHARPEN = 1000.0
TASK = (
    'name: nli\ntype: classification\ninput: "Premise: {premise}\\nHypothesis: {hypothesis}"\n'
    "labels: [entailment, neutral, contradiction]\n"
)
EXTRA = [
    "Café",
    "déjà",
    "naïve",
    "résumé",
    "Zürich",
    "São",
    "¿qué?",
    "ÉCOLE",
    "don't",
    "e-mail",
    "$5.99",
    "100%",
    "#tag",
    "@user",
    "(really?!)",
    "...",
    "中文",
    "ＦＵＬＬ",
    "x\u0301",
    "tab\there",
    "new\nline",
    "unbelievably",
]


def wordpiece_classifier(path):
    """A tiny BertForSequenceClassification with a BertTokenizerFast (WordPiece, BertNormalizer) over
    tiny.WORDS plus single letters and ## pieces, so unknown words split into subwords."""
    import torch
    from transformers import BertForSequenceClassification, BertTokenizerFast

    path.mkdir(parents=True)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list(
        "0123456789"
    )  # each with a ## piece, as in real vocabs
    vocab = list(
        dict.fromkeys(
            ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            + tiny.WORDS
            + letters
            + [f"##{c}" for c in letters]
            + ["##ing", "##ed", "##ly", "##s", "cafe", "deja", "##able"]
        )
    )
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    labels = ("entailment", "neutral", "contradiction")
    cfg = tiny.tiny_bert_config(
        num_labels=3, id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)}
    )
    cfg.vocab_size = len(vocab)
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg).eval()
    with torch.no_grad():  # a random tiny model's probs are ~1/3 whatever the ids; make one token show in them
        model.classifier.weight.mul_(SHARPEN)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    (path / "task.yaml").write_text(TASK)
    return path


def varied_items(n, seed, empty=True):
    """Inputs with accents, case, punctuation, CJK, control characters, long ones that truncate and
    (but in a data file, which refuses them) empty fields."""
    rng = np.random.default_rng(seed)
    pool = tiny.WORDS + EXTRA + ["Dog", "RUNNING", "Happily", "parked", "refunds"]
    lo = 0 if empty else 1
    items = [
        {
            "premise": " ".join(rng.choice(pool, rng.integers(lo, 28))),
            "hypothesis": " ".join(rng.choice(pool, rng.integers(lo, 6))),
        }
        for _ in range(n)
    ]
    return items + [
        {"premise": "Café " * 60, "hypothesis": "déjà vu"},
        {"premise": "\u00e9" if empty else "é", "hypothesis": "É"},
    ]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("text")
    wordpiece_classifier(d / "cls")
    with open(d / "parity.jsonl", "w") as f:
        for it in varied_items(60, seed=0, empty=False):
            f.write(json.dumps(it) + "\n")
    return d


def export(models, out, name="cls", **kw):
    cfg = ExportConfig(
        model=str(models / name),
        out=str(out),
        parity_data=str(models / "parity.jsonl"),
        parity_samples=62,
        max_length=MAX_LENGTH,
        text_model=True,
        **kw,
    )
    return export_bundle(cfg, echo=lambda *_: None)


@pytest.fixture(scope="module")
def exported(models):
    """(bundle dir, the manifest export_bundle returned): INT8, the default."""
    return models / "bundle", export(models, models / "bundle")


@pytest.fixture(scope="module")
def bundle(exported):
    return exported[0]


def test_text_model_answers_like_the_bundle(bundle):
    edge = EdgeModel.load(bundle)
    assert set(edge.sessions) == {"model"}  # the text model is listed, never run by EdgeModel
    items = varied_items(80, seed=1)  # not the parity inputs
    truncated = sum(len(e) == MAX_LENGTH for e in (edge.encode([it])["input_ids"][0] for it in items))
    assert 20 <= truncated <= len(items) - 20
    ref = edge.predict(items, batch_size=1)
    for path in (bundle / "text_model.onnx", bundle / "ort" / "text" / "text_model.ort"):
        s = text_model.session(path)
        got = np.array([s.run(["probs"], {"text": np.array([edge.render(it)], dtype=object)})[0][0] for it in items])
        want = np.array([[p["probs"][n] for n in edge.labels] for p in ref])
        assert [edge.labels[int(i)] for i in got.argmax(1)] == [p["label"] for p in ref], path
        assert np.abs(got - want).max() <= 1e-4, path
        assert got.dtype == np.float32 and got.shape == (len(items), 3)


def test_manifest_lists_the_text_model_with_its_sha256(exported):
    bundle, returned = exported
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["models"] == {"model": "model.onnx", "text": "text_model.onnx"}
    assert m["format_version"] == 2  # a runtime from before app-only roles says "upgrade", not "cannot load"
    for name in ("text_model.onnx", "ort/text/text_model.ort"):
        assert m["files"][name]["sha256"] == sha256_file(bundle / name)
    t = m["text_model"]
    assert t["inputs"] == m["io"]["text"]["inputs"] == [{"name": "text", "dtype": "string", "shape": [1]}]
    assert t["outputs"] == [{"name": "probs", "dtype": "float32", "shape": [1, 3]}]
    assert t["custom_op_domain"] == "ai.onnx.contrib" and t["tokenizer"]["strip_accents"] == 1
    assert t["parity"]["labels_equal"] == t["parity"]["examples"] == 62 and t["parity"]["max_abs_prob_diff"] <= 1e-4
    assert t["parity"]["ort_checked"] and "warnings" not in m
    assert "`text_model.onnx`, for apps" in (bundle / "README.md").read_text()
    assert returned["size_bytes"] == m["files"]["model.onnx"]["bytes"]  # the runtime's model, not the app's copy


def test_default_tokenizer_attributes_fail_parity_and_leave_no_bundle(models, tmp_path, monkeypatch):
    # gen_processing_models' default strip_accents=0 on a `strip_accents: null` BertNormalizer: "Café" -> [UNK]
    real = text_model.tokenizer_attrs
    monkeypatch.setattr(
        text_model, "tokenizer_attrs", lambda tok, max_length: {**real(tok, max_length), "strip_accents": 0}
    )
    with pytest.raises(UserError, match=r"text model parity failed, no bundle written: text_model.onnx gives"):
        export(models, tmp_path / "b", quantize="none")
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b*"))


def test_a_failed_ort_conversion_of_the_text_model_is_a_recorded_warning(models, tmp_path, monkeypatch):
    import edgedistill.deploy.bundle as bundle_mod

    real = bundle_mod.convert_to_ort
    monkeypatch.setattr(
        bundle_mod,
        "convert_to_ort",
        lambda b, models, subdir="ort", extra_args=(): (
            real(b, models, subdir, ["--no-such-flag"]) if subdir == "ort/text" else real(b, models, subdir, extra_args)
        ),
    )
    said = []
    cfg = ExportConfig(
        model=str(models / "cls"),
        out=str(tmp_path / "b"),
        parity_data=str(models / "parity.jsonl"),
        max_length=MAX_LENGTH,
        text_model=True,
        quantize="none",
    )
    m = export_bundle(cfg, echo=said.append)
    assert "error" in m["text_model"]["ort"] and not (tmp_path / "b" / "ort" / "text").exists()
    assert (tmp_path / "b" / "ort" / "model.ort").exists() and "ort_checked" not in m["text_model"]["parity"]
    assert [w for w in said if w.startswith("WARNING: no ORT-format text model")] == [f"WARNING: {m['warnings'][0]}"]
    assert text_model.session(tmp_path / "b" / "text_model.onnx").run(
        ["probs"], {"text": np.array(["a dog"], dtype=object)}
    )


def test_multiple_choice_is_refused_before_the_export(models, tmp_path):
    tiny.tiny_multiple_choice_dir(tmp_path / "mc")
    (tmp_path / "mc" / "task.yaml").write_text(
        'name: qa\ntype: multiple-choice\ninput: "{question}"\nchoices: choices\n'
    )
    (tmp_path / "qa.jsonl").write_text(json.dumps({"question": "a dog", "choices": ["yes", "no"]}) + "\n")
    r = CliRunner().invoke(
        main,
        [
            "export",
            str(tmp_path / "mc"),
            "--out",
            str(tmp_path / "b"),
            "--parity-data",
            str(tmp_path / "qa.jsonl"),
            "--text-model",
        ],
    )
    assert r.exit_code != 0 and "--text-model is classification-only" in r.output and not (tmp_path / "b").exists()


def test_a_tokenizer_the_op_cannot_reproduce_is_refused(models, tmp_path):
    tiny.tiny_classifier_dir(models / "wl")  # WordLevel model, Lowercase normalizer
    with pytest.raises(UserError, match=r"cannot reproduce this tokenizer.json: model 'WordLevel' \(needs WordPiece\)"):
        export(models, tmp_path / "b", name="wl")
    assert not (tmp_path / "b").exists()


def test_missing_extensions_say_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime_extensions", None)
    with pytest.raises(UserError, match=r"pip install 'onnxruntime-extensions==0.15.2'"):
        text_model.extensions()


def test_the_documented_tokenizer_difference_still_holds(models):
    """A word with a character that has no ## piece (an emoji): tokenizers makes the whole word [UNK],
    the op keeps the pieces before it. If this fails, onnxruntime-extensions changed: update
    text_model.KNOWN_DIFFERENCES and export/ANDROID.md."""
    from tokenizers import Tokenizer

    tok_json = json.loads((models / "cls" / "tokenizer.json").read_text())
    s = text_model.session_of(
        text_model.tokenizer_graph(models / "cls", text_model.tokenizer_attrs(tok_json, MAX_LENGTH))
    )
    tok = Tokenizer.from_file(str(models / "cls" / "tokenizer.json"))
    ids = lambda t: [tok.id_to_token(int(i)) for i in s.run(["input_ids"], {"text": np.array([t], dtype=object)})[0]]  # noqa: E731
    assert [tok.id_to_token(i) for i in tok.encode("a dog\U0001f600").ids] == ["[CLS]", "a", "[UNK]", "[SEP]"]
    assert ids("a dog\U0001f600") == ["[CLS]", "a", "dog", "[UNK]", "[SEP]"]
    assert ids("Café, DÉJÀ naïve") == [tok.id_to_token(i) for i in tok.encode("Café, DÉJÀ naïve").ids]


def test_cli_flag_writes_and_reports_the_text_model(models, tmp_path):
    r = CliRunner().invoke(
        main,
        [
            "export",
            str(models / "cls"),
            "--out",
            str(tmp_path / "b"),
            "--parity-data",
            str(models / "parity.jsonl"),
            "--parity-samples",
            "20",
            "--quantize",
            "none",
            "--max-length",
            str(MAX_LENGTH),
            "--text-model",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "text model parity: labels 20/20" in r.output and "text_model.onnx (" in r.output
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["models"]["text"] == "text_model.onnx"
