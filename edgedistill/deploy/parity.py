"""Prove the bundle answers like the model that was trained: torch FP32 vs ONNX FP32 vs INT8.

FP32 must match to max |Δlogit| <= 1e-3 (same math, different kernels); INT8 must agree on the
label for >= 99 % of inputs (it rounds, so logits move, but decisions should not).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..edge.arith import tidy
from ..edge.expressions import choices_for
from ..model_dir import task_type as read_task_type


@dataclass
class Parity:
    examples: int
    fp32_max_abs_logit_diff: float  # torch FP32 vs ONNX FP32
    fp32_agreement: float
    int8_agreement: float | None  # label agreement, INT8 vs torch FP32
    int8_max_abs_logit_diff: float | None = None

    def to_dict(self) -> dict:
        return {k: (round(v, 8) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def torch_outputs(
    model_dir, family: str, items: list[dict], choices_field: str | None, max_length: int, batch_size: int = 16
) -> tuple[np.ndarray, list[str]]:
    """(logits, predicted labels/answers) of the transformers model, tokenized exactly as the runtime does."""
    # deferred: loads torch; evaluate and compress import this module torch-free
    import torch
    from transformers import AutoTokenizer

    from ..distill.student import load_label_model

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = load_label_model(model_dir, family).eval()
    logits, preds = [], []
    if family == "multiple-choice":  # a numeric task's student ranks the input's expressions (edge.expressions)
        task_type = read_task_type(model_dir)
        items = [{**it, choices_field: choices_for(task_type, it["input"], it.get(choices_field))} for it in items]
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    if family == "multiple-choice":  # one tensor needs one choice count: split ragged batches
        batches = [
            b
            for batch in batches
            for b in ([batch] if len({len(it[choices_field]) for it in batch}) == 1 else [[it] for it in batch])
        ]
    with torch.inference_mode():
        for batch in batches:
            texts = [it["input"] for it in batch]
            if family == "multiple-choice":
                k = len(batch[0][choices_field])
                if k == 0:  # nothing to rank (as EdgeModel.answers)
                    logits.append(np.zeros((len(batch), 0)))
                    preds += [None] * len(batch)
                    continue
                enc = tok(
                    [t for t in texts for _ in range(k)],
                    [c for it in batch for c in it[choices_field]],
                    truncation=True,
                    max_length=max_length,
                    padding=True,
                    return_tensors="pt",
                )
                out = model(**{n: v.view(len(batch), k, -1) for n, v in enc.items()}).logits
                logits.append(out.numpy())
                preds += [it[choices_field][int(j)] for it, j in zip(batch, out.argmax(-1))]
                continue
            enc = tok(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            if family == "seq2seq":
                start = torch.full((len(batch), 1), model.config.decoder_start_token_id)
                logits.append(model(**enc, decoder_input_ids=start).logits[:, -1].numpy())
                gen = model.generate(**enc, do_sample=False, num_beams=1, max_new_tokens=32)
                preds += [tidy(s).strip() for s in tok.batch_decode(gen, skip_special_tokens=True)]
                continue
            out = model(**enc).logits
            logits.append(out.numpy())
            preds += [model.config.id2label[int(j)] for j in out.argmax(-1)]
    return _flat(logits), preds


def edge_outputs(edge, items: list[dict], batch_size: int | None = None) -> tuple[np.ndarray, list[str]]:
    """The same through the bundle runtime, in its answering batches (`EdgeModel.batch_size`)."""
    logits, preds = [], []
    batch_size = batch_size or edge.batch_size
    for i in range(0, len(items), batch_size):
        batch = items[i : i + batch_size]
        if edge.family == "seq2seq":  # the first decoding step's logits, and the generated answers
            logits.append(edge.run(edge.encode(batch)))
            preds += [p["answer"] for p in edge.predict(batch, batch_size=batch_size)]
            continue
        for group, choices, group_logits in edge.logit_groups(batch):  # one run per batch: answers read the same logits
            logits.append(group_logits)
            preds += [p["label"] for p in edge.answers(group, group_logits, choices)]
    return _flat(logits), preds


def _flat(logits: list[np.ndarray]) -> np.ndarray:
    """Logits of all batches as one vector per input; ragged choice counts are padded with NaN."""
    width = max(x.shape[-1] for x in logits)
    rows = [np.pad(r.astype(np.float64), (0, width - r.shape[-1]), constant_values=np.nan) for x in logits for r in x]
    return np.stack(rows)


def compare(torch_out, fp32_out, int8_out=None) -> Parity:
    (tl, tp), (fl, fp) = torch_out, fp32_out
    fp32_diff = float(np.nanmax(np.abs(tl - fl)))
    agree = lambda a, b: float(np.mean([x == y for x, y in zip(a, b)]))  # noqa: E731
    p = Parity(len(tp), fp32_diff, agree(tp, fp), None)
    if int8_out is not None:
        il, ip = int8_out
        p.int8_agreement = agree(tp, ip)
        p.int8_max_abs_logit_diff = float(np.nanmax(np.abs(tl - il)))
    return p
