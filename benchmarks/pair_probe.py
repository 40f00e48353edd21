"""Why do the students sit at the floor on 200 e-SNLI rows, and under half the teacher on CQA? A linear
probe on frozen MiniLM features.

The students read their input as one text (e-SNLI: "Premise: …\nHypothesis: …"; CQA: the question and
one choice as a pair) and their label head the mean token state of that joint encoding: a
cross-encoder. all-MiniLM-L6-v2 was pretrained as a bi-encoder, one sentence at a time, the mean
states compared between sentences. This probe trains only a linear layer, on the same training rows
and teacher labels as benchmarks/distill_accuracy.py, over frozen features:

  joint      the mean token state of the whole input (CQA: of each question-choice pair), as the
             students' head sees it before training
  separate   the two texts (premise and hypothesis; question and choice) encoded apart, u and v, then
             [u, v, |u - v|, u * v] (InferSent / Sentence-BERT's classification head)
  cosine     CQA only, no training: the choice whose embedding is nearest the question's

and tests on the same test rows (500 e-SNLI, 300 CQA). What the frozen features already hold is the
head start each architecture gives a student with few rows to learn from.

    python benchmarks/pair_probe.py [--esnli-sizes 200,700,2000] [--cqa-sizes 100,300,1000]

The L2 strength is chosen on 10 % of the training rows (teacher labels), as the students' checkpoints
are; the probe fits on the other 90 %. Writes benchmarks/results/pair_probe.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WEIGHT_DECAYS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
SEPARATOR = "\nHypothesis: "  # the e-SNLI task's input template: "Premise: {premise}\nHypothesis: {hypothesis}"


def embed(model, tok, texts, pairs=None, max_length=64, batch=64):
    """Mean token state per text (or text pair, encoded jointly), L2-normalised: how all-MiniLM-L6-v2 embeds a sentence."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            b = tok(texts[i:i + batch], pairs[i:i + batch] if pairs else None, padding=True, truncation=True,
                    max_length=max_length, return_tensors="pt")
            states, mask = model(**b).last_hidden_state, b["attention_mask"].unsqueeze(-1)
            out.append(torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1))
    return torch.cat(out)


def pair_features(u, v):
    import torch

    return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)


def esnli_features(model, tok, inputs: list[str]) -> dict:
    premises, hypotheses = zip(*[x.removeprefix("Premise: ").split(SEPARATOR, 1) for x in inputs])
    u, v = embed(model, tok, list(premises)), embed(model, tok, list(hypotheses))
    return {"joint": embed(model, tok, inputs), "separate": pair_features(u, v)}


def cqa_features(model, tok, rows) -> dict:
    """[rows, choices, D] per featurisation; "cosine" is [rows, choices]: question-choice similarity."""
    k = len(rows[0].choices)
    questions = [r.input for r in rows for _ in r.choices]
    choices = [c for r in rows for c in r.choices]
    joint = embed(model, tok, questions, choices)
    u, v = embed(model, tok, [r.input for r in rows]), embed(model, tok, choices).view(len(rows), k, -1)
    u = u.unsqueeze(1).expand_as(v)
    return {"joint": joint.view(len(rows), k, -1), "separate": pair_features(u, v), "cosine": (u * v).sum(-1)}


def fit_linear(x, y, outputs: int, weight_decay: float):
    """Multinomial logistic regression, full batch, L-BFGS. x [n, D] -> `outputs` classes, or x [n, choices, D]
    (outputs=1): one score per choice, softmax over the choices."""
    import torch

    torch.manual_seed(0)
    layer = torch.nn.Linear(x.shape[-1], outputs)
    opt = torch.optim.LBFGS(layer.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits(layer, x), y) + weight_decay * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return layer


def logits(layer, x):
    out = layer(x)
    return out.squeeze(-1) if x.dim() == 3 else out


def probe(x_train, y_train, x_test, y_test, outputs: int) -> dict:
    """Pick the L2 strength on the first 10 % of the training rows, fit on the rest, score on test."""
    n_val = max(1, round(0.1 * len(y_train)))
    xv, yv, xt, yt = x_train[:n_val], y_train[:n_val], x_train[n_val:], y_train[n_val:]
    scored = []
    for wd in WEIGHT_DECAYS:
        layer = fit_linear(xt, yt, outputs, wd)
        scored.append(((logits(layer, xv).argmax(1) == yv).float().mean().item(), -wd, layer))
    val, neg_wd, layer = max(scored, key=lambda s: s[:2])  # ties: the stronger penalty
    return {"accuracy": (logits(layer, x_test).argmax(1) == y_test).float().mean().item(), "val_accuracy": val, "weight_decay": -neg_wd}


