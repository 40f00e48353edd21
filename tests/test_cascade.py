"""export --cascade STATIC_DIR: a bundle whose static tier answers where its top probability >= P, the transformer
elsewhere; P given or searched (auto) on the parity inputs; wrong thresholds and static dirs refused."""

import json
import shutil
import subprocess

import numpy as np
import pytest
from test_static import LABELS, WORDS, static_dir, student  # noqa: F401 - module fixtures

from edgedistill.deploy.cascade import check_cascade, pick_threshold
from edgedistill.deploy.export import ExportConfig, export_bundle
from edgedistill.errors import UserError

pytest.importorskip("model2vec")


def test_the_threshold_search_picks_the_smallest_p_that_keeps_the_target_share():
    conf = [0.95, 0.9, 0.8, 0.7, 0.6, 0.5]
    static = ["a", "a", "a", "b", "a", "b"]
    transformer = ["a", "a", "a", "a", "a", "a"]  # the static tier is wrong at 0.7 and 0.5
    assert pick_threshold(conf, static, transformer, 1.0) == (0.8, 1.0)  # 0.7 would let a wrong answer through
    assert pick_threshold(conf, static, transformer, 5 / 6) == (0.6, 5 / 6)  # one wrong answer allowed
    assert pick_threshold(conf, static, transformer, 0.5) == (0.5, 4 / 6)
    assert pick_threshold([0.9, 0.8], ["b", "b"], ["a", "a"], 0.99) == (1.0, 1.0)  # no P reaches it: none static


@pytest.fixture(scope="module")
def cascade(static_dir, student, tmp_path_factory):  # noqa: F811 - the fixtures imported above
    out = tmp_path_factory.mktemp("cascade") / "b"
    said = []
    m = export_bundle(
        ExportConfig(
            model=str(student[0]),
            out=str(out),
            quantize="none",
            parity_data=str(student[1]),
            cascade=str(static_dir[0]),
        ),
        echo=said.append,
    )
    return out, m, said


def test_a_cascade_bundle_records_p_and_each_tiers_share(cascade):
    out, m, said = cascade
    c = m["cascade"]
    assert m["format_version"] == 3 and (out / "cascade" / "manifest.json").exists() and (out / "model.onnx").exists()
    assert c["threshold_from"] == "auto" and 0 < c["threshold"] <= 1 and c["target_agreement"] == 0.99
    assert c["agreement_with_transformer"] >= 0.99 and c["evidence"]["inputs"] > 0 and c["evidence"]["held_out"]
    assert abs(c["share"]["static"] + c["share"]["transformer"] - 1) < 1e-9
    assert m["size_bytes"] == m["files"]["model.onnx"]["bytes"] + m["files"]["cascade/model.onnx"]["bytes"]
    assert json.loads((out / "manifest.json").read_text())["cascade"] == c
    assert any(line.startswith("cascade: P = ") for line in said)
    from edgedistill.deploy.export import summary_lines

    assert any(line.strip().startswith("cascade") and "static tier answers" in line for line in summary_lines(m, out))


