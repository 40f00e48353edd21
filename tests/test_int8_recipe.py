"""The INT8 recipe: --int8-fp32 ranks MatMuls by INT8 sensitivity and keeps the top ones FP32; --smooth
(SmoothQuant) moves activation outliers into the weights before dynamic INT8; both recorded in the manifest."""

import json

import numpy as np

import pytest
import torch
from click.testing import CliRunner

import tiny
from edgedistill.cli import main
from edgedistill.deploy.export import ExportConfig, export_bundle
from edgedistill.deploy.onnx_export import export_onnx
from edgedistill.deploy.quantize import FP32_LADDER, KL_BUDGET, PRESETS, QuantPlan, detect_preset, rank_sensitivity, weight_matmuls
from edgedistill.errors import UserError
from edgedistill.runtime import EdgeModel
from test_export import sentences

BROKEN = "/bert/encoder/layer.1/intermediate/dense/MatMul"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny classifier, and a copy whose layer.1 FFN input MatMul INT8 ruins while FP32 is unchanged:
    one input feature of that MatMul is always 0 (its LayerNorm gain and bias zeroed) and its weights are
    1000, so per-channel INT8 scales every column by ~1000/127 and rounds the real weights (~0.02) to 0.
    The FFN output and the classifier are scaled up so that the FFN path (and the logits) matter: a
    random tiny model's outputs are otherwise nearly uniform whatever its FFN does."""
    from transformers import BertForSequenceClassification

    d = tmp_path_factory.mktemp("int8")
    tiny.tiny_classifier_dir(d / "cls")
    model = BertForSequenceClassification.from_pretrained(d / "cls").eval()
    layer = model.bert.encoder.layer[1]
    with torch.no_grad():
        layer.attention.output.LayerNorm.weight[5] = 0
        layer.attention.output.LayerNorm.bias[5] = 0
        layer.intermediate.dense.weight[:, 5] = 1000
        layer.output.dense.weight *= 50
        model.classifier.weight *= 100
    model.save_pretrained(d / "broken")
    tiny.tiny_tokenizer("bert").save_pretrained(d / "broken")
    task = 'name: topic\ntype: classification\ninput: "{text}"\nlabels: [entailment, neutral, contradiction]\n'
    for name in ("cls", "broken"):
        (d / name / "task.yaml").write_text(task)
    with open(d / "texts.jsonl", "w") as f:
        for t in sentences(60, seed=3):
            f.write(json.dumps({"text": t}) + "\n")
    return d


def export(models, name, out, **kw):
    """The bundle of models/NAME. The ranking tests pass smooth=0: smoothing changes which MatMuls INT8 hurts."""
    cfg = ExportConfig(model=str(models / name), out=str(out), parity_data=str(models / "texts.jsonl"), parity_samples=60, **kw)
    return export_bundle(cfg, echo=lambda *_: None)


def feeds(models, name, n=32):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(models / name)
    texts = [json.loads(x)["text"] for x in (models / "texts.jsonl").read_text().splitlines()[:n]]
    return [{k: v for k, v in tok(t, return_tensors="np").items()} for t in texts]


def test_ranking_puts_the_sensitive_matmul_first(models, tmp_path):
    onnx_path = export_onnx(models / "broken", tmp_path / "onnx", "sequence-classification")["model"]
    assert BROKEN in weight_matmuls(onnx_path) and len(weight_matmuls(onnx_path)) == 14  # 2 layers x 6, pooler, classifier
    # this CPU's preset, as export picks it: a VNNI preset (no reduce_range) run on an AVX2-only CPU saturates
    # vpmaddubsw in every MatMul, and the ranking then measures that (BROKEN first, but only 1.6x the next)
    target, preset, _ = detect_preset("x86")
    plan = QuantPlan(preset=preset, target=target, **PRESETS[preset])
    ranking = rank_sensitivity(onnx_path, plan, feeds(models, "broken"), tmp_path / "work", threads=1)
    assert [r["node"] for r in ranking][0] == BROKEN
    assert ranking[0]["kl"] > 30 * ranking[1]["kl"]
    assert {r["node"] for r in ranking} == set(weight_matmuls(onnx_path))


