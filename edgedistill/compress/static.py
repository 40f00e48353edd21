"""The static student (`compress --into static`): token embeddings distilled by model2vec from the trained student's
own base, then trained with a linear head on the trained student's probabilities.

1. model2vec (MinishLab/model2vec, `model2vec.distill.distill`) embeds every token of the base's vocabulary with
   the base (a sentence transformer, e.g. the packaged all-MiniLM-L6-v2: offline, no download), reduces them by PCA
   (STATIC_DIMS) and weights them by token frequency (SIF). Its tokenizer is the base's, without special tokens.
2. The embeddings and a linear head over their mean are trained (torch) on MODEL's probabilities over the
   annotation inputs and --inputs (what `--into BASE` learns from, compress.smaller.teacher_annotations), the
   annotations' own labels beside them at --label-weight. A tenth of the rows is held out; training stops when the
   agreement with MODEL there has not risen for STATIC_PATIENCE epochs, and the best epoch's weights are kept.

The dir it writes is read by deploy/static_bundle.py (format, bundle). Classification only: a multiple-choice or
numeric student is refused with a UserError.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from .. import bounds
from ..atomic import build_dir, write_json
from ..deploy.static_bundle import STATIC_KIND, STATIC_WEIGHTS, static_tokenizer
from ..errors import UserError
from ..model_dir import read_meta, write_meta
from .inputs import distillation_inputs
from .smaller import teacher_annotations

STATIC = "static"  # compress --into static
STATIC_DIMS = 256  # PCA components of the distilled embeddings (model2vec's default)
STATIC_EPOCHS = 40  # at most; early stopping on the held-out agreement ends most runs sooner
STATIC_PATIENCE = 5
STATIC_LR = 3e-3  # Adam, embeddings and head alike
STATIC_BATCH = 32
STATIC_HOLD_OUT = 0.1


def check_static(model_dir) -> None:
    """A UserError unless MODEL is a classifier a static student can learn from."""
    meta = read_meta(model_dir)
    if meta.get("family") != "sequence-classification":
        raise UserError(
            f"--into static: MODEL is a {meta.get('family')} student; static students are classifiers for now "
            "(a multiple-choice one would score each (question, choice) pair). Use --into BASE or --layers K"
        )


def student_base(model_dir) -> Path:
    """The base the trained student was fine-tuned from (its train.json), which model2vec distills the static
    embeddings from."""
    meta = read_meta(model_dir)
    for d in (model_dir, meta.get("source"), meta.get("distilled_from")):
        f = Path(d) / "train.json" if d else None
        if f and f.exists():
            t = json.loads(f.read_text())
            base = t.get("base") or t.get("config", {}).get("student")  # train.json before "base": the config's
            if base and (Path(base) / "config.json").exists():
                return Path(base)
    raise UserError(
        f"--into static: the base {model_dir} was trained from is not found (its train.json, through "
        "edgedistill.json's source, names it); model2vec distills the static embeddings from that base, offline"
    )


def _soft_target_rows(model_dir, annotations, work: Path, inputs, label_weight: float, ensemble) -> list[dict]:
    """MODEL's probabilities (and, at label_weight, the teacher's labels) over the annotations and --inputs,
    computed once per work dir."""
    soft = work / ("soft_targets.jsonl" if not label_weight else "soft_targets_labels.jsonl")
    if not soft.exists():
        rows = distillation_inputs(annotations, inputs)
        teacher_annotations(model_dir, rows, soft, keep_labels=label_weight > 0, ensemble=ensemble)
    return [json.loads(line) for line in soft.read_text().splitlines() if line.strip()]


def _encode_targets(rows, labels, engine_dir: Path, max_length: int):
    """The rows' token ids (the static tokenizer), soft targets in label order, hard label indices (-1: none)."""
    tok = static_tokenizer(engine_dir, max_length)
    ids = [e.ids for e in tok.encode_batch([r["input"] for r in rows])]
    soft_p = np.array([[r["label_probs"].get(k, 0.0) for k in labels] for r in rows], np.float32)
    hard = np.array([labels.index(r["label"]) if r.get("label") in labels else -1 for r in rows])
    return ids, soft_p, hard