def test_the_cascade_answers_static_if_confident_else_transformer_row_by_row(cascade, tmp_path):
    from edgedistill.runtime import EdgeModel

    out, _, _ = cascade
    texts = [f"{w} {x}" for w in WORDS for x in ("please", "now", "zebra umbrella")] + ["", "hello", "crash refund"]
    with EdgeModel.load(out / "cascade") as static, EdgeModel.load(out) as edge:
        s = static.predict(texts)
        t = edge.answers(texts, edge.run(edge.encode(texts)))  # the transformer alone
        conf = [max(a["probs"].values()) for a in s]
    p = float(np.median(conf))  # a P that splits these inputs between the tiers
    bundle = tmp_path / "b"
    shutil.copytree(out, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["cascade"]["threshold"] = p
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with EdgeModel.load(bundle) as edge:
        got = edge.predict(texts, batch_size=4)
    want = [s[i] if conf[i] >= p else t[i] for i in range(len(texts))]
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert [g["tier"] for g in got] == ["static" if c >= p else "transformer" for c in conf]
    assert {g["tier"] for g in got} == {"static", "transformer"}
    for g, w in zip(got, want):
        assert np.allclose([g["probs"][k] for k in LABELS], [w["probs"][k] for k in LABELS], atol=1e-6)


def test_a_changed_static_tier_is_refused_at_load(cascade, tmp_path):
    from edgedistill.runtime import BundleError, EdgeModel

    bundle = tmp_path / "b"
    shutil.copytree(cascade[0], bundle)
    inner = bundle / "cascade" / "manifest.json"
    inner.write_text(inner.read_text() + " ")
    with pytest.raises(BundleError, match="cascade_sha256|cascade.manifest_sha256"):
        EdgeModel.load(bundle)


@pytest.mark.parametrize("bad", ["0", "1.5", "-0.2", "nan", "high", "inf"])
def test_bad_thresholds_are_refused_naming_the_flag(bad, static_dir, student, tmp_path):  # noqa: F811
    cfg = ExportConfig(
        model=str(student[0]), out=str(tmp_path / "b"), cascade=str(static_dir[0]), cascade_threshold=bad
    )
    with pytest.raises(UserError, match=r"--cascade-threshold: .*not a probability in \(0, 1\] or auto"):
        export_bundle(cfg, echo=lambda *_: None)
    assert not (tmp_path / "b").exists()


def test_the_cli_refuses_a_bad_threshold(static_dir, student, tmp_path):  # noqa: F811
    from click.testing import CliRunner

    from edgedistill.commands.export import export

    args = [str(student[0]), "--out", str(tmp_path / "b"), "--cascade", str(static_dir[0])]
    r = CliRunner().invoke(export, [*args, "--cascade-threshold", "2"])
    assert r.exit_code == 2 and "not a probability in (0, 1]" in r.output


def test_a_static_dir_of_another_task_or_no_static_dir_is_refused(static_dir, student, tmp_path):  # noqa: F811
    other = tmp_path / "other"
    shutil.copytree(static_dir[0], other)
    (other / "task.yaml").write_text((other / "task.yaml").read_text().replace("name: t", "name: sentiment"))
    cfg = ExportConfig(model=str(student[0]), out=str(tmp_path / "b"), cascade=str(other))
    with pytest.raises(UserError, match=r"--cascade .*task 'sentiment'.*but .* is task 't'.*compress MODEL --into"):
        export_bundle(cfg, echo=lambda *_: None)
    with pytest.raises(UserError, match="labels"):
        check_cascade(ExportConfig(model=str(student[0]), out="x", cascade=str(static_dir[0])), ["a", "b", "c"])
    cfg = ExportConfig(model=str(student[0]), out=str(tmp_path / "b"), cascade=str(student[0]))
    with pytest.raises(UserError, match="--cascade .*not a static student dir.*--into static"):
        export_bundle(cfg, echo=lambda *_: None)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("script", ["predict.mjs", "browser.mjs"])
def test_node_and_chromium_give_pythons_cascade_answers(cascade, tmp_path, script):
    """export/js runs the cascade as EdgeModel does: the same labels, probabilities and tiers, both tiers used."""
    import os
    from pathlib import Path

    import test_js_runtime as js

    from edgedistill.runtime import EdgeModel

    if why := js._npm_ci():
        pytest.skip(why)
    if script == "browser.mjs" and not Path(os.environ.get("CHROMIUM", "/usr/bin/chromium")).exists():
        pytest.skip("chromium missing (DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)")
    items = [{"text": t} for t in js.sentences(64)] + [{"text": f"{w} please"} for w in WORDS]
    with EdgeModel.load(cascade[0] / "cascade") as static:
        conf = sorted(max(a["probs"].values()) for a in static.predict(items))
    bundle = tmp_path / "b"
    shutil.copytree(cascade[0], bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["cascade"]["threshold"] = (conf[len(conf) // 2 - 1] + conf[len(conf) // 2]) / 2  # no input at P itself
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    py = EdgeModel.load(bundle).predict(items)
    got = js.run_js(script, bundle, items)
    js.compare(py, got, f"{script} cascade")
    assert [a.get("tier") for a in got] == [a["tier"] for a in py] and {a["tier"] for a in py} == {
        "static",
        "transformer",
    }
    inner = bundle / "cascade" / "manifest.json"
    inner.write_text(inner.read_text() + " ")
    r = subprocess.run(["node", str(js.JS / "predict.mjs"), str(bundle)], input="", capture_output=True, text=True)
    assert r.returncode == 2 and "sha256 mismatch with cascade.manifest_sha256" in r.stderr, r.stderr


def test_bench_on_a_cascade_bundle_counts_both_tiers_and_says_what_it_timed(cascade, tmp_path):
    import jsonschema

    from edgedistill.measure.bench import BenchConfig, run_bench
    from edgedistill.measure.bench_report import SCHEMA_PATH

    gold = tmp_path / "test.jsonl"
    gold.write_text("".join(json.dumps({"text": f"{w} now", "label": lab}) + "\n" for w, lab in zip(WORDS, LABELS)))
    said = []
    s = BenchConfig(
        batch_sizes=[1], seq_lens=[8], threads=[1], min_time=0.01, min_iters=2, warmup=0.0, fresh_process=False
    )
    doc = run_bench(cascade[0], data=str(gold), settings=s, echo=said.append, progress=False)
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))
    b = next(v for v in doc["variants"] if v["name"] == "bundle")
    assert (
        b["files"] == ["model.onnx", "cascade/model.onnx"]
        and b["cascade"]["threshold"] == cascade[1]["cascade"]["threshold"]
    )
    assert any("the bundle is a cascade: latency rows time the transformer tier" in m for m in said)


def test_a_zipped_cascade_bundle_loads_and_answers_as_the_directory(cascade, tmp_path):
    from edgedistill.deploy.bundle import zip_bundle
    from edgedistill.runtime import EdgeModel

    shutil.copytree(cascade[0], tmp_path / "b")
    texts = [f"{w} please" for w in WORDS] + ["zebra umbrella"]
    with EdgeModel.load(zip_bundle(tmp_path / "b")) as zipped, EdgeModel.load(tmp_path / "b") as plain:
        assert zipped.static is not None and zipped.predict(texts) == plain.predict(texts)
