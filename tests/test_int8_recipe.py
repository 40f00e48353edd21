"""The INT8 recipe: --int8-fp32 ranks MatMuls by INT8 sensitivity and keeps the top ones FP32; --smooth
(SmoothQuant) moves activation outliers into the weights before dynamic INT8; both recorded in the manifest."""

import json

import numpy as np
import pytest
import tiny
import torch
from click.testing import CliRunner
from test_export import sentences

from edgedistill.cli import main
from edgedistill.deploy.export import ExportConfig, export_bundle, summary_lines
from edgedistill.deploy.onnx_export import export_onnx
from edgedistill.deploy.quantize import (
    FP32_LADDER,
    KL_BUDGET,
    PRESETS,
    QuantPlan,
    detect_preset,
    rank_sensitivity,
    weight_matmuls,
)
from edgedistill.runtime import EdgeModel

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
        f.writelines(json.dumps({"text": t}) + "\n" for t in sentences(60, seed=3))
    return d


def export(models, name, out, **kw):
    """The bundle of models/NAME. The ranking tests pass smooth=0: smoothing changes which MatMuls INT8 hurts."""
    cfg = ExportConfig(
        model=str(models / name), out=str(out), parity_data=str(models / "texts.jsonl"), parity_samples=60, **kw
    )
    return export_bundle(cfg, echo=lambda *_: None)


def feeds(models, name, n=32):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(models / name)
    texts = [json.loads(x)["text"] for x in (models / "texts.jsonl").read_text().splitlines()[:n]]
    return [{k: v for k, v in tok(t, return_tensors="np").items()} for t in texts]


def test_ranking_puts_the_sensitive_matmul_first(models, tmp_path):
    onnx_path = export_onnx(models / "broken", tmp_path / "onnx", "sequence-classification")["model"]
    # 2 layers x 6, pooler, classifier
    assert BROKEN in weight_matmuls(onnx_path) and len(weight_matmuls(onnx_path)) == 14
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
    assert any(
        n.startswith("kept the 1 most INT8-sensitive MatMuls FP32 (" + BROKEN) and "p50 x" in n for n in q["notes"]
    )
    assert m["parity"]["int8_agreement"] >= 0.99
    # what ships is that plan: the graph still has the broken MatMul in FP32, every other weight MatMul (and Gemm)
    # quantized
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
    # what ships: those 2 FP32 (a Gemm as the `<name>_MatMul` the quantizer makes of it), the other 12 of 14 INT8
    fp32, int8 = fp32_and_int8_matmuls(tmp_path / "b")
    assert sorted(fp32) == sorted(n + "_MatMul" if n.endswith("Gemm") else n for n in kept["nodes"]) and int8 == 12


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


@pytest.mark.parametrize(
    "args,message",
    [
        (["--int8-fp32", "some"], "is not a count of MatMuls or auto"),
        (["--int8-fp32", "2", "--quantize", "none"], "needs --quantize int8"),
    ],
)
def test_cli_rejects_bad_values(models, tmp_path, args, message):
    r = CliRunner().invoke(
        main,
        [
            "export",
            str(models / "cls"),
            "--out",
            str(tmp_path / "x"),
            "--parity-data",
            str(models / "texts.jsonl"),
            *args,
        ],
    )
    assert r.exit_code != 0 and message in r.output
    assert not (tmp_path / "x").exists()


def fp32_and_int8_matmuls(bundle) -> tuple[list[str], int]:
    """What the bundle's graph runs: its weight MatMuls left FP32 (node names; a MatMul reading an initializer), and
    how many weight MatMuls (and Gemms) it runs INT8 (MatMulInteger)."""
    import onnx

    g = onnx.load(str(bundle / "model.onnx")).graph
    weights = {i.name for i in g.initializer}
    fp32 = [n.name for n in g.node if n.op_type == "MatMul" and weights & set(n.input)]
    return fp32, sum(n.op_type == "MatMulInteger" for n in g.node)