def test_auto_keeps_exactly_the_chosen_nodes_fp32_and_parity_holds(models, tmp_path):
    m = export(models, "broken", tmp_path / "b", int8_fp32="auto", smooth=0)
    q = m["quantization"]
    kept = q["fp32_matmuls"]
    assert kept["requested"] == "auto" and kept["k"] == 1 and kept["nodes"] == [BROKEN]
    assert q["nodes_to_exclude"] == [BROKEN]
    assert [r["k"] for r in kept["ladder"]] == [k for k in FP32_LADDER if k <= 12]
    # all-INT8 misses the KL budget by far (the labels of this tiny model are too decisive to flip); top 1 FP32 meets it
    assert kept["ladder"][0]["kl"] > 3 * KL_BUDGET and kept["ladder"][1]["kl"] < KL_BUDGET / 3
    assert kept["ranking"][0]["node"] == BROKEN and len(kept["ranking"]) == 14
    assert any(n.startswith("kept the 1 most INT8-sensitive MatMuls FP32 (" + BROKEN) and "p50 x" in n for n in q["notes"])
    assert m["parity"]["int8_agreement"] >= 0.99
    # what ships is that plan: the graph still has the broken MatMul in FP32, every other weight MatMul (and Gemm) quantized
    import onnx

    g = onnx.load(str(tmp_path / "b" / "model.onnx")).graph
    assert [n.name for n in g.node if n.op_type == "MatMul" and n.name == BROKEN] == [BROKEN]
    assert sum(n.op_type == "MatMulInteger" for n in g.node) == 13
    assert EdgeModel.load(tmp_path / "b").batch_size == 1


def test_n_keeps_the_top_n(models, tmp_path):
    m = export(models, "broken", tmp_path / "b", int8_fp32="2")
    kept = m["quantization"]["fp32_matmuls"]
    assert kept["k"] == 2 and kept["nodes"][0] == BROKEN and m["quantization"]["nodes_to_exclude"] == kept["nodes"]
    assert [r["k"] for r in kept["ladder"]] == [0, 2]  # the all-INT8 cost baseline and the chosen k


def test_auto_on_a_healthy_model_keeps_nothing_and_default_does_not_rank(models, tmp_path):
    m = export(models, "cls", tmp_path / "a", int8_fp32="auto")
    kept = m["quantization"]["fp32_matmuls"]
    assert kept["k"] == 0 and m["quantization"]["nodes_to_exclude"] == []
    assert not any("MatMuls FP32" in n for n in m["quantization"]["notes"])
    m = export(models, "cls", tmp_path / "d")
    assert m["quantization"]["fp32_matmuls"] is None


def test_composes_with_the_fp32_embeddings_retry(models, tmp_path, monkeypatch):
    """The retry with FP32 embeddings keeps the chosen MatMuls FP32 too."""
    import dataclasses

    import edgedistill.deploy.export as export_mod
    from edgedistill.deploy.quantize import MATMUL_OPS

    real = export_mod.compare

    def compare(torch_out, fp32_out, int8_out=None):  # report the first INT8 graph (embeddings INT8) as failing
        r = real(torch_out, fp32_out, int8_out)
        compare.calls += int8_out is not None
        return dataclasses.replace(r, int8_agreement=0.5) if int8_out is not None and compare.calls == 1 else r

    compare.calls = 0
    monkeypatch.setattr(export_mod, "compare", compare)
    m = export(models, "broken", tmp_path / "b", int8_fp32="1")
    q = m["quantization"]
    assert q["op_types"] == MATMUL_OPS and q["nodes_to_exclude"] == [BROKEN]
    assert any("embeddings kept FP32" in n for n in q["notes"]) and m["parity"]["int8_agreement"] >= 0.99


@pytest.mark.parametrize("args,message", [(["--int8-fp32", "some"], "pass a number of MatMuls"),
                                          (["--int8-fp32", "2", "--quantize", "none"], "needs --quantize int8")])
def test_cli_rejects_bad_values(models, tmp_path, args, message):
    r = CliRunner().invoke(main, ["export", str(models / "cls"), "--out", str(tmp_path / "x"),
                                  "--parity-data", str(models / "texts.jsonl"), *args])
    assert r.exit_code != 0 and message in r.output
    assert not (tmp_path / "x").exists()


