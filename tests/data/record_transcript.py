"""Record real teacher responses for tests/test_parsing.py (run by hand, never in CI).

    ../shared/tools/local-teacher start
    python tests/data/record_transcript.py [--base-url http://127.0.0.1:8765/v1] [--per-cell 4]

Asks the local llama.cpp teacher (Qwen2.5-Coder-0.5B-Instruct, Q4 GGUF, served as
"qwen2.5-0.5b-instruct") about a few seeded test examples of e-SNLI, CQA and SVAMP under zero-shot,
zero-shot-cot (both stages) and label-only, with exactly the messages edgedistill would send, and
writes tests/data/local_teacher_transcript.jsonl: a meta line, then one line per example and mode
with the messages, the raw outputs and the usage of every stage. The test replays the outputs
through PromptPlan.parse, so the parser is checked against what a real small model writes.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import random
import sys
import time
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edgedistill.atomic import write_jsonl  # noqa: E402
from edgedistill.teacher.dss import load_dss  # noqa: E402
from edgedistill.teacher.prompts import plan  # noqa: E402

MODES = ("zero-shot", "zero-shot-cot", "label-only")
DATASETS = ("esnli", "cqa", "svamp")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", default="http://127.0.0.1:8765/v1")
    ap.add_argument("--model", default="qwen2.5-0.5b-instruct")
    ap.add_argument("--dss-dir", default=str(ROOT.parent / "shared" / "datasets" / "dss"))
    ap.add_argument("--per-cell", type=int, default=4, help="examples per (dataset, mode)")
    ap.add_argument("--max-tokens", type=int, default=320)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).with_name("local_teacher_transcript.jsonl")))
    args = ap.parse_args()

    client = openai.OpenAI(base_url=args.base_url, api_key="local", max_retries=2, timeout=600)
    params = {"temperature": 0.0, "max_tokens": args.max_tokens}
    records = [
        {
            "meta": {
                "model": args.model,
                "server": "llama-cpp-python (../shared/tools/local-teacher), Qwen2.5-Coder-0.5B-Instruct Q4 GGUF",
                "base_url": args.base_url,
                "params": params,
                "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "command": " ".join(["python", "tests/data/record_transcript.py"] + sys.argv[1:]),
                "python": platform.python_version(),
                "openai": openai.__version__,
            }
        }
    ]
    rng = random.Random(args.seed)
    for dataset in DATASETS:
        task, rows = load_dss(dataset, "test", args.dss_dir)
        picked = rng.sample(rows, args.per_cell * len(MODES))
        for i, mode in enumerate(MODES):
            p = plan(task, mode)
            for ex in picked[i * args.per_cell : (i + 1) * args.per_cell]:
                outputs, usages, stages = [], [], []
                for _ in range(p.stages):
                    messages = p.messages(ex, outputs)
                    t0 = time.perf_counter()
                    resp = client.chat.completions.create(model=args.model, messages=messages, **params)
                    outputs.append(resp.choices[0].message.content or "")
                    usages.append(
                        {
                            "prompt_tokens": resp.usage.prompt_tokens,
                            "completion_tokens": resp.usage.completion_tokens,
                            "finish_reason": resp.choices[0].finish_reason,
                            "seconds": round(time.perf_counter() - t0, 2),
                        }
                    )
                    stages.append(messages)
                records.append(
                    {
                        "task": dataset,
                        "mode": mode,
                        "example": {"id": ex.id, "input": ex.input, "choices": ex.choices, "gold": ex.gold},
                        "messages": stages,
                        "outputs": outputs,
                        "usage": usages,
                    }
                )
                print(
                    f"{dataset:6} {mode:14} {ex.id:>10} {usages[-1]['seconds']:6.1f}s {outputs[-1][:70]!r}", flush=True
                )
    write_jsonl(args.out, records)
    print(f"wrote {len(records) - 1} records to {args.out}")


if __name__ == "__main__":
    main()
