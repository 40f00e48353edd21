"""compress --into static --latency-budget: the cascade (the static student in front of the full one) is a candidate
beside the full student and the static one, scored on the same rows, its P picked on rows neither its training nor
its score used; shipped, `export OUT` builds the cascade bundle at that P. Latencies are fixed (the budget's
arithmetic without timing anything); accuracies, P and the bundles are real."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import save_file
from test_static import LABELS, WORDS, student  # noqa: F401 - module fixture

from edgedistill import pipeline
from edgedistill.annotations import read_annotations
from edgedistill.commands.export import export
from edgedistill.compress import compress as c
from edgedistill.compress.cascade import cascade_rows
from edgedistill.compress.smaller import probabilities
from edgedistill.deploy.cascade import shipped_cascade
from edgedistill.deploy.export import ExportConfig
from edgedistill.deploy.static_bundle import STATIC_WEIGHTS, is_static, load_static, static_tokenizer
from edgedistill.model_dir import read_meta
from edgedistill.runtime import EdgeModel

pytest.importorskip("model2vec")


def answers(model, texts: list[str]) -> list[str]:
    """The trained student's own labels (gold the tests score against: the full student is right on every row)."""
    return [LABELS[int(p.argmax())] for p in probabilities(model, [{"input": t} for t in texts])]


def gold_file(path, texts: list[str], labels: list[str], rows: int = 120):
    path.write_text(
        "".join(
            json.dumps({"text": texts[i % len(texts)], "label": labels[i % len(texts)]}) + "\n" for i in range(rows)
        )
    )
    return str(path)


def fixed_latency(monkeypatch, full: float, static: float, cascade: float):
    monkeypatch.setattr(
        c, "p50_ms", lambda bundles, *a: {n: static if n.startswith("static") else full for n in bundles}
    )
    monkeypatch.setattr(c, "mean_ms", lambda *a: cascade)


def compressed(student, out, gold, budget):  # noqa: F811 - the fixture imported above
    cfg = c.CompressConfig(
        model=str(student[0]),
        annotations=str(student[1]),
        out=str(out),
        into=["static"],
        latency_budget=budget,
        eval_data=gold,
        quantize="none",
        trim_vocab=False,
    )
    printed = []
    return c.compress(cfg, echo=printed.append), printed


def test_the_threshold_rows_are_held_out_of_the_static_students_rows(student, tmp_path):  # noqa: F811
    fit, rows = cascade_rows(student[1], tmp_path / "w")
    learnt, held = {a.id for a in read_annotations(fit)}, {a.id for a in read_annotations(rows)}
    assert len(held) == 6 and not learnt & held and learnt | held == {a.id for a in read_annotations(student[1])}
    one = tmp_path / "one.jsonl"
    one.write_text(student[1].read_text().splitlines()[0] + "\n")
    assert cascade_rows(one, tmp_path / "w1") == (one, None)  # too few to hold any out: P on the training rows


def test_a_budget_only_the_cascade_meets_ships_it_and_export_builds_the_cascade(student, tmp_path, monkeypatch):  # noqa: F811
    texts = [f"{w} please" for w in WORDS]  # the inputs the static student learnt: it gives MODEL's answers there
    gold = gold_file(tmp_path / "gold.jsonl", texts, answers(student[0], texts))
    fixed_latency(monkeypatch, full=5.0, static=3.0, cascade=1.0)  # a static tier over budget: only the cascade fits
    out = tmp_path / "out"
    s, printed = compressed(student, out, gold, 2.0)
    cascade = s["candidates"][-1]
    full = s["candidates"][0]
    assert s["chosen"] == cascade["name"] == f"cascade (static, else {full['name']})"
    r = cascade["cascade"]
    assert 0 < r["threshold"] <= 1 and 0 <= r["static_share"] <= 1 and cascade["p50_ms"] == 1.0
    assert r["threshold_rows"] == 6 and r["threshold_on"].startswith("annotated rows held out of the static")
    assert cascade["evidence"]["verdict"] == "shown" and cascade["evidence"]["candidates"] == 2
    assert cascade["bundle_mb"] > full["bundle_mb"]  # both tiers' graphs
    assert is_static(out / "cascade") and read_meta(out)["kind"] == "stripped" and (out / "config.json").exists()
    assert json.loads((out / "compress.json").read_text())["candidates"][-1]["cascade"] == r
    md = (out / "compress.md").read_text()
    assert f"| {cascade['name']} | 100.0 % | 1.00 (mean; P = {r['threshold']:.3g}) |" in md and "| shipped |" in md
    assert f"static tier answers {100 * r['static_share']:.1f} % of the scored inputs" in md
    assert any(line.startswith(f"{cascade['name']}: P = ") for line in printed)

    result = CliRunner().invoke(
        export, [str(out), "--out", str(tmp_path / "b"), "--quantize", "none", "--parity-data", str(student[1])]
    )
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["cascade"]["threshold"] == r["threshold"] and m["cascade"]["threshold_from"] == "compress"
    probe = [f"{w} {x}" for w in WORDS for x in ("please", "now", "dog cat")] + ["", "refund crash"]
    with EdgeModel.load(tmp_path / "b" / "cascade") as static, EdgeModel.load(tmp_path / "b") as edge:
        s_ans = static.predict(probe)
        t_ans = edge.answers(probe, edge.run(edge.encode(probe)))  # the transformer alone
        got = edge.predict(probe)
    confident = [max(a["probs"].values()) >= r["threshold"] for a in s_ans]
    assert [g["label"] for g in got] == [(s if k else t)["label"] for s, t, k in zip(s_ans, t_ans, confident)]
    assert [g["tier"] for g in got] == ["static" if k else "transformer" for k in confident]

    seen = {}  # `edgedistill run`'s export stage picks it up too
    monkeypatch.setattr(pipeline.deploy_export, "export_bundle", lambda cfg, echo: seen.setdefault("cfg", cfg) and {})
    monkeypatch.setattr(pipeline.deploy_export, "summary_lines", lambda m, out: [])
    pipeline._export(None, [ExportConfig(model=str(out), out=str(tmp_path / "run-bundle"))], print)
    assert seen["cfg"].cascade == str(out / "cascade") and float(seen["cfg"].cascade_threshold) == r["threshold"]

    given = shipped_cascade(ExportConfig(model=str(out), out="b", cascade_threshold="0.5"))
    assert given.cascade == str(out / "cascade") and given.cascade_threshold == "0.5"  # a P given wins
    assert shipped_cascade(ExportConfig(model=str(out), out="b", cascade="other")).cascade == "other"


