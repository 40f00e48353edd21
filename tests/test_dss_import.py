"""The PaLM-540B outputs of the DSS release: real teacher text through the importer and the parser."""

import json

import pytest
from click.testing import CliRunner

from edgedistill.cli import main
from edgedistill.teacher.dss import agreement, load_dss, split_output

# Measured on the full splits (see the closing note of issue 4); the bounds sit a little below.
EXPECTED = {("cqa", "test"): 0.79, ("svamp", "test"): 0.79, ("esnli", "test"): 0.72}


@pytest.mark.parametrize("dataset, split", sorted(EXPECTED))
def test_palm_labels_reproduce_gold_agreement(dss_dir, dataset, split):
    task, rows = load_dss(dataset, split, dss_dir)
    ok = sum(r.status == "ok" for r in rows) / len(rows)
    assert ok >= 0.97, f"parse rate {ok:.3f}"
    assert agreement(task, rows) >= EXPECTED[dataset, split] - 0.01
    with_rationale = [r for r in rows if r.rationale]
    assert len(with_rationale) >= 0.9 * len(rows)
    # the invented continuation ("\n\nQ: ..." / "Premise: ...") never leaks into a rationale
    assert not any("\nQ:" in r.rationale or "Premise:" in r.rationale for r in with_rationale)


def test_noise_is_cut():
    answer, rationale = split_output(
        "cqa",
        "Beavers build dams in woods. So the answer is (b) wooded area.\n\nQ: What is 2?\nA: So the answer is (a)",
    )
    assert answer == "So the answer is (b) wooded area." and rationale.strip() == "Beavers build dams in woods."
    answer, rationale = split_output(
        "esnli", "A man is a person.\nAnswer: entailment\n\nPremise: x\nHypothesis: y\nReasonings: z\nAnswer: neutral"
    )
    assert "entailment" in answer and "neutral" not in answer and rationale.strip() == "A man is a person."


def test_import_dss_command(dss_dir, tmp_path):
    r = CliRunner().invoke(
        main,
        [
            "import-dss",
            "--dataset",
            "svamp",
            "--split",
            "test",
            "--out",
            str(tmp_path),
            "--dss-dir",
            str(dss_dir),
            "--limit",
            "50",
        ],
    )
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (tmp_path / "annotations.jsonl").read_text().splitlines()]
    summary = json.loads((tmp_path / "annotate.json").read_text())
    assert len(rows) == 50 == summary["examples"] and summary["cost_usd"] == 0 and (tmp_path / "task.yaml").exists()
    assert summary["ok"] == sum(r["status"] == "ok" for r in rows)
    r = CliRunner().invoke(
        main,
        ["import-dss", "--dataset", "esnli", "--split", "train", "--out", str(tmp_path), "--dss-dir", str(dss_dir)],
    )
    assert r.exit_code != 0 and "valid, test" in r.output