def test_cli_keeps_the_n_most_sensitive_matmuls_fp32_in_the_bundle_and_says_so(models, tmp_path):
    """`--int8-fp32 1`, as the help says: the one MatMul whose INT8 moves the output most stays FP32 in the written
    graph (every other weight MatMul INT8), the manifest names it, and the CLI prints what was kept."""
    r = CliRunner().invoke(
        main,
        [
            "export",
            str(models / "broken"),
            "--out",
            str(tmp_path / "b"),
            "--parity-data",
            str(models / "texts.jsonl"),
            "--int8-fp32",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "MatMuls kept FP32" in r.output and "1 (--int8-fp32 1)" in r.output and "of all-INT8" in r.output
    assert fp32_and_int8_matmuls(tmp_path / "b") == ([BROKEN], 13)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["quantization"]["nodes_to_exclude"] == [BROKEN]


def test_pick_k_takes_the_smallest_k_meeting_both_and_flags_a_miss():
    from edgedistill.deploy.quantize import pick_k

    ladder = [
        {"k": 0, "agreement": 0.97, "kl": 3e-3},
        {"k": 1, "agreement": 0.995, "kl": 2e-3},
        {"k": 2, "agreement": 0.99, "kl": 9e-4},
        {"k": 3, "agreement": 0.998, "kl": 5e-4},
    ]
    assert pick_k(ladder, 0.99)["k"] == 2 and pick_k(ladder, 0.99)["met"] is True
    missed = pick_k(ladder, 0.999)
    assert missed["k"] == 3 and missed["met"] is False


# ---------------------------------------------------------------- --smooth


def outlier_graph(path, producer, channels=64, outlier=100.0):
    """x [1, T, 64] -> MatMul(W [64, 16]) -> y, where x's channel 0 is `outlier` times the others while W's row 0 is
    that much smaller (so the channel matters as much as the rest): what LayerNorm outliers look like to a MatMul.
    One INT8 scale for x then rounds the other 63 channels to a few steps. Where x comes from (`producer`):
      "input":     the graph's input (nothing can take 1/s: only an explicit Mul smooths it);
      "layernorm": LayerNorm(h), channel 0's gain `outlier` (1/s folds into the gain and bias);
      "residual":  that LayerNorm, whose output is also added to h for a second output r (as BERT's residual Add: a
                   fold would change r too)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.1, (channels, 16)).astype(np.float32)
    w[0] /= outlier
    gain = np.ones(channels, np.float32)
    gain[0] = outlier
    consts = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(gain, "gain"),
        numpy_helper.from_array(rng.normal(0, 0.1, channels).astype(np.float32), "bias"),
    ]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, None, 16])]
    if producer != "input":
        nodes.insert(0, helper.make_node("LayerNormalization", ["h", "gain", "bias"], ["x"], name="ln", axis=-1))
    if producer == "residual":
        nodes.append(helper.make_node("Add", ["x", "h"], ["r"], name="residual"))
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, None, channels]))
    name = "x" if producer == "input" else "h"
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, None, channels])]
    g = helper.make_graph(nodes, "g", inputs, outputs, consts if producer != "input" else consts[:1])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    feeds = []
    for t in rng.integers(8, 40, 8):
        x = rng.normal(0, 1, (1, t, channels)).astype(np.float32)
        if producer == "input":
            x[..., 0] *= outlier
        feeds.append({name: x})
    return feeds


def outputs_of(path, feeds):
    from edgedistill.deploy.quantize import _session

    s = _session(path, 1)
    return [np.concatenate([s.run(None, f)[i].reshape(-1) for f in feeds]) for i in range(len(s.get_outputs()))]


def kinds(**counts):
    from edgedistill.deploy.quantize import SITE_KINDS

    return {k: counts.get(k, 0) for k in SITE_KINDS}


@pytest.mark.parametrize(
    "producer,kind,ops",
    [("input", "mul", ["Mul", "MatMul"]), ("layernorm", "layernorm", ["LayerNormalization", "MatMul"])],
)
def test_smoothing_keeps_the_fp32_function_and_cuts_the_int8_error(tmp_path, producer, kind, ops):
    """A LayerNorm takes 1/s into its gain and bias (no Mul at run time); a graph input needs an explicit Mul."""
    import onnx

    from edgedistill.deploy.quantize import (
        SMOOTH_ALPHA,
        quantize,
        smooth_activations,
        smoothing_sites,
    )

    feeds = outlier_graph(tmp_path / "mm.onnx", producer)
    sites = smoothing_sites(tmp_path / "mm.onnx", feeds, SMOOTH_ALPHA, threads=1)
    assert [s.fold for s in sites] == [None if kind == "mul" else kind]
    info = smooth_activations(tmp_path / "mm.onnx", tmp_path / "smooth.onnx", sites, muls=True)
    assert info == {"matmuls": 1, "inputs": 1, "sites": kinds(**{kind: 1})}
    assert [n.op_type for n in onnx.load(str(tmp_path / "smooth.onnx")).graph.node] == ops
    ref = outputs_of(tmp_path / "mm.onnx", feeds)[0]
    # the same FP32 function
    assert np.abs(outputs_of(tmp_path / "smooth.onnx", feeds)[0] - ref).max() < 1e-4 * np.abs(ref).max()
    target, preset, _ = detect_preset("x86")
    plan = QuantPlan(preset=preset, target=target, **PRESETS[preset])
    err = {}
    for name in ("mm", "smooth"):
        quantize(tmp_path / f"{name}.onnx", tmp_path / f"{name}-int8.onnx", plan)
        err[name] = np.abs(outputs_of(tmp_path / f"{name}-int8.onnx", feeds)[0] - ref).mean()
    assert err["smooth"] < err["mm"] / 5, err


def test_what_cannot_fold_is_left_alone_and_a_layernorm_output_never_gets_a_mul(tmp_path):
    """Without explicit Muls an input nothing can absorb stays as it was; a LayerNorm whose output also feeds a
    residual Add is not folded (its other consumer would change), and gets no explicit Mul even when Muls are asked
    for everywhere: it stays unsmoothed, the graph as it was."""
    import onnx

    from edgedistill.deploy.quantize import (
        SMOOTH_ALPHA,
        smooth_activations,
        smoothing_sites,
    )

    feeds = outlier_graph(tmp_path / "in.onnx", "input")
    info = smooth_activations(
        tmp_path / "in.onnx",
        tmp_path / "in-folded.onnx",
        smoothing_sites(tmp_path / "in.onnx", feeds, SMOOTH_ALPHA, 1),
        muls=False,
    )
    assert info == {"matmuls": 0, "inputs": 0, "sites": kinds(unsmoothed=1)}
    assert onnx.load(str(tmp_path / "in-folded.onnx")).graph == onnx.load(str(tmp_path / "in.onnx")).graph

    feeds = outlier_graph(tmp_path / "res.onnx", "residual")
    sites = smoothing_sites(tmp_path / "res.onnx", feeds, SMOOTH_ALPHA, 1)
    assert [(s.fold, s.group) for s in sites] == [(None, "ffn_in")]
    info = smooth_activations(tmp_path / "res.onnx", tmp_path / "res-muls.onnx", sites, muls=True)
    assert info["sites"] == kinds(unsmoothed=1)
    assert onnx.load(str(tmp_path / "res-muls.onnx")).graph == onnx.load(str(tmp_path / "res.onnx")).graph


def test_a_bert_graph_folds_the_attention_output_input_into_the_value_projection(models, tmp_path):
    """In optimum's BERT graph the attention output projection reads softmax(QK) x V through reshapes and transposes:
    1/s folds into the value projection's columns and bias, exactly (its input comes out divided by s). The
    LayerNorm outputs also feed the residual Adds and the FFN output reads GELU: not folded."""
    import onnx
    from transformers import BertForSequenceClassification

    from edgedistill.deploy.quantize import (
        SMOOTH_ALPHA,
        activation_stats,
        output_change,
        smooth_activations,
        smoothing_sites,
    )

    model = BertForSequenceClassification.from_pretrained(models / "cls").eval()
    with torch.no_grad():  # a fresh model's biases are all 0, and torch's exporter shares one such tensor between them
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.5)
    model.save_pretrained(tmp_path / "biased")
    tiny.tiny_tokenizer("bert").save_pretrained(tmp_path / "biased")
    src = export_onnx(tmp_path / "biased", tmp_path / "onnx", "sequence-classification")["model"]
    fs = feeds(models, "cls")
    sites = smoothing_sites(src, fs, SMOOTH_ALPHA, threads=1)
    folded = {s.tensor: s for s in sites if s.fold}
    assert sorted(folded) == [f"/bert/encoder/layer.{i}/attention/self/Reshape_3_output_0" for i in (0, 1)]
    assert {s.fold for s in folded.values()} == {"linear"} and len(sites) == 8
    info = smooth_activations(src, tmp_path / "folded.onnx", sites, muls=False)
    assert info == {"matmuls": 2, "inputs": 2, "sites": kinds(linear=2, unsmoothed=6)}
    before, after = onnx.load(str(src)).graph, onnx.load(str(tmp_path / "folded.onnx")).graph
    assert [n.op_type for n in after.node] == [n.op_type for n in before.node]  # nothing added at run time
    assert output_change(src, tmp_path / "folded.onnx", fs, threads=1) < 1e-4
    top = {
        name: activation_stats(onnx.load(str(path)), list(folded), [], fs, threads=1)[0]
        for name, path in (("before", src), ("after", tmp_path / "folded.onnx"))
    }
    for x, site in folded.items():
        assert not np.allclose(site.scale, 1)
        np.testing.assert_allclose(top["after"][x] * site.scale, top["before"][x], rtol=1e-4)


def fake_drift(default=None, **kl):
    """int8_drift as export calls it (its work dir is drift/<graph>: unsmoothed, folded, muls_GROUP for one Mul
    group, muls_G1+G2 for the groups kept so far), with fixed answers (`default` for graphs not named): a tiny
    random model's INT8 drift is too small and too preset-dependent to say whether smoothing helps it."""

    def drift(src, plan, feeds, work, threads=2, ref=None):
        return kl[work.name] if default is None else kl.get(work.name, default)

    return drift


def layernorm_mul_consumers(path) -> int:
    """How many Muls read a LayerNormalization's output in the graph at `path`."""
    import onnx

    g = onnx.load(str(path)).graph
    outs = {n.output[0] for n in g.node if n.op_type == "LayerNormalization"}
    return sum(n.op_type == "Mul" and bool(outs & set(n.input)) for n in g.node)


def test_export_ships_the_folded_graph_when_it_lowers_the_drift_and_the_muls_do_not_pay(models, tmp_path, monkeypatch):
    import onnx

    import edgedistill.deploy.export as export_mod
    from edgedistill.deploy.quantize import MUL_KL_GAIN, SMOOTH_ALPHA

    with_muls = 4e-4 / MUL_KL_GAIN * 1.1  # not enough
    monkeypatch.setattr(
        export_mod, "int8_drift", fake_drift(unsmoothed=1e-3, folded=4e-4, **{"muls_ffn_out": with_muls})
    )
    m = export(models, "cls", tmp_path / "a")
    sm = m["quantization"]["smooth"]
    # 2 layers: the attention output's input folds into V; the Q/K/V and FFN inputs (LayerNorm + residual) cannot
    # and get no Mul; the FFN output's (GELU) cannot fold, and its Muls did not cut the drift MUL_KL_GAIN times
    width = sm["mul_groups"]["ffn_out"]["width"]
    assert sm == {
        "alpha": SMOOTH_ALPHA,
        "graph": "folded",
        "matmuls": 2,
        "inputs": 2,
        "sites": kinds(linear=2, unsmoothed=6),
        "calibration_inputs": 60,
        "kl_unsmoothed": 1e-3,
        "kl_smoothed": 4e-4,
        "kl_folded": 4e-4,
        "kl_with_muls": round(with_muls, 8),
        "mul_groups": {"ffn_out": {"inputs": 2, "width": width, "kl": round(with_muls, 8), "kept": False}},
        "mul_kl_gain": MUL_KL_GAIN,
    }
    note = next(n for n in m["quantization"]["notes"] if n.startswith("activations smoothed before INT8"))
    assert "no run-time cost" in note and "2 into a linear op" in note and "unsmoothed 1.0e-03; folded 4.0e-04" in note
    shipped = tmp_path / "a" / "model.onnx"
    assert not any(n.op_type == "Mul" and n.name.endswith("_smooth") for n in onnx.load(str(shipped)).graph.node)
    assert layernorm_mul_consumers(shipped) == 0


def test_export_keeps_the_muls_that_pay_but_never_one_on_a_layernorm_output(models, tmp_path, monkeypatch):
    import onnx

    import edgedistill.deploy.export as export_mod
    from edgedistill.deploy.quantize import MUL_KL_GAIN

    # every graph with Muls cuts the folded graph's drift MUL_KL_GAIN times: only the FFN output's (GELU) Muls ship
    monkeypatch.setattr(export_mod, "int8_drift", fake_drift(4e-4 / MUL_KL_GAIN, unsmoothed=1e-3, folded=4e-4))
    m = export(models, "cls", tmp_path / "m")
    sm = m["quantization"]["smooth"]
    assert sm["graph"] == "with_muls" and sm["sites"] == kinds(linear=2, mul=2, unsmoothed=4) and sm["matmuls"] == 4
    assert sm["kl_smoothed"] == sm["kl_with_muls"] == 2e-4
    assert {grp: g["kept"] for grp, g in sm["mul_groups"].items()} == {"ffn_out": True}
    assert any("2 Muls at run time" in n for n in m["quantization"]["notes"])
    assert any(
        "4 MatMuls, 4 inputs (2 folded, 2 by a Mul at run time (ffn_out))" in line
        for line in summary_lines(m, tmp_path / "m")
    )
    shipped = tmp_path / "m" / "model.onnx"
    assert sum(n.name.endswith("_smooth") for n in onnx.load(str(shipped)).graph.node) == 2
    # the Q/K/V and FFN inputs of both layers, whose LayerNorms also feed residual Adds: no Mul reads a LayerNorm
    assert layernorm_mul_consumers(shipped) == 0


def test_smooth_layernorm_adds_the_cheapest_mul_groups_that_cut_the_drift_enough(models, tmp_path, monkeypatch):
    """--smooth-layernorm: the LayerNorm outputs' Mul groups join the candidates, ranked by drift cut per channel:
    Q/K/V's Muls alone do not pay, with FFN-in's they do, and the wider FFN-out group is never measured with them."""
    import edgedistill.deploy.export as export_mod
    from edgedistill.deploy.quantize import MUL_KL_GAIN

    group_kl = {"muls_qkv_in": 3e-4, "muls_ffn_in": 3.1e-4, "muls_ffn_out": 2.5e-4}
    monkeypatch.setattr(
        export_mod,
        "int8_drift",
        fake_drift(unsmoothed=1e-3, folded=4e-4, **group_kl, **{"muls_qkv_in+ffn_in": 4e-4 / MUL_KL_GAIN}),
    )
    m = export(models, "cls", tmp_path / "m", smooth_layernorm=True)
    sm = m["quantization"]["smooth"]
    assert sm["graph"] == "with_muls" and sm["sites"] == kinds(linear=2, mul=4, unsmoothed=2) and sm["matmuls"] == 10
    assert {grp: g["kept"] for grp, g in sm["mul_groups"].items()} == {"qkv_in": True, "ffn_in": True, "ffn_out": False}
    assert any(
        "10 MatMuls, 6 inputs (2 folded, 4 by a Mul at run time (qkv_in, ffn_in))" in line
        for line in summary_lines(m, tmp_path / "m")
    )
    # the Q/K/V and FFN inputs of both layers, whose LayerNorms also feed residual Adds
    assert layernorm_mul_consumers(tmp_path / "m" / "model.onnx") == 4


def test_export_keeps_the_graph_unsmoothed_when_smoothing_raises_the_drift_or_is_off(models, tmp_path, monkeypatch):
    import onnx

    import edgedistill.deploy.export as export_mod

    monkeypatch.setattr(export_mod, "int8_drift", fake_drift(6e-4, unsmoothed=1e-3, folded=2e-3))
    worse = export(models, "cls", tmp_path / "w")
    assert worse["quantization"]["smooth"] is None
    assert any(
        n.startswith("activations not smoothed: alpha 0.8 did not lower") and "with muls 6.0e-04" in n
        for n in worse["quantization"]["notes"]
    )

    def never(*a, **k):
        raise AssertionError("--smooth 0 measured the drift")

    monkeypatch.setattr(export_mod, "int8_drift", never)
    off = export(models, "cls", tmp_path / "b", smooth=0)
    assert off["quantization"]["smooth"] is None and not any("smooth" in n for n in off["quantization"]["notes"])
    for bundle in ("w", "b"):
        assert not any(n.name.endswith("_smooth") for n in onnx.load(str(tmp_path / bundle / "model.onnx")).graph.node)


def test_pick_smoothing_prefers_what_costs_nothing():
    from edgedistill.deploy.quantize import MUL_KL_GAIN, pick_smoothing

    assert pick_smoothing({"unsmoothed": 1e-3, "folded": 9e-4, "with_muls": 9e-4 / MUL_KL_GAIN * 1.01}) == "folded"
    assert pick_smoothing({"unsmoothed": 1e-3, "folded": 9e-4, "with_muls": 9e-4 / MUL_KL_GAIN}) == "with_muls"
    assert pick_smoothing({"unsmoothed": 1e-3, "folded": 1e-3, "with_muls": 6e-4}) == "unsmoothed"  # neither pays
    assert pick_smoothing({"unsmoothed": 1e-3, "with_muls": 5e-4}) == "with_muls"  # nothing folds
    assert pick_smoothing({"unsmoothed": 1e-3, "folded": 2e-4}) == "folded"  # everything folds


def test_mul_groups_rank_by_drift_cut_per_channel_and_pay_at_the_gain():
    from edgedistill.deploy.quantize import MUL_KL_GAIN, muls_pay, rank_mul_groups

    widths = {"qkv_in": 384, "ffn_in": 384, "ffn_out": 1536}
    kl = {"qkv_in": 3e-4, "ffn_in": 3.5e-4, "ffn_out": 2.5e-4}
    assert rank_mul_groups(4e-4, kl, widths) == ["qkv_in", "ffn_in", "ffn_out"]  # FFN-out cuts most, costs 4x
    assert rank_mul_groups(4e-4, {**kl, "ffn_out": 1e-5}, widths)[0] == "ffn_out"  # a 40x cut is worth 4x the cost
    assert rank_mul_groups(4e-4, {**kl, "ffn_in": 4e-4}, widths) == ["qkv_in", "ffn_out"]  # no cut: never kept
    assert muls_pay(4e-4, 4e-4 / MUL_KL_GAIN) and not muls_pay(4e-4, 4e-4 / MUL_KL_GAIN * 1.01)


def test_static_int8_says_it_is_not_smoothed(models, tmp_path):
    m = export(models, "cls", tmp_path / "q", calibration_data=str(models / "texts.jsonl"), min_agreement=0.5)
    assert m["quantization"]["smooth"] is None
    assert any(n.startswith("activations not smoothed") for n in m["quantization"]["notes"])


def test_cli_rejects_an_alpha_outside_0_1(models, tmp_path):
    r = CliRunner().invoke(
        main,
        [
            "export",
            str(models / "cls"),
            "--out",
            str(tmp_path / "x"),
            "--parity-data",
            str(models / "texts.jsonl"),
            "--smooth",
            "1.5",
        ],
    )
    assert r.exit_code != 0 and "'--smooth': 1.5 is not in the range 0<=x<=1" in r.output
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
