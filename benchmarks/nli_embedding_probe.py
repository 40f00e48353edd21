"""Probe behind `train --pooling two-tower` for classification: how much of e-SNLI does the *untrained*
all-MiniLM-L6-v2 already separate, read as two texts or as one? A logistic regression (scikit-learn) on the
frozen base's mean states, trained on the same teacher-labelled rows as distill_accuracy.py (less its 10 %
validation share), scored on the same 500 test rows:

  two texts: [u, v, |u - v|, u * v] of premise and hypothesis embedded apart (Sentence-BERT's NLI features)
  one text:  the mean state of "Premise: ... Hypothesis: ..." embedded whole (what the joint head starts from)

    python benchmarks/nli_embedding_probe.py --sizes 200,700,2000 [--out FILE]

Results: benchmarks/results/two_tower.md.
"""
import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE)); sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main():
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel, AutoTokenizer

    from distill_accuracy import PAIR_SPLITS, PLAN, samples
    from edgedistill.distill.train import default_student

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="200,700,2000")
    ap.add_argument("--C", default="0.1,1,10", help="inverse L2 strengths tried (each reported; none chosen on test)")
    ap.add_argument("--dss-dir", default=str(HERE.parent.parent / "shared" / "datasets" / "dss"))
    ap.add_argument("--out")
    a = ap.parse_args()
    _, anns, test = samples("esnli", PLAN["esnli"], a.dss_dir)
    base = default_student()
    tok, model = AutoTokenizer.from_pretrained(base), AutoModel.from_pretrained(base).eval()

    @torch.no_grad()
    def embed(texts):
        out = []
        for i in range(0, len(texts), 64):
            b = tok(texts[i:i + 64], padding=True, truncation=True, max_length=64, return_tensors="pt")
            m = b["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((model(**b).last_hidden_state * m).sum(1) / m.sum(1), dim=-1))
        return torch.cat(out).numpy()

    def features(rows, two_texts):
        if not two_texts:
            return embed([r.input for r in rows])
        sides = [r.input.split(PAIR_SPLITS["esnli"], 1) for r in rows]
        u, v = embed([p.removeprefix("Premise: ") for p, _ in sides]), embed([h for _, h in sides])
        return np.concatenate([u, v, np.abs(u - v), u * v], 1)

    results = []
    gold = np.array([r.gold for r in test])
    for two_texts in (True, False):
        x_test = features(test, two_texts)
        for size in map(int, a.sizes.split(",")):
            rows = [r for r in anns[:size] if r.status == "ok"]
            train = rows[round(0.1 * len(rows)):]
            x = features(train, two_texts)
            for c in map(float, a.C.split(",")):
                clf = LogisticRegression(C=c, max_iter=2000).fit(x, [r.label for r in train])
                acc = float(np.mean(clf.predict(x_test) == gold))
                results.append({"features": "two texts" if two_texts else "one text", "size": size, "C": c, "test_accuracy": acc})
                print(f"{results[-1]['features']:9}  {size:>5} rows  C {c:<5}  test {100 * acc:.1f} %", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
