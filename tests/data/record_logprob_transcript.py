"""Record real scoring responses (first-token logprobs) for tests/test_teacher_transcript.py (by hand, never in CI).

    ../shared/tools/local-teacher start
    python tests/data/record_logprob_transcript.py [--base-url http://127.0.0.1:8765/v1]

Sends exactly the scoring request edgedistill sends (PromptPlan.score_messages, teacher_signal.SCORE_PARAMS)
for a few quickstart tickets and seeded e-SNLI and CQA test examples, plus one sampled request with n=2
(llama.cpp answers one choice), and writes tests/data/local_teacher_logprobs.jsonl: a meta line, then
one line per request with the messages, the params and the server's whole JSON response.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import random
import sys
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edgedistill.atomic import write_jsonl  # noqa: E402
from edgedistill.data import load_examples  # noqa: E402
from edgedistill.task import load_task  # noqa: E402
from edgedistill.teacher.dss import load_dss  # noqa: E402
from edgedistill.teacher.prompts import plan  # noqa: E402
from edgedistill.teacher.teacher_signal import SCORE_PARAMS  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", default="http://127.0.0.1:8765/v1")
    ap.add_argument("--model", default="qwen2.5-0.5b-instruct")
    ap.add_argument("--dss-dir", default=str(ROOT.parent / "shared" / "datasets" / "dss"))
    ap.add_argument("--out", default=str(Path(__file__).with_name("local_teacher_logprobs.jsonl")))
    args = ap.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key="local", max_retries=2, timeout=600)
    records = [
        {
            "meta": {
                "model": args.model,
                "server": "llama-cpp-python (../shared/tools/local-teacher), Qwen2.5-Coder-0.5B-Instruct Q4 GGUF",
                "base_url": args.base_url,
                "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "command": " ".join(["python", "tests/data/record_logprob_transcript.py"] + sys.argv[1:]),
                "python": platform.python_version(),
                "openai": openai.__version__,
            }
        }
    ]
    qs = load_task(ROOT / "examples" / "quickstart" / "task.yaml")
    cells = [("quickstart", qs, load_examples(qs, ROOT / "examples" / "quickstart" / "test.jsonl")[:8])]
    rng = random.Random(0)
    for name in ("esnli", "cqa"):
        task, rows = load_dss(name, "test", args.dss_dir)
        cells.append((name, task, rng.sample(rows, 4)))
    for name, task, examples in cells:
        p = plan(task, "zero-shot")
        for i, ex in enumerate(examples):
            for scoring, shift in (("letter", 0), ("letter", 1)) if i == 0 else (("letter", 0),):
                messages = p.score_messages(ex, scoring, shift)
                resp = client.chat.completions.create(model=args.model, messages=messages, **SCORE_PARAMS)
                records.append(
                    {
                        "task": name,
                        "kind": "score",
                        "scoring": scoring,
                        "shift": shift,
                        "example": {"id": ex.id, "input": ex.input, "choices": ex.choices, "gold": ex.gold},
                        "messages": messages,
                        "params": SCORE_PARAMS,
                        "response": resp.model_dump(mode="json"),
                    }
                )
                print(name, ex.id, shift, repr(resp.choices[0].message.content), flush=True)
        params = {"temperature": 0.7, "max_tokens": 40, "seed": 1, "n": 2}
        resp = client.chat.completions.create(model=args.model, messages=p.messages(examples[0]), **params)
        records.append(
            {
                "task": name,
                "kind": "vote",
                "example": {
                    "id": examples[0].id,
                    "input": examples[0].input,
                    "choices": examples[0].choices,
                    "gold": examples[0].gold,
                },
                "messages": p.messages(examples[0]),
                "params": params,
                "response": resp.model_dump(mode="json"),
            }
        )
    write_jsonl(args.out, records)
    print(f"wrote {len(records) - 1} records to {args.out}")


if __name__ == "__main__":
    main()
