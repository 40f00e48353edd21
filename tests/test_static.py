"""compress --into static: a model2vec static student learns a tiny task's trained student, exports to a bundle that
passes parity, and answers in EdgeModel as the static student's own numpy forward does."""

import json

import numpy as np
import pytest
import tiny

from edgedistill.errors import UserError
from edgedistill.model_dir import read_meta, write_meta

pytest.importorskip("model2vec")

LABELS = ["billing", "bug", "account"]
TASK = "name: t\ntype: classification\ninput: '{text}'\nlabels: [billing, bug, account]\ngold: label\n"
WORDS = ["refund charge billing order", "app crash bug broken", "login password account help"]


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A tiny stripped classifier whose train.json names its base (a tiny sentence encoder), and its annotations."""
    root = tmp_path_factory.mktemp("static")
    base = tiny.tiny_sentence_encoder_dir(root / "base")
    d = tiny.tiny_classifier_dir(root / "stripped", labels=LABELS)
    (d / "task.yaml").write_text(TASK)
    (d / "train.json").write_text(json.dumps({"base": str(base)}))
    write_meta(d, {"kind": "stripped", "family": "sequence-classification", "max_length": 16, "labels": LABELS})
    rows = [
        {"id": str(i), "input": f"{WORDS[i % 3]} please", "label": LABELS[i % 3], "status": "ok"} for i in range(60)
    ]
    (root / "ann.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d, root / "ann.jsonl", base


@pytest.fixture(scope="module")
def static_dir(student, tmp_path_factory):
    from edgedistill.compress.compress import CompressConfig, compress

    model, ann, _ = student
    out = tmp_path_factory.mktemp("out") / "static"
    summary = compress(
        CompressConfig(model=str(model), annotations=str(ann), out=str(out), into=["static"], quantize="none"),
        echo=lambda *_: None,
    )
    return out, summary


def test_compress_into_static_writes_a_static_student_that_learns_the_students_answers(static_dir, student):
    from edgedistill.compress.smaller import probabilities
    from edgedistill.deploy.static_bundle import load_static, static_logits, static_tokenizer

    out, summary = static_dir
    meta = read_meta(out)
    assert meta["kind"] == "static" and meta["labels"] == LABELS and meta["static"]["engine"] == "model2vec"
    assert meta["base"] == str(student[2]) and summary["candidates"][0]["name"].startswith("static (model2vec")
    assert summary["chosen"] == summary["candidates"][0]["name"] and (out / "compress.md").exists()
    texts = [f"{w} please" for w in WORDS]
    w = load_static(out)
    ids = [e.ids for e in static_tokenizer(out, 16).encode_batch(texts)]
    mine = static_logits(w, ids).argmax(1)
    theirs = [int(p.argmax()) for p in probabilities(student[0], [{"input": t} for t in texts])]
    assert list(mine) == theirs  # three separable inputs: the static student gives the trained student's answers


def test_a_static_bundle_passes_parity_and_edgemodel_answers_as_the_static_student(static_dir, student, tmp_path):
    from edgedistill.deploy.export import ExportConfig, export_bundle
    from edgedistill.deploy.static_bundle import load_static, static_logits, static_tokenizer
    from edgedistill.runtime import EdgeModel

    out, _ = static_dir
    m = export_bundle(
        ExportConfig(model=str(out), out=str(tmp_path / "b"), parity_data=str(student[1])), echo=lambda *_: None
    )
    assert m["static"]["dim"] > 0 and m["parity"]["fp32_max_abs_logit_diff"] < 1e-4 and m["parity"]["examples"] > 0
    assert m["quantization"]["mode"] in ("fp16-embeddings", "none") and "model.onnx" in m["files"]
    texts = ["refund charge please", "app crash", "login help", "", "zebra unknownword"]
    with EdgeModel.load(tmp_path / "b") as edge:
        got = edge.predict(texts)
    ref = static_logits(load_static(out), [e.ids for e in static_tokenizer(out, 16).encode_batch(texts)])
    want = np.exp(ref - ref.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    assert [g["label"] for g in got] == [LABELS[i] for i in ref.argmax(1)]
    tol = 1e-2 if m["quantization"]["mode"] == "fp16-embeddings" else 1e-5
    assert np.allclose([[g["probs"][k] for k in LABELS] for g in got], want, atol=tol)


def test_a_tampered_static_student_fails_parity_and_writes_no_bundle(static_dir, student, tmp_path, monkeypatch):
    from edgedistill.deploy import static_bundle
    from edgedistill.deploy.export import ExportConfig, export_bundle

    out, _ = static_dir
    real = static_bundle.static_logits
    monkeypatch.setattr(static_bundle, "static_logits", lambda w, ids: real(w, ids) + np.array([0.0, 1.0, 0.0]))
    with pytest.raises(UserError, match="parity failed"):
        export_bundle(
            ExportConfig(model=str(out), out=str(tmp_path / "b"), parity_data=str(student[1])), echo=lambda *_: None
        )
    assert not (tmp_path / "b").exists()


def test_a_multiple_choice_student_is_refused_with_the_fix(tmp_path):
    from edgedistill.compress.compress import CompressConfig, compress

    d = tiny.tiny_multiple_choice_dir(tmp_path / "mc")
    write_meta(d, {"kind": "stripped", "family": "multiple-choice", "max_length": 16})
    (tmp_path / "a.jsonl").write_text("")
    with pytest.raises(UserError, match="--into static: MODEL is a multiple-choice student.*--into BASE or --layers K"):
        compress(
            CompressConfig(
                model=str(d), annotations=str(tmp_path / "a.jsonl"), out=str(tmp_path / "o"), into=["static"]
            ),
            echo=lambda *_: None,
        )


@pytest.mark.parametrize("script", ["predict.mjs", "browser.mjs"])
def test_node_and_chromium_give_pythons_answers_on_a_static_bundle(static_dir, student, tmp_path, script):
    """export/js runs a static bundle unchanged (Node: onnxruntime-node; Chromium: onnxruntime-web, WASM)."""
    import os
    from pathlib import Path

    import test_js_runtime as js

    from edgedistill.deploy.export import ExportConfig, export_bundle
    from edgedistill.runtime import EdgeModel

    if why := js._npm_ci():
        pytest.skip(why)
    if script == "browser.mjs" and not Path(os.environ.get("CHROMIUM", "/usr/bin/chromium")).exists():
        pytest.skip("chromium missing (DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)")
    out, _ = static_dir
    export_bundle(
        ExportConfig(model=str(out), out=str(tmp_path / "b"), parity_data=str(student[1])), echo=lambda *_: None
    )
    items = [{"text": t} for t in js.sentences(64)]
    py = EdgeModel.load(tmp_path / "b").predict(items)
    js.compare(py, js.run_js(script, tmp_path / "b", items), f"{script} static")


def test_bench_measures_a_static_bundle_alone_and_says_why_the_peers_do_not_apply(static_dir, student, tmp_path):
    from edgedistill.deploy.export import ExportConfig, export_bundle
    from edgedistill.measure.bench import BenchConfig, run_bench
    from edgedistill.model_dir import kind_of

    out, _ = static_dir
    assert kind_of(out) == "static"
    export_bundle(
        ExportConfig(model=str(out), out=str(tmp_path / "b"), parity_data=str(student[1])), echo=lambda *_: None
    )
    gold = tmp_path / "test.jsonl"
    gold.write_text("".join(json.dumps({"text": f"{w} now", "label": lab}) + "\n" for w, lab in zip(WORDS, LABELS)))
    said = []
    s = BenchConfig(
        batch_sizes=[1], seq_lens=[8], threads=[1], min_time=0.01, min_iters=2, warmup=0.0, fresh_process=False
    )
    doc = run_bench(tmp_path / "b", data=str(gold), settings=s, echo=said.append, progress=False)
    ok = {v["name"]: v for v in doc["variants"]}
    assert ok["bundle"]["status"] == "ok" and ok["bundle"]["accuracy"] is not None
    assert all(v["status"] == "skipped" and "static student" in v["reason"] for n, v in ok.items() if n != "bundle")
    assert any("torch/ORT peers do not apply to a static student" in m for m in said)
    assert [r["variant"] for r in doc["results"] if r.get("status", "ok") == "ok"] == ["bundle"]
    with pytest.raises(UserError, match="static student.*--torch does not apply.*drop --torch"):
        run_bench(tmp_path / "b", torch_dir=str(out), settings=s, echo=said.append, progress=False)


def test_eval_on_a_static_dir_says_to_export_it_first(static_dir, student, tmp_path):
    """A static student has no torch forward of its own: eval names the export that makes it runnable."""
    from edgedistill.data import load_examples
    from edgedistill.evaluate import evaluate_model
    from edgedistill.task import load_task

    model, _, _ = student
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": f"{WORDS[0]} please", "label": LABELS[0]}) + "\n")
    task = load_task(model / "task.yaml")
    examples = load_examples(task, tmp_path / "d.jsonl", require_gold=True)
    with pytest.raises(UserError, match=r"static student .*export it first \(edgedistill export"):
        evaluate_model(static_dir[0], task, examples)