def distill_static(
    model_dir,
    annotations,
    out_dir,
    work: Path,
    seed: int = 0,
    echo=print,
    inputs=None,
    label_weight: float = 0.0,
    ensemble=(),
) -> dict:
    """The static student of model_dir (a stripped classifier) into out_dir; returns {val_agreement, train_s}."""
    # deferred: model2vec's distillation and the training load torch; importing compress stays torch-free
    import torch
    from model2vec.distill import distill

    check_static(model_dir)
    if bounds.problem("compress", "label_weight", label_weight):
        raise UserError(
            f"label weight {label_weight:g}: must be at least 0 and below 1 (1 would ignore the trained student)"
        )
    t0 = time.perf_counter()
    meta = read_meta(model_dir)
    base = student_base(model_dir)
    echo(f"static: model2vec distilling token embeddings from {base} ...")
    m2v = distill(str(base), pca_dims=STATIC_DIMS, device="cpu")
    engine_dir = work / "model2vec"
    m2v.save_pretrained(str(engine_dir))
    rows = _soft_target_rows(model_dir, annotations, work, inputs, label_weight, ensemble)
    labels = list(meta["labels"])
    ids, soft_p, hard = _encode_targets(rows, labels, engine_dir, int(meta["max_length"]))
    emb = np.asarray(m2v.embedding, np.float32)
    torch.manual_seed(seed)
    weights, val = _train(torch, emb, ids, soft_p, hard, label_weight, seed)
    with build_dir(out_dir) as tmp:
        save_file(weights, str(tmp / STATIC_WEIGHTS))
        shutil.copyfile(engine_dir / "tokenizer.json", tmp / "tokenizer.json")
        shutil.copyfile(Path(model_dir) / "task.yaml", tmp / "task.yaml")
        report = {"val_agreement": val, "train_s": time.perf_counter() - t0, "rows": len(rows)}
        write_json(tmp / "static.json", report)
        write_meta(
            tmp,
            {
                "kind": STATIC_KIND,
                "family": "sequence-classification",
                "max_length": meta["max_length"],
                "labels": labels,
                "source": meta.get("source"),
                "distilled_from": str(Path(model_dir).resolve()),
                "base": str(base),
                "static": {"engine": "model2vec", "pca_dims": STATIC_DIMS, "label_weight": label_weight},
            },
        )
    return report


def _train(torch, emb: np.ndarray, ids, soft_p, hard, label_weight: float, seed: int):
    """Embeddings + linear head on the soft targets (KL) and, at label_weight, the hard labels (cross-entropy);
    (the best epoch's arrays, its held-out agreement with MODEL)."""
    n = len(ids)
    order = sorted(range(n), key=lambda i: hashlib.sha1(f"{seed}:{i}".encode()).hexdigest())
    n_val = max(1, round(STATIC_HOLD_OUT * n)) if n >= 10 else 0
    val_idx, fit_idx = order[:n_val], order[n_val:]
    embedding = torch.nn.EmbeddingBag.from_pretrained(torch.from_numpy(emb), freeze=False, mode="mean")
    head = torch.nn.Linear(emb.shape[1], soft_p.shape[1])
    params = [*embedding.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=STATIC_LR)
    soft_t, hard_t = torch.from_numpy(soft_p), torch.from_numpy(hard)

    def forward(batch):
        flat = torch.tensor([t for i in batch for t in ids[i]], dtype=torch.long)
        offsets = torch.tensor(np.cumsum([0] + [len(ids[i]) for i in batch[:-1]]), dtype=torch.long)
        return head(embedding(flat, offsets))  # an empty bag's mean is zeros, as the bundle's graph gives

    def agreement(idx) -> float:
        with torch.no_grad():
            pred = forward(idx).argmax(1)
        return float((pred == soft_t[idx].argmax(1)).float().mean())

    rng = np.random.default_rng(seed)
    best, best_state, stale = -1.0, None, 0
    for _ in range(STATIC_EPOCHS):
        perm = rng.permutation(fit_idx)
        for s in range(0, len(perm), STATIC_BATCH):
            batch = [int(i) for i in perm[s : s + STATIC_BATCH]]
            logits = forward(batch)
            logp = torch.log_softmax(logits, 1)
            loss = (1 - label_weight) * torch.nn.functional.kl_div(logp, soft_t[batch], reduction="batchmean")
            labelled = hard_t[batch] >= 0
            if label_weight and labelled.any():
                loss = loss + label_weight * torch.nn.functional.nll_loss(logp[labelled], hard_t[batch][labelled])
            opt.zero_grad()
            loss.backward()
            opt.step()
        score = agreement(val_idx) if val_idx else agreement(fit_idx)
        if score > best:
            best, stale = score, 0
            best_state = (embedding.weight.detach().clone(), head.weight.detach().clone(), head.bias.detach().clone())
        else:
            stale += 1
            if stale >= STATIC_PATIENCE:
                break
    e, w, b = best_state
    return {"embeddings": e.numpy(), "head.weight": w.numpy(), "head.bias": b.numpy()}, best