def run_dataset(dataset, sizes, model, tok, dss_dir) -> tuple[list[dict], dict]:
    import torch

    from distill_accuracy import PLAN, references, samples

    task, anns, test = samples(dataset, PLAN[dataset], dss_dir)
    train = anns[:max(sizes)]
    mc = dataset == "cqa"
    if mc:
        f_train, f_test = cqa_features(model, tok, train), cqa_features(model, tok, test)
        y_test = torch.tensor([a.choices.index(a.gold) for a in test])
        answer = lambda a: a.choices.index(a.label)  # noqa: E731
    else:
        f_train, f_test = esnli_features(model, tok, [a.input for a in train]), esnli_features(model, tok, [a.input for a in test])
        y_test = torch.tensor([task.labels.index(a.gold) for a in test])
        answer = lambda a: task.labels.index(a.label)  # noqa: E731
    rows = []
    if mc:
        rows.append({"dataset": dataset, "size": 0, "features": "cosine", "accuracy": (f_test["cosine"].argmax(1) == y_test).float().mean().item()})
    for n in sizes:
        keep = [i for i, a in enumerate(train[:n]) if a.status == "ok"]  # rows the teacher answered, as the students train on
        y = torch.tensor([answer(train[i]) for i in keep])
        for name in ("joint", "separate"):
            rows.append({"dataset": dataset, "size": n, "features": name,
                         **probe(f_train[name][keep], y, f_test[name], y_test, 1 if mc else len(task.labels))})
    for r in rows:
        print(f"{dataset:6} {r['size']:>5} rows  {r['features']:8}  test {100 * r['accuracy']:.1f} %", flush=True)
    return rows, {"test_rows": len(test), **references(test)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dss-dir", default=str(HERE.parent.parent / "shared" / "datasets" / "dss"))
    ap.add_argument("--esnli-sizes", default="200,700,2000")
    ap.add_argument("--cqa-sizes", default="100,300,1000")
    ap.add_argument("--out", default=str(HERE / "results" / "pair_probe.json"))
    ap.add_argument("--render", action="store_true", help="compute nothing: rebuild the .md from --out (after distill_accuracy.json changed)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.render:
        from edgedistill.atomic import write_text

        out = Path(args.out)
        return write_text(out.with_suffix(".md"), report(json.loads(out.read_text())))
    import torch
    from transformers import AutoModel, AutoTokenizer

    from edgedistill.atomic import write_json, write_text
    from edgedistill.distill.train import default_student
    from edgedistill.machine import machine_record

    began = time.time()
    base = default_student()
    tok, model = AutoTokenizer.from_pretrained(base), AutoModel.from_pretrained(base).eval()
    rows, reference = [], {}
    for dataset, sizes in (("esnli", args.esnli_sizes), ("cqa", args.cqa_sizes)):
        if sizes:
            r, reference[dataset] = run_dataset(dataset, [int(s) for s in sizes.split(",")], model, tok, args.dss_dir)
            rows += r
    res = {"command": "python " + shlex.join(["benchmarks/pair_probe.py"] + sys.argv[1:]), "machine": machine_record(threads=[torch.get_num_threads()]),
           "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(began)), "wall_s": round(time.time() - began),
           "reference": reference, "rows": rows}
    out = Path(args.out)
    write_json(out, res)
    write_text(out.with_suffix(".md"), report(res))
    print(f"wrote {out.with_suffix('.md')}")


def students() -> dict:
    """label-only test accuracy (mean ± sd over seeds) of the fine-tuned students, from results/distill_accuracy.json."""
    path = HERE / "results" / "distill_accuracy.json"
    summary = json.loads(path.read_text()).get("summary", {}) if path.exists() else {}
    return {d: {int(n): f"{100 * v['label-only']['mean']:.1f} ± {100 * v['label-only']['sd']:.1f} (n={v['label-only']['n']})"
                for n, v in by.items() if "label-only" in v} for d, by in summary.items()}


def report(res: dict) -> str:
    m, fine_tuned = res["machine"], students()
    lines = ["# What frozen MiniLM features already hold: a linear probe", "",
             f"`{res['command']}` on {m['cpu_model']} ({m['usable_cpus']} CPUs), torch {m['versions'].get('torch')}, "
             f"{res['started']}, {res['wall_s'] / 60:.1f} min. A linear layer on frozen all-MiniLM-L6-v2 features, trained on the teacher's "
             "(PaLM-540B) labels of the first N training rows of benchmarks/distill_accuracy.py (its L2 strength chosen on 10 % of them), "
             "tested against gold on the same test rows. *joint*: the mean token state of the input as the students read it (CQA: each "
             "question-choice pair); *separate*: the two texts encoded apart, [u, v, |u − v|, u · v]; *cosine* (CQA, no training): the "
             "choice nearest the question.", ""]
    for d, ref in res["reference"].items():
        by = {(r["size"], r["features"]): r for r in res["rows"] if r["dataset"] == d}
        lines += [f"## {d}", "", f"{ref['test_rows']} test rows; floor {100 * ref['floor']:.1f} %, teacher {100 * ref['teacher']:.1f} %."
                  + (f" Zero-shot cosine, no training: **{100 * by[(0, 'cosine')]['accuracy']:.1f} %**." if (0, "cosine") in by else ""), "",
                  "| training rows | joint | separate | the fine-tuned student (label-only, distill_accuracy.md) |", "|---:|---:|---:|---|"]
        for n in sorted({n for n, f in by if n}):
            lines.append(f"| {n} | {100 * by[(n, 'joint')]['accuracy']:.1f} % | {100 * by[(n, 'separate')]['accuracy']:.1f} % | "
                         f"{fine_tuned.get(d, {}).get(n, '–')} |")
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
