"""How much faster a two-tower multiple-choice student trains and answers with each question encoded once
(student.encode_apart) than with the one pass the exported graph makes (the question packed beside every choice):
optimizer steps (or, with --answer, eager torch answers: what compress's soft targets cost) of the real
all-MiniLM-L6-v2 (or --student DIR) on real CQA batches (distill_accuracy.py's rows, max_length and batch size),
the two paths interleaved in one process, each timed on the same batches.

    python benchmarks/two_tower_speed.py [--steps 12] [--rounds 3] [--threads 1] [--answer] [--student DIR]

Results: benchmarks/results/two_tower.md.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE)), sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=12, help="optimizer steps per path per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, each timing both paths in turn")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--answer", action="store_true", help="time answering (eval, no gradient) instead of training steps")
    ap.add_argument("--student", help="base model dir (default: the packaged all-MiniLM-L6-v2)")
    ap.add_argument("--dss-dir", default=str(HERE.parent.parent / "shared" / "datasets" / "dss"))
    a = ap.parse_args()

    import torch
    from transformers import AutoTokenizer

    from distill_accuracy import PLAN, samples
    from edgedistill.distill import student
    from edgedistill.distill.train import TWO_TOWER_LR, default_student
    from edgedistill.edge.machine import describe, machine_record

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    _, anns, _ = samples("cqa", PLAN["cqa"], a.dss_dir)
    max_length, batch = PLAN["cqa"][2], PLAN["cqa"][4]
    base = a.student or default_student()
    tok = student.pair_template(AutoTokenizer.from_pretrained(base), student.TWO_TOWER)
    model = student.build_label_model(base, "multiple-choice", None, pooling=student.TWO_TOWER).train()
    opt = torch.optim.AdamW(model.parameters(), lr=TWO_TOWER_LR)
    batches = []
    for i in range(0, a.steps * batch, batch):
        rows = anns[i:i + batch]
        enc = tok([r.input for r in rows for _ in r.choices], [c for r in rows for c in r.choices], padding=True,
                  truncation=True, max_length=max_length, return_tensors="pt")
        batches.append(({n: v.view(len(rows), len(rows[0].choices), -1) for n, v in enc.items()}, torch.zeros(len(rows), dtype=torch.long)))
    paths = {"one pass": True, "question once": False}  # model.one_pass
    took = {name: [] for name in paths}

    def step(inputs, labels):
        if a.answer:
            with torch.inference_mode():
                return model(**inputs)
        model(**inputs, labels=labels).loss.backward()
        opt.step(), opt.zero_grad()

    model.train(not a.answer)

    step(*batches[0])  # warm-up
    for _ in range(a.rounds):
        for name, one_pass in paths.items():
            model.one_pass = one_pass
            started = time.perf_counter()
            for b in batches:
                step(*b)
            took[name].append((time.perf_counter() - started) / len(batches))
    rec = machine_record(threads=a.threads)
    what = "answer" if a.answer else "step"
    print(f"{describe(rec)}, load {rec['loadavg_1_5_15']}, {a.threads} thread(s); {Path(base).name}; CQA batches of {batch} rows x "
          f"5 choices, max_length {max_length}, {a.steps} {what}s x {a.rounds} rounds per path")
    print(f"| path | s per batch {what}, median (min–max of rounds) |\n|---|---|")
    for name, t in took.items():
        print(f"| {name} | {statistics.median(t):.3f} ({min(t):.3f}–{max(t):.3f}) |")
    ratio = statistics.median(took["one pass"]) / statistics.median(took["question once"])
    print(f"question once is {ratio:.2f}x faster per {what}")


if __name__ == "__main__":
    main()
