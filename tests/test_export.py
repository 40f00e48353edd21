"""Export tiny config-built models of each family to bundles and check them against torch."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import tiny
from click.testing import CliRunner

from edgedistill.cli import main
from edgedistill.deploy.export import ExportConfig, export_bundle
from edgedistill.deploy.parity import torch_outputs
from edgedistill.errors import UserError
from edgedistill.runtime import BundleError, EdgeModel

WORDS = "the dog is happy a cat sat on my house man woman running park red blue big small because so".split()


def sentences(n, seed=0, lo=3, hi=30):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(lo, hi))) for _ in range(n)]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    cls = tiny.tiny_classifier_dir(d / "cls")
    (cls / "task.yaml").write_text(
        'name: nli\ntype: classification\ninput: "Premise: {premise}\\nHypothesis: {hypothesis}"\n'
        "labels: [entailment, neutral, contradiction]\n"
    )
    mc = tiny.tiny_multiple_choice_dir(d / "mc")
    (mc / "task.yaml").write_text('name: qa\ntype: multiple-choice\ninput: "{question}"\nchoices: choices\n')
    t5 = tiny.tiny_t5_dir(d / "t5")
    (t5 / "task.yaml").write_text('name: math\ntype: numeric\ninput: "{question}"\n')
    # bert2bert: the seq2seq student edgedistill builds from an encoder-only base (EncoderDecoderModel)
    from edgedistill.distill.student import build_label_model

    b2b = build_label_model(tiny.tiny_encoder_dir(d / "enc"), "seq2seq", None, decoder_layers=1)
    b2b.eval().save_pretrained(d / "b2b")
    tiny.tiny_tokenizer("bert").save_pretrained(d / "b2b")
    (d / "b2b" / "task.yaml").write_text((t5 / "task.yaml").read_text())
    texts = sentences(40)
    with open(d / "nli.jsonl", "w") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"premise": t, "hypothesis": texts[-i - 1]}) + "\n")
    with open(d / "qa.jsonl", "w") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"question": t, "choices": sentences(3 + i % 2, seed=i, lo=1, hi=4)}) + "\n")
    with open(d / "math.jsonl", "w") as f:
        for t in texts[:12]:
            f.write(json.dumps({"question": t}) + "\n")
    return d


def export(models, name, data, out, **kw):
    cfg = ExportConfig(model=str(models / name), out=str(out), parity_data=str(models / data), parity_samples=40, **kw)
    return export_bundle(cfg, echo=lambda *_: None)


@pytest.fixture(scope="module")
def cls_bundle(models):
    export(models, "cls", "nli.jsonl", models / "cls_int8")
    return models / "cls_int8"


def test_classification_int8_and_fp32_match_torch(models, cls_bundle, tmp_path):
    m = json.loads((cls_bundle / "manifest.json").read_text())
    assert m["family"] == "sequence-classification" and m["quantization"]["mode"] == "dynamic"
    assert m["format_version"] == 1  # no app-only model (--text-model): readable by runtimes before format 2
    assert m["parity"]["fp32_max_abs_logit_diff"] < 1e-3 and m["parity"]["int8_agreement"] >= 0.99
    assert (cls_bundle / "ort" / "model.ort").exists() and (cls_bundle / "ort" / "required_operators.config").exists()
    items = [json.loads(x) for x in (models / "nli.jsonl").read_text().splitlines()]
    rendered = [{"input": f"Premise: {i['premise']}\nHypothesis: {i['hypothesis']}"} for i in items]
    logits, labels = torch_outputs(models / "cls", "sequence-classification", rendered, None, 128)
    preds = EdgeModel.load(cls_bundle).predict(items)
    assert np.mean([p["label"] == label for p, label in zip(preds, labels)]) >= 0.99
    assert abs(sum(preds[0]["probs"].values()) - 1) < 1e-6
    export(models, "cls", "nli.jsonl", tmp_path / "fp32", quantize="none")
    fp32 = EdgeModel.load(tmp_path / "fp32")
    assert [p["label"] for p in fp32.predict(items)] == labels
    assert np.abs(fp32.run(fp32.encode(items[:8])) - logits[:8]).max() < 1e-4


def test_int8_answers_do_not_depend_on_the_items_beside_them(models, cls_bundle, tmp_path):
    """Dynamic INT8 scales each activation tensor by its own min and max, so an item batched with
    others (and their padding) can get another answer than alone, as an app asks. predict, the parity
    check and evaluation therefore answer dynamic INT8 bundles one item per call; FP32 ones batch."""
    from edgedistill.evaluate import predict_labels
    from edgedistill.task import load_task

    items = [json.loads(x) for x in (models / "nli.jsonl").read_text().splitlines()]
    model = EdgeModel.load(cls_bundle)
    assert model.batch_size == 1
    alone = [model.predict([it])[0] for it in items]
    assert model.predict(items) == alone  # exactly: the same numbers, not merely close
    batched = model.predict(items, batch_size=len(items))  # still possible when asked for
    assert max(abs(a["probs"][k] - b["probs"][k]) for a, b in zip(alone, batched) for k in a["probs"]) > 0, (
        "this tiny model should show the batch effect; if it no longer does, the test above proves nothing"
    )
    task = load_task(models / "cls" / "task.yaml")
    from edgedistill.data import load_examples

    assert predict_labels(cls_bundle, task, load_examples(task, models / "nli.jsonl")) == [a["label"] for a in alone]
    export(models, "cls", "nli.jsonl", tmp_path / "fp32", quantize="none")
    assert EdgeModel.load(tmp_path / "fp32").batch_size == 32


def test_multiple_choice_bundle(models, tmp_path):
    m = export(models, "mc", "qa.jsonl", tmp_path / "b", quantize="none")
    assert m["parity"]["fp32_max_abs_logit_diff"] < 1e-3 and m["parity"]["fp32_agreement"] == 1.0
    items = [json.loads(x) for x in (models / "qa.jsonl").read_text().splitlines()]
    preds = EdgeModel.load(tmp_path / "b").predict(items)  # ragged choice counts in one call
    assert all(p["label"] in it["choices"] for p, it in zip(preds, items))
    # A random tiny MC model has near-tied choices, so INT8 rounding flips them: the check must say so.
    with pytest.raises(UserError, match="INT8 labels agree with torch on"):
        export(models, "mc", "qa.jsonl", tmp_path / "b8")
    assert not (tmp_path / "b8").exists()


def test_parity_runs_each_batch_once_and_answers_from_those_logits(models, cls_bundle, tmp_path):
    from edgedistill.deploy.parity import edge_outputs

    export(models, "mc", "qa.jsonl", tmp_path / "mc", quantize="none")
    for bundle, data, batch in [(cls_bundle, "nli.jsonl", 4), (tmp_path / "mc", "qa.jsonl", 64)]:
        model = EdgeModel.load(bundle)
        items = [json.loads(x) for x in (models / data).read_text().splitlines()]
        expected = [p["label"] for p in model.predict(items, batch_size=batch)]
        calls, run = [], model.run
        model.run = lambda feeds: calls.append(len(feeds["input_ids"])) or run(feeds)
        logits, preds = edge_outputs(model, items, batch_size=batch)
        assert preds == expected and len(logits) == len(items)
        # one call per batch; a multiple-choice batch of ragged choice counts, one per item (as predict does)
        assert len(calls) == (-(-len(items) // batch) if data == "nli.jsonl" else len(items))


@pytest.mark.parametrize("name", ["t5", "b2b"])
def test_seq2seq_bundle_generates_like_torch(models, tmp_path, name):
    # The random tiny bert2bert writes 32 random tokens, which INT8 rounding changes somewhere; its
    # bundle is checked in FP32, which exercises the same no-past decoding loop.
    m = export(models, name, "math.jsonl", tmp_path / "b", **({"quantize": "none"} if name == "b2b" else {}))
    # optimum exports bert2bert's BERT decoder without past keys/values
    assert set(m["models"]) == {"encoder", "decoder", "decoder_with_past"} - (
        {"decoder_with_past"} if name == "b2b" else set()
    )
    assert m["parity"]["fp32_max_abs_logit_diff"] < 1e-3 and m["parity"]["fp32_agreement"] == 1.0
    assert name == "b2b" or m["parity"]["int8_agreement"] >= 0.99
    items = [json.loads(x) for x in (models / "math.jsonl").read_text().splitlines()]
    _, answers = torch_outputs(models / name, "seq2seq", [{"input": i["question"]} for i in items], None, 128)
    assert [p["answer"] for p in EdgeModel.load(tmp_path / "b").predict(items)] == answers


def _corrupt(stage: Path):
    """Scale one weight matrix of the exported model: a broken export that still loads."""
    path = stage / "model.onnx"
    model = onnx.load(str(path))
    init = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    arr = onnx.numpy_helper.to_array(init) * 3.0
    init.CopyFrom(onnx.numpy_helper.from_array(arr.astype(np.float32), init.name))
    onnx.save(model, str(path))


def test_broken_export_fails_parity_and_leaves_no_bundle(models, tmp_path):
    out = tmp_path / "broken"
    with pytest.raises(UserError, match=r"(?s)parity failed, no bundle written:.*max \|Δlogit\|"):
        export(models, "cls", "nli.jsonl", out, tamper=_corrupt)
    assert not out.exists() and not list(tmp_path.glob(".broken*"))


def test_int8_agreement_below_the_gate_names_the_fixes(tmp_path):
    """A low INT8 agreement names the cheaper drift levers first (--smooth-layernorm, then --int8-fp32 auto), each
    unless the export already used it."""
    from types import SimpleNamespace

    from edgedistill.deploy.export import ExportConfig, _enforce

    parity = SimpleNamespace(fp32_max_abs_logit_diff=0.0, int8_agreement=0.9)
    isa = {"avx512_vnni": True}
    layernorm_fix, fp32_fix = "--smooth-layernorm", "--int8-fp32 auto"
    cases = (("0", False, [layernorm_fix, fp32_fix]), ("auto", False, [layernorm_fix]), ("0", True, [fp32_fix]))
    for int8_fp32, layernorm, expected in cases:
        cfg = ExportConfig(
            model=str(tmp_path), out=str(tmp_path / "b"), int8_fp32=int8_fp32, smooth_layernorm=layernorm
        )
        with pytest.raises(UserError, match="below 99.0 %") as e:
            _enforce(parity, cfg, "classification", {"weight_type": "QInt8", "target": "x86"}, isa)
        at = {fix: str(e.value).find(fix) for fix in (layernorm_fix, fp32_fix)}
        assert sorted((fix for fix in at if at[fix] >= 0), key=at.get) == expected
        assert "--calibration-data" in str(e.value)


def test_cli_exit_code_on_parity_failure(models, tmp_path, monkeypatch):
    import edgedistill.deploy.export as ex

    original = ex.ExportConfig
    monkeypatch.setattr("edgedistill.commands.export.ExportConfig", lambda **kw: original(**kw, tamper=_corrupt))
    r = CliRunner().invoke(
        main,
        [
            "export",
            str(models / "cls"),
            "--out",
            str(tmp_path / "b"),
            "--parity-data",
            str(models / "nli.jsonl"),
            "--parity-samples",
            "20",
        ],
    )
    assert r.exit_code != 0 and "parity failed" in r.output and not (tmp_path / "b").exists()


def test_runtime_imports_without_torch_or_transformers(cls_bundle):
    code = f"""
