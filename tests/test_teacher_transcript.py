"""The logprob path replayed from what a real server sent (tests/data/local_teacher_logprobs.jsonl,
recorded by tests/data/record_logprob_transcript.py from the local llama.cpp teacher)."""

import json
import math
from pathlib import Path

import pytest

from edgedistill.teacher.client import token_logprobs
from edgedistill.teacher.prompts import option_keys, plan
from edgedistill.teacher.teacher_signal import SCORE_PARAMS, key_distribution

TRANSCRIPT = Path(__file__).parent / "data" / "local_teacher_logprobs.jsonl"
TASKS = {
    "quickstart": Path(__file__).resolve().parents[1] / "examples" / "quickstart" / "task.yaml",
    "esnli": Path(__file__).resolve().parents[1] / "examples" / "dss" / "esnli.yaml",
    "cqa": Path(__file__).resolve().parents[1] / "examples" / "dss" / "cqa.yaml",
}


def records():
    lines = TRANSCRIPT.read_text().splitlines()
    return json.loads(lines[0])["meta"], [json.loads(x) for x in lines[1:]]


class _Ex:
    def __init__(self, d):
        self.id, self.input, self.choices, self.gold = d["id"], d["input"], d["choices"], d["gold"]


def test_real_scoring_payloads_give_distributions_over_the_options():
    from edgedistill.task import load_task

    meta, recs = records()
    scored = [r for r in recs if r["kind"] == "score"]
    assert meta["model"] and len(scored) >= 16 and {r["task"] for r in scored} == set(TASKS)
    for r in scored:
        task = load_task(TASKS[r["task"]])
        ex = _Ex(r["example"])
        # the request is still the one edgedistill sends: same words, same params
        assert (
            r["messages"] == plan(task, "zero-shot").score_messages(ex, r["scoring"], r["shift"])
            and r["params"] == SCORE_PARAMS
        )
        lp = token_logprobs(r["response"]["choices"][0]["logprobs"])
        assert lp and len(lp[0]["top"]) == SCORE_PARAMS["top_logprobs"]
        keys = option_keys(task, ex, r["scoring"], r["shift"])
        dist, shared = key_distribution(lp, list(keys.values()))
        assert dist is not None and not shared and sum(dist.values()) == pytest.approx(1.0)
        said = r["response"]["choices"][0]["message"]["content"].strip().lower().lstrip("(")
        assert said in dist  # every recorded reply names an option ("(e", "b")
        # the generated token's option holds at least that token's probability ("(b" and "b" both count for b)
        assert dist[said] >= math.exp(lp[0]["logprob"]) - 1e-6


def test_a_server_that_ignores_n_answers_once():
    _, recs = records()
    votes = [r for r in recs if r["kind"] == "vote"]
    assert votes and all(r["params"]["n"] == 2 and len(r["response"]["choices"]) == 1 for r in votes)