def test_cli_help_documents_the_flag():
    r = CliRunner().invoke(main, ["export", "--help"])
    assert "--int8-fp32 N|auto" in r.output and "--min-agreement" in r.output


def test_cli_prints_what_was_kept(models, tmp_path):
    r = CliRunner().invoke(main, ["export", str(models / "broken"), "--out", str(tmp_path / "b"),
                                  "--parity-data", str(models / "texts.jsonl"), "--int8-fp32", "1"])
    assert r.exit_code == 0, r.output
    assert "MatMuls kept FP32" in r.output and "1 (--int8-fp32 1)" in r.output and "of all-INT8" in r.output


def test_pick_k_takes_the_smallest_k_meeting_both_and_flags_a_miss():
    from edgedistill.deploy.quantize import pick_k

    ladder = [{"k": 0, "agreement": 0.97, "kl": 3e-3}, {"k": 1, "agreement": 0.995, "kl": 2e-3},
              {"k": 2, "agreement": 0.99, "kl": 9e-4}, {"k": 3, "agreement": 0.998, "kl": 5e-4}]
    assert pick_k(ladder, 0.99)["k"] == 2 and pick_k(ladder, 0.99)["met"] is True
    missed = pick_k(ladder, 0.999)
    assert missed["k"] == 3 and missed["met"] is False


# ---------------------------------------------------------------- --smooth

def outlier_matmul(path, channels=64, outlier=100.0):
    """x [1, T, 64] -> MatMul(W [64, 16]) -> y, and inputs whose channel 0 is `outlier` times the others while W's
    row 0 is that much smaller (so the channel matters as much as the rest): what LayerNorm outliers look like to a
    MatMul. One INT8 scale for x then rounds the other 63 channels to a few steps."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.1, (channels, 16)).astype(np.float32)
    w[0] /= outlier
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, None, channels])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, None, 16])], [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    feeds = []
    for _ in range(8):
        x = rng.normal(0, 1, (1, 24, channels)).astype(np.float32)
        x[..., 0] *= outlier
        feeds.append({"x": x})
    return feeds


def test_smoothing_keeps_the_fp32_function_and_cuts_the_int8_error(tmp_path):
    import onnx

    from edgedistill.deploy.quantize import SMOOTH_ALPHA, _session, quantize, smooth_activations

    feeds = outlier_matmul(tmp_path / "mm.onnx")
    info = smooth_activations(tmp_path / "mm.onnx", tmp_path / "smooth.onnx", feeds, SMOOTH_ALPHA, threads=1)
    assert info == {"alpha": SMOOTH_ALPHA, "matmuls": 1, "inputs": 1, "calibration_inputs": 8}
    assert [n.op_type for n in onnx.load(str(tmp_path / "smooth.onnx")).graph.node] == ["Mul", "MatMul"]

    def outputs(path):
        s = _session(path, 1)
        return np.concatenate([s.run(None, f)[0] for f in feeds])

    ref = outputs(tmp_path / "mm.onnx")
    assert np.abs(outputs(tmp_path / "smooth.onnx") - ref).max() < 1e-4 * np.abs(ref).max()  # the same FP32 function
    target, preset, _ = detect_preset("x86")
    plan = QuantPlan(preset=preset, target=target, **PRESETS[preset])
    err = {}
    for name in ("mm", "smooth"):
        quantize(tmp_path / f"{name}.onnx", tmp_path / f"{name}-int8.onnx", plan)
        err[name] = np.abs(outputs(tmp_path / f"{name}-int8.onnx") - ref).mean()
    assert err["smooth"] < err["mm"] / 5, err


def fake_drift(smoothed: float, unsmoothed: float):
    """int8_drift as export calls it (its work dir is drift/smoothed or drift/unsmoothed), with fixed answers: a
    tiny random model's INT8 drift is too small and too preset-dependent to say whether smoothing helps it."""
    def drift(src, plan, feeds, work, threads=2, ref=None):
        return smoothed if work.name == "smoothed" else unsmoothed
    return drift