def confidently_wrong_on(monkeypatch, token: str, label: str):
    """The static student as trained, save that `token` pulls its mean embedding to `label` with near certainty: an
    input the threshold rows do not hold, where a P picked on them lets wrong answers through."""
    real = c.distill_static

    def distill(model_dir, annotations, out_dir, work, seed=0, **kw):
        report = real(model_dir, annotations, out_dir, work, seed, **kw)
        w = load_static(out_dir)
        i = static_tokenizer(out_dir, 16).token_to_id(token)
        assert i is not None
        w["embeddings"][i] = 100 * np.linalg.pinv(w["head.weight"]) @ np.eye(len(LABELS))[LABELS.index(label)]
        save_file(w, str(out_dir / STATIC_WEIGHTS))
        return report

    monkeypatch.setattr(c, "distill_static", distill)


def test_a_budget_the_full_student_meets_more_accurately_ships_it_without_a_cascade(student, tmp_path, monkeypatch):  # noqa: F811
    texts = [f"{w} dog" for w in WORDS]
    labels = answers(student[0], texts)
    wrong = next(x for x in LABELS if labels.count(x) == min(labels.count(y) for y in LABELS))
    texts, labels = zip(*[(t, a) for t, a in zip(texts, labels) if a != wrong])
    confidently_wrong_on(monkeypatch, "dog", wrong)
    gold = gold_file(tmp_path / "gold.jsonl", list(texts), list(labels))
    fixed_latency(monkeypatch, full=1.5, static=0.5, cascade=0.8)  # all within the budget
    out = tmp_path / "out"
    s, _ = compressed(student, out, gold, 2.0)
    full, static, cascade = s["candidates"]
    assert cascade["name"].startswith("cascade") and static["name"].startswith("static")
    # P picked on the held-out annotated rows (no "dog"): the static tier answers the scored rows, wrongly
    assert cascade["cascade"]["static_share"] == 1.0 and cascade["accuracy"] == 0.0 and full["accuracy"] == 1.0
    assert s["chosen"] == full["name"] and not (out / "cascade").exists()
    assert shipped_cascade(ExportConfig(model=str(out), out="b")).cascade is None


def test_each_candidates_export_uses_compress_min_agreement(monkeypatch, tmp_path):
    """compress --min-agreement reaches every candidate's export (its INT8 parity gate), as export's own flag would."""
    import edgedistill.compress.candidates as candidates
    from edgedistill.compress.compress import CompressConfig

    class Exported(Exception):
        pass

    def fake_export(cfg, echo):
        raise Exported(cfg.min_agreement)

    monkeypatch.setattr(candidates, "export_bundle", fake_export)
    cfg = CompressConfig(model=str(tmp_path), annotations="a.jsonl", out=str(tmp_path / "o"), min_agreement=0.97)
    with pytest.raises(Exported) as e:
        candidates.measure_candidate(tmp_path, None, 1, cfg, tmp_path)
    assert e.value.args == (0.97,)


def test_the_cascade_candidate_uses_compress_cascade_agreement(monkeypatch, tmp_path):
    """compress --cascade-agreement sets the share of MODEL's answers the cascade candidate's P keeps."""
    import edgedistill.compress.cascade as cascade
    from edgedistill.compress.compress import CompressConfig

    class Exported(Exception):
        pass

    def fake_export_cascade(cfg, export_transformer, echo):
        raise Exported(cfg.cascade_agreement, cfg.min_agreement)

    monkeypatch.setattr(cascade, "export_cascade", fake_export_cascade)
    monkeypatch.setattr(cascade, "read_annotations", lambda path: [None])  # one threshold row
    rows = tmp_path / "rows.jsonl"
    cfg = CompressConfig(
        model=str(tmp_path), annotations="a.jsonl", out=str(tmp_path / "o"), cascade_agreement=0.9, min_agreement=0.97
    )
    full = {"bundle": tmp_path, "name": "full"}
    with pytest.raises(Exported) as e:
        cascade.measure_cascade(full, {}, (tmp_path, tmp_path), rows, rows, None, cfg, tmp_path)
    assert e.value.args == (0.9, 0.97)
