"""Probe behind `train --pooling two-tower`: all-MiniLM-L6-v2 fine-tuned as a bi-encoder on CQA (question and each
choice embedded apart, 20 x cosine, cross-entropy over the row's choices or, --inbatch, over every choice in the
batch), plain torch, no Trainer: one loop on one screen. Same training rows (teacher labels) and test rows as
distill_accuracy.py; validation is the first 10 % of the training rows. Prints val/test accuracy per epoch.

    python benchmarks/bi_encoder_probe.py --size 3200 --seed 0 --lr 5e-5 [--inbatch] [--base DIR] [--out FILE]

Results: benchmarks/results/two_tower.md.
"""
import argparse, json, os, sys, time, random
from pathlib import Path
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE)); sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup
from distill_accuracy import PLAN, samples
from edgedistill.distill.train import default_student

ap = argparse.ArgumentParser()
ap.add_argument("--size", type=int, default=1000); ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--lr", type=float, default=5e-5); ap.add_argument("--epochs", type=int, default=3)
ap.add_argument("--batch", type=int, default=8); ap.add_argument("--scale", type=float, default=20.0)
ap.add_argument("--inbatch", action="store_true"); ap.add_argument("--out", default=None)
ap.add_argument("--base", default=None, help="a sentence-transformers model dir (default: the project's all-MiniLM-L6-v2)")
ap.add_argument("--dss-dir", default=str(HERE.parent.parent / "shared" / "datasets" / "dss"))
a = ap.parse_args()
torch.manual_seed(a.seed); random.seed(a.seed)
task, anns, test = samples("cqa", PLAN["cqa"], a.dss_dir)
rows = [r for r in anns[:a.size] if r.status == "ok" and r.label in r.choices]
n_val = round(0.1 * len(rows)); val, train = rows[:n_val], rows[n_val:]
base = a.base or default_student(); tok = AutoTokenizer.from_pretrained(base); model = AutoModel.from_pretrained(base)

def emb(texts):
    b = tok(texts, padding=True, truncation=True, max_length=48, return_tensors="pt")
    s, m = model(**b).last_hidden_state, b["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((s * m).sum(1) / m.sum(1), dim=-1)

def scores(batch):
    q = emb([r.input for r in batch]); c = emb([x for r in batch for x in r.choices]).view(len(batch), 5, -1)
    return q, c

def accuracy(rs, key):
    model.eval(); right = 0
    with torch.no_grad():
        for i in range(0, len(rs), 32):
            b = rs[i:i+32]; q, c = scores(b)
            pred = (q.unsqueeze(1) * c).sum(-1).argmax(1)
            right += sum(int(p) == r.choices.index(getattr(r, key)) for p, r in zip(pred, b))
    model.train(); return right / len(rs)

opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
steps = a.epochs * ((len(train) + a.batch - 1) // a.batch)
sch = get_linear_schedule_with_warmup(opt, int(0.1 * steps), steps)
t0 = time.time(); hist = [{"epoch": 0, "val": accuracy(val, "label"), "test": accuracy(test, "gold")}]
print(hist[-1], flush=True)
best = (hist[0]["val"], hist[0]["test"], 0)
for ep in range(1, a.epochs + 1):
    random.shuffle(train)
    for i in range(0, len(train), a.batch):
        b = train[i:i+a.batch]; q, c = scores(b)
        y = torch.tensor([r.choices.index(r.label) for r in b])
        if a.inbatch:
            logits = a.scale * q @ c.view(-1, c.shape[-1]).T; y = y + 5 * torch.arange(len(b))
        else:
            logits = a.scale * (q.unsqueeze(1) * c).sum(-1)
        loss = torch.nn.functional.cross_entropy(logits, y)
        loss.backward(); opt.step(); sch.step(); opt.zero_grad()
    hist.append({"epoch": ep, "val": accuracy(val, "label"), "test": accuracy(test, "gold"), "s": round(time.time() - t0)})
    print(hist[-1], flush=True)
    if hist[-1]["val"] > best[0]: best = (hist[-1]["val"], hist[-1]["test"], ep)
res = {"args": vars(a), "hist": hist, "best_epoch": best[2], "test_at_best_val": best[1], "wall_s": round(time.time() - t0)}
print(json.dumps(res))
if a.out: open(a.out, "w").write(json.dumps(res))