def test_export_smooths_when_that_lowers_the_drift_and_records_it(models, tmp_path, monkeypatch):
    import onnx

    import edgedistill.deploy.export as export_mod
    from edgedistill.deploy.quantize import SMOOTH_ALPHA

    monkeypatch.setattr(export_mod, "int8_drift", fake_drift(smoothed=1e-4, unsmoothed=1e-3))
    m = export(models, "cls", tmp_path / "a")
    sm = m["quantization"]["smooth"]
    # 2 layers: the Q/K/V input, the attention output's, the FFN's two; the pooler and classifier are Gemms
    assert sm == {"alpha": SMOOTH_ALPHA, "matmuls": 12, "inputs": 8, "calibration_inputs": 60,
                  "kl_unsmoothed": 1e-3, "kl_smoothed": 1e-4}
    assert any(n.startswith("activations smoothed before INT8") and "1.0e-03 -> 1.0e-04" in n for n in m["quantization"]["notes"])
    assert sum(n.name.endswith("_smooth") for n in onnx.load(str(tmp_path / "a" / "model.onnx")).graph.node) == 8
    assert m["parity"]["fp32_max_abs_logit_diff"] <= 1e-3  # the smoothed graph is the same FP32 model


def test_export_keeps_the_graph_unsmoothed_when_smoothing_raises_the_drift_or_is_off(models, tmp_path, monkeypatch):
    import onnx

    import edgedistill.deploy.export as export_mod

    monkeypatch.setattr(export_mod, "int8_drift", fake_drift(smoothed=2e-3, unsmoothed=1e-3))
    worse = export(models, "cls", tmp_path / "w")
    assert worse["quantization"]["smooth"] is None
    assert any(n.startswith("activations not smoothed: alpha 0.8 did not lower") for n in worse["quantization"]["notes"])

    def never(*a, **k):
        raise AssertionError("--smooth 0 measured the drift")

    monkeypatch.setattr(export_mod, "int8_drift", never)
    off = export(models, "cls", tmp_path / "b", smooth=0)
    assert off["quantization"]["smooth"] is None and not any("smooth" in n for n in off["quantization"]["notes"])
    for bundle in ("w", "b"):
        assert not any(n.name.endswith("_smooth") for n in onnx.load(str(tmp_path / bundle / "model.onnx")).graph.node)


def test_static_int8_says_it_is_not_smoothed(models, tmp_path):
    m = export(models, "cls", tmp_path / "q", calibration_data=str(models / "texts.jsonl"), min_agreement=0.5)
    assert m["quantization"]["smooth"] is None
    assert any(n.startswith("activations not smoothed") for n in m["quantization"]["notes"])


def test_cli_rejects_an_alpha_outside_0_1(models, tmp_path):
    r = CliRunner().invoke(main, ["export", str(models / "cls"), "--out", str(tmp_path / "x"),
                                  "--parity-data", str(models / "texts.jsonl"), "--smooth", "1.5"])
    assert r.exit_code != 0 and "--smooth 1.5" in r.output and "0 turns" in r.output
    assert not (tmp_path / "x").exists()


def test_a_gemm_named_to_stay_fp32_stays_fp32(models, tmp_path):
    """onnxruntime's dynamic quantizer turns a Gemm into `<name>_MatMul` before it reads nodes_to_exclude:
    the classifier Gemm kept FP32 by its own name must come out unquantized."""
    import onnx

    onnx_path = export_onnx(models / "cls", tmp_path / "onnx", "sequence-classification")["model"]
    gemms = [n for n in weight_matmuls(onnx_path) if n.endswith("Gemm")]
    assert gemms  # pooler and classifier
    target, preset, _ = detect_preset("x86")
    plan = QuantPlan(preset=preset, target=target, **PRESETS[preset], nodes_to_exclude=gemms)
    from edgedistill.deploy.quantize import quantize

    quantize(onnx_path, tmp_path / "q.onnx", plan)
    g = onnx.load(str(tmp_path / "q.onnx")).graph
    assert sum(n.op_type == "MatMulInteger" for n in g.node) == len(weight_matmuls(onnx_path)) - len(gemms)
