"""--int8-fp32: rank MatMuls by INT8 sensitivity, keep the top ones FP32, record the trade in the manifest."""

import json

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
    m = export(models, "broken", tmp_path / "b", int8_fp32="auto")
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