import sys, json
from edgedistill.runtime import EdgeModel
m = EdgeModel.load({str(cls_bundle)!r})
p = m.predict([{{"premise": "a dog", "hypothesis": "a cat"}}])
bad = [x for x in ("torch", "transformers", "optimum") if x in sys.modules]
print(json.dumps({{"pred": p[0]["label"], "bad": bad}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["bad"] == [] and res["pred"] in ("entailment", "neutral", "contradiction")
    # the copy inside the bundle runs on its own too
    out = subprocess.run(
        [sys.executable, str(cls_bundle / "edge_runtime.py"), str(cls_bundle), "Premise: a\nHypothesis: b"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"label"' in out.stdout


def _copy(bundle, tmp_path):
    dest = tmp_path / "b"
    shutil.copytree(bundle, dest)
    return dest


def test_bad_bundles_say_what_is_wrong(cls_bundle, tmp_path):
    b = _copy(cls_bundle, tmp_path)
    (b / "model.onnx").write_bytes((b / "model.onnx").read_bytes()[:-10] + b"0123456789")
    with pytest.raises(BundleError, match="model.onnx: sha256 mismatch"):
        EdgeModel.load(b)
    (b / "model.onnx").unlink()
    with pytest.raises(BundleError, match="model.onnx: missing bundle file"):
        EdgeModel.load(b)
    b2 = _copy(cls_bundle, tmp_path / "2")
    m = json.loads((b2 / "manifest.json").read_text())
    (b2 / "manifest.json").write_text(json.dumps({**m, "format_version": 99}))
    with pytest.raises(BundleError, match="bundle format 99 is newer"):
        EdgeModel.load(b2)
    (b2 / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="corrupt manifest"):
        EdgeModel.load(b2)
    with pytest.raises(BundleError, match="no manifest.json"):
        EdgeModel.load(tmp_path)


def test_inputs_missing_field_and_overlong(cls_bundle):
    m = EdgeModel.load(cls_bundle)
    with pytest.raises(BundleError, match="missing the field 'hypothesis'"):
        m.predict([{"premise": "only one"}])
    long = " ".join(["dog"] * 5000)
    feeds = m.encode([{"premise": long, "hypothesis": "cat"}])
    assert feeds["input_ids"].shape[1] == m.max_length  # truncated as the manifest says
    assert m.predict([{"premise": long, "hypothesis": "cat"}])[0]["label"]


def test_predict_cli(cls_bundle, models):
    r = CliRunner().invoke(main, ["predict", str(cls_bundle), "--data", str(models / "nli.jsonl"), "--json"])
    assert r.exit_code == 0, r.output
    assert len(r.output.strip().splitlines()) == 40
    r = CliRunner().invoke(main, ["predict", str(models), "--text", "a dog"])
    assert r.exit_code != 0 and "no manifest.json" in r.output and "edgedistill export" in r.output
    r = CliRunner().invoke(main, ["predict", str(cls_bundle)])
    assert r.exit_code != 0 and "give --text" in r.output


def test_static_qdq_with_calibration_data(models, tmp_path):
    m = export(
        models, "cls", "nli.jsonl", tmp_path / "qdq", calibration_data=str(models / "nli.jsonl"), min_agreement=0.9
    )
    assert m["quantization"]["mode"] == "static-qdq" and m["quantization"]["per_channel"]
    graph = onnx.load(str(tmp_path / "qdq" / "model.onnx")).graph
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)
    assert EdgeModel.load(tmp_path / "qdq").predict([{"premise": "a dog", "hypothesis": "a cat"}])[0]["label"]


def test_arm64_target_records_its_preset(models, tmp_path):
    m = export(models, "cls", "nli.jsonl", tmp_path / "arm", target="arm64")
    assert m["target"]["preset"] == "arm64" and m["quantization"]["reduce_range"] is False


def test_int8_embeddings_that_break_parity_are_retried_in_fp32(models, tmp_path, monkeypatch):
    # A tiny random model's labels barely depend on its embeddings, so the fault is injected at the
    # parity check: any comparison of a graph with INT8 embeddings reports 50 % agreement.
    import dataclasses

    import edgedistill.deploy.export as export_mod
    from edgedistill.deploy.quantize import MATMUL_OPS, quantize

    plans, real_compare = [], export_mod.compare

    def recording_quantize(src, dst, plan, calib=None):
        plans.append(list(plan.op_types) if plan.op_types else None)
        quantize(src, dst, plan, calib)

    def compare(torch_out, fp32_out, int8_out=None):
        result = real_compare(torch_out, fp32_out, int8_out)
        if int8_out is not None and plans[-1] is None:
            result = dataclasses.replace(result, int8_agreement=0.5)
        return result

    monkeypatch.setattr(export_mod, "quantize", recording_quantize)
    monkeypatch.setattr(export_mod, "compare", compare)
    m = export(models, "cls", "nli.jsonl", tmp_path / "b")
    q = json.loads((tmp_path / "b" / "manifest.json").read_text())["quantization"]
    assert plans == [None, MATMUL_OPS]
    assert q["op_types"] == MATMUL_OPS and any("embeddings kept FP32" in n and "50.0 %" in n for n in q["notes"])
    assert m["parity"]["int8_agreement"] >= 0.99


def test_bundle_carries_the_core_and_runs_on_it_alone(cls_bundle, models):
    """Every module of edgedistill/edge/ is in BUNDLE/edge/, listed with its sha256; with edgedistill and torch
    unimportable, the bundle's edge_runtime.py predicts exactly what edgedistill.runtime does."""
    import hashlib

    m = json.loads((cls_bundle / "manifest.json").read_text())
    core = sorted(p.name for p in (Path(__file__).resolve().parents[1] / "edgedistill" / "edge").glob("*.py"))
    assert sorted(p.name for p in (cls_bundle / "edge").glob("*.py")) == core
    for name in [f"edge/{c}" for c in core] + ["edge_runtime.py", "tokenizer.json", "model.onnx", "ort/model.ort"]:
        assert m["files"][name]["sha256"] == hashlib.sha256((cls_bundle / name).read_bytes()).hexdigest(), name
    assert (
        m["runtime"]["import"] == "from edge_runtime import EdgeModel" and "edge/runtime.py" in m["runtime"]["python"]
    )
    items = [json.loads(x) for x in (models / "nli.jsonl").read_text().splitlines()][:8]
    code = f"""
import json, sys
for name in ("edgedistill", "torch", "transformers", "optimum"):
    sys.modules[name] = None
sys.path.insert(0, {str(cls_bundle)!r})
from edge_runtime import EdgeModel
m = EdgeModel.load({str(cls_bundle)!r})
print(json.dumps({{"module": EdgeModel.__module__, "preds": m.predict({items!r})}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["module"] == "edge.runtime"
    here = EdgeModel.load(cls_bundle).predict(items)
    assert [p["label"] for p in res["preds"]] == [p["label"] for p in here]
    assert max(abs(p["probs"][k] - q["probs"][k]) for p, q in zip(res["preds"], here) for k in p["probs"]) < 1e-6


def test_load_hashes_only_the_files_it_loads(cls_bundle, monkeypatch):
    """Cold start: the ort/ copies, README and Python files are not read at load; a changed model still fails."""
    import edgedistill.edge.runtime as rt

    hashed, real = [], rt.sha256_file
    monkeypatch.setattr(
        rt, "sha256_file", lambda p: hashed.append(Path(p).relative_to(cls_bundle).as_posix()) or real(p)
    )
    EdgeModel.load(cls_bundle)
    assert sorted(hashed) == ["model.onnx", "tokenizer.json"]


def test_changed_files_the_runtime_does_not_load_do_not_stop_it(cls_bundle, tmp_path):
    b = _copy(cls_bundle, tmp_path)
    (b / "ort" / "model.ort").write_bytes(b"not the model any more")
    (b / "README.md").unlink()
    assert EdgeModel.load(b).predict([{"premise": "a dog", "hypothesis": "a cat"}])[0]["label"]
    (b / "tokenizer.json").write_text((b / "tokenizer.json").read_text() + " ")
    with pytest.raises(BundleError, match="tokenizer.json: sha256 mismatch"):
        EdgeModel.load(b)


def test_zipped_bundle_leaves_no_temporary_directory(cls_bundle, tmp_path, monkeypatch):
    import gc
    import tempfile

    from edgedistill.deploy.bundle import zip_bundle

    z = zip_bundle(_copy(cls_bundle, tmp_path))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    left = lambda: sorted(p.name for p in scratch.iterdir())  # noqa: E731
    for _ in range(3):  # garbage-collected
        m = EdgeModel.load(z)
        assert m.predict([{"premise": "a dog", "hypothesis": "a cat"}])[0]["label"] and len(left()) == 1
        del m
        gc.collect()
    assert left() == []
    with EdgeModel.load(z) as m:  # a with block
        m.predict(["Premise: a\nHypothesis: b"])
    assert left() == []
    m = EdgeModel.load(z)
    m.close()  # closed
    m.close()
    assert left() == []
    (tmp_path / "bad.zip").write_bytes(b"PK not a zip")
    with pytest.raises(BundleError, match="cannot unpack"):
        EdgeModel.load(tmp_path / "bad.zip")
    assert left() == []


def test_failed_ort_conversion_is_a_recorded_warning(models, tmp_path, monkeypatch):
    import edgedistill.deploy.bundle as bundle_mod

    monkeypatch.setattr(bundle_mod, "ORT_CONVERTER", "edgedistill_no_such_converter")
    said = []
    cfg = ExportConfig(
        model=str(models / "cls"),
        out=str(tmp_path / "b"),
        parity_data=str(models / "nli.jsonl"),
        parity_samples=20,
        quantize="none",
    )
    m = export_bundle(cfg, echo=said.append)
    warning = [w for w in said if w.startswith("WARNING: ORT-format conversion failed")]
    assert len(warning) == 1 and "ONNX Runtime Mobile" in warning[0] and "edgedistill_no_such_converter" in warning[0]
    on_disk = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert on_disk["warnings"] == m["warnings"] == [warning[0].removeprefix("WARNING: ")]
    assert "error" in on_disk["ort_models"] and not (tmp_path / "b" / "ort").exists()
    assert "WARNING: no `.ort` files" in (tmp_path / "b" / "README.md").read_text()
    assert EdgeModel.load(tmp_path / "b").predict([{"premise": "a", "hypothesis": "b"}])[0]["label"]
