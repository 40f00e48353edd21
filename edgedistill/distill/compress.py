"""Stripped student -> smaller stripped student: a trimmed vocabulary and fewer layers, distilled.

`edgedistill compress` sits between strip and export and writes the same stripped format, so
`edgedistill export` takes its output unchanged.

Vocabulary trimming. Half of MiniLM's 22.7M parameters are the 30,522-row word embedding; one task's
inputs use a few thousand of those rows. The kept set is every token the task's inputs (annotation
inputs and choices, plus `extra_texts`) tokenize to, and a safety set: the special tokens, every
single-character token (with and without the `##` prefix), so any word of known characters can still
be spelled, and the `common` commonest words (COMMON_WORDS by default): the first entries of a WordPiece
vocabulary after its placeholders and characters, which BERT's WordPiece vocabularies (MiniLM's among them) list
in order of frequency ("the", "of", "and", ...). A word the annotations happen not to use but a user
will type keeps its own embedding instead of being spelled from pieces: on the quickstart, trimming
without them cost 2 of 60 held-out tickets and with 2,000 of them none (the e-SNLI student, FP32:
66.2 % without, 67.4 % with, 67.0 % untrimmed; benchmarks/results/compress.md and
history/compress_no_common_words.md). Ids are renumbered in their original order; the embedding keeps the kept rows, the
tokenizer (tokenizer.json, vocab.txt, tokenizer_config.json) the kept entries. An input whose original
tokens were all kept tokenizes to the same tokens and gets exactly the same logits
(tests/test_compress.py); a word the kept vocabulary cannot spell becomes [UNK] (WordPiece).

Fewer layers. A K-layer student starts from K evenly spaced layers of the trained one (the first and
the last included) and is trained on the same inputs with the trained student's probabilities as soft
targets (label loss = KL to them, edgedistill.distill.train's soft-target path).

Scoring. With gold data (`--eval-data`) each candidate's bundle is scored on it. Without, a tenth of the annotated
rows (HOLD_OUT, at most HOLD_OUT_MAX, picked by a hash of their ids) is kept out of the kept vocabulary and out of
every smaller student's training, and each candidate is scored by how often it gives MODEL's answer on them: inputs
none of the candidates was built from, as an app's will be. Scored on the rows they were built from instead, a
trimmed vocabulary keeps every answer by construction and a distilled student shows its training fit. The trimmed
vocabulary's own cost, MODEL with it against MODEL without, is measured on the same unseen inputs and said; under
TRIM_AGREEMENT it is a warning (on CQA, trimmed to 1,000 questions' words, all-MiniLM-L6-v2 kept its answer on 74 % of
held-out questions and 75 % of test questions, and lost 3.7 pt: benchmarks/results/trim_unseen.md).

Another, smaller base (`--into`). The same distillation into a fresh student of another base: a large student
(all-mpnet-base-v2, trained on the teacher's labels) as the teacher's assistant, and the small default
(all-MiniLM-L6-v2) learning its probabilities on every annotation input (Mirzadeh et al. 2020, "teacher
assistant" distillation; Turc et al. 2019, "Well-Read Students"). benchmarks/distill_into.py measures it.
With `--ensemble`, the smaller students learn the average of several trained students' probabilities (other seeds or
bases): one assistant's answers are a noisy target where it is far under the teacher (CQA: benchmarks/results/
assistant.md section 5).

What the scores are worth (`keep_evidence`, the one rule). A smaller candidate (fewer layers, another base) replaces
MODEL only where the scored rows show that it keeps MODEL's answer on at least KEEP_AGREEMENT (95 %) of such inputs:
the one-sided Clopper-Pearson lower bound on its agreement with MODEL, at EVIDENCE_CONFIDENCE (95 %) Bonferroni-split
over the smaller candidates (the budget picks among them), reaches KEEP_AGREEMENT. Agreement is the quantity to bound
because it bounds every accuracy: where the candidate and MODEL give the same answer they are right or wrong together,
so on any gold labels the candidate's accuracy is at least MODEL's minus its disagreement rate; a shown candidate loses
at most 5 pt, at 95 % confidence. The bound is exact (no normal approximation, which fails near 100 %): agreeing on all
n rows it is 0.05 ** (1 / n), so fewer than 59 rows cannot show it whatever they say (3 held-out rows of a 32-row task:
36.8 %). Where the rows cannot show it, compress warns once, names the fixes (more rows to score on: --eval-data, or
--inputs, a tenth of which is held out to score on), records the evidence in compress.json and compress.md, and a
--latency-budget does not prefer the candidate over MODEL: it ships MODEL, or fails where only unshown candidates fit.
A single candidate asked for without a budget (--layers K) is shipped as asked, with the warning. With a small
task a smaller student may well be as good (benchmarks/results/compress_small.md); the rows just cannot show it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from .. import bounds
from ..atomic import build_dir
from ..errors import UserError
from ..model_dir import base_name, load_config, read_meta, task_type, weights_bytes, write_meta

TRIMMABLE_MODELS = ("WordPiece", "WordLevel")  # tokenizer models whose vocabulary is a plain token -> id map
COMMON_WORDS = (
    2000  # the commonest words kept beside the task's own tokens (about 0.8 MB of an INT8 bundle at 384 dims)
)
HOLD_OUT, HOLD_OUT_MAX = 0.1, 500  # annotated rows kept out of the candidates to score them on, without --eval-data
TRIM_AGREEMENT = 0.99  # the trimmed vocabulary keeps MODEL's answer on fewer unseen inputs than this: a warning
KEEP_AGREEMENT = 0.95  # a smaller candidate replaces MODEL only where the scored rows show it keeps this many answers
EVIDENCE_CONFIDENCE = 0.95  # the one-sided confidence of that showing, split over the smaller candidates (Bonferroni)


@dataclass
class TrimReport:
    original: int
    kept: int
    from_inputs: int
    safety: int  # special and single-character tokens the inputs do not use
    common: int = 0  # common words the inputs do not use


def kept_token_ids(
    tokenizer_json: dict, tokenize, texts: list[str], common: int = COMMON_WORDS
) -> tuple[list[int], int, int, int]:
    """(sorted kept ids, how many the texts need, how many special and character tokens add, how many common words add).

    Common words are taken from WordPiece vocabularies only: BERT's list words by frequency, a WordLevel
    vocabulary's order says nothing."""
    if common < 0:
        raise ValueError(f"common words: {common}; give 0 or more")
    model = tokenizer_json["model"]
    vocab = model["vocab"]
    used = set()
    for text in texts:
        used.update(tokenize(text))
    specials = {t["id"] for t in tokenizer_json.get("added_tokens", [])}
    specials |= {
        vocab[t] for t in (model.get("unk_token"), (tokenizer_json.get("padding") or {}).get("pad_token")) if t in vocab
    }
    prefix = model.get("continuing_subword_prefix") or "##"
    chars = {i for tok, i in vocab.items() if len(tok.removeprefix(prefix)) == 1}
    words = (
        []
        if model["type"] != "WordPiece"
        else [
            i
            for tok, i in sorted(vocab.items(), key=lambda kv: kv[1])
            if i not in specials and i not in chars and not (tok.startswith("[") and tok.endswith("]"))
        ][:common]
    )
    safety = (specials | chars) - used
    extra = set(words) - used
    return sorted(used | specials | chars | extra), len(used), len(safety), len(extra)


def remap_tokenizer_json(tj: dict, new_id: dict[int, int]) -> dict:
    """The same tokenizer over the kept tokens: every id it holds renumbered."""
    tj = json.loads(json.dumps(tj))
    tj["model"]["vocab"] = {
        tok: new_id[i] for tok, i in sorted(tj["model"]["vocab"].items(), key=lambda kv: kv[1]) if i in new_id
    }
    for t in tj.get("added_tokens", []):
        t["id"] = new_id[t["id"]]
    post = tj.get("post_processor") or {}
    for p in [post, *post.get("processors", [])]:
        for spec in (p.get("special_tokens") or {}).values():
            spec["ids"] = [new_id[i] for i in spec["ids"]]
        for key in ("sep", "cls"):
            if key in p:
                p[key] = [p[key][0], new_id[p[key][1]]]
    if tj.get("padding"):
        tj["padding"]["pad_id"] = new_id[tj["padding"]["pad_id"]]
    return tj


def trim_vocabulary(model_dir, texts: list[str], out_dir, common: int = COMMON_WORDS) -> TrimReport:
    """Write model_dir with only the vocabulary `texts` need (and the safety set, `common` common words) into out_dir."""
    import torch
    from torch import nn
    from transformers import AutoTokenizer

    from .student import load_label_model

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    meta = read_meta(model_dir)
    if meta.get("family") == "seq2seq":
        raise UserError(
            f"{model_dir}: vocabulary trimming is for encoder students; a seq2seq student's decoder "
            "writes from the whole vocabulary. Use --no-trim-vocab"
        )
    tj = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    if tj["model"]["type"] not in TRIMMABLE_MODELS:
        raise UserError(
            f"{model_dir}/tokenizer.json: a {tj['model']['type']} tokenizer; trimming handles "
            f"{', '.join(TRIMMABLE_MODELS)} vocabularies only. Use --no-trim-vocab"
        )
    tok = AutoTokenizer.from_pretrained(model_dir)
    keep, from_inputs, safety, extra = kept_token_ids(
        tj, lambda t: tok(t, add_special_tokens=False)["input_ids"], texts, common
    )
    new_id = {old: new for new, old in enumerate(keep)}

    model = load_label_model(model_dir, meta["family"])
    old = model.get_input_embeddings()
    emb = nn.Embedding(
        len(keep), old.embedding_dim, padding_idx=None if old.padding_idx is None else new_id[old.padding_idx]
    )
    with torch.no_grad():
        emb.weight.copy_(old.weight[torch.tensor(keep)])
    model.set_input_embeddings(emb)
    model.config.vocab_size = len(keep)
    for key in (
        "pad_token_id",
        "sep_token_id",
    ):  # the graph reads them (a two-tower classifier parts its text at [SEP])
        if getattr(model.config, key, None) is not None:
            setattr(model.config, key, new_id[getattr(model.config, key)])

    with build_dir(out_dir) as tmp:
        _save_beside(model, model_dir, tmp)
        (tmp / "tokenizer.json").write_text(
            json.dumps(remap_tokenizer_json(tj, new_id), ensure_ascii=False), encoding="utf-8"
        )
        if (model_dir / "vocab.txt").exists():
            order = sorted(tj["model"]["vocab"].items(), key=lambda kv: kv[1])
            (tmp / "vocab.txt").write_text("".join(t + "\n" for t, i in order if i in new_id), encoding="utf-8")
        cfg_path = tmp / "tokenizer_config.json"
        if cfg_path.exists():
            tc = json.loads(cfg_path.read_text(encoding="utf-8"))
            if "added_tokens_decoder" in tc:
                tc["added_tokens_decoder"] = {str(new_id[int(k)]): v for k, v in tc["added_tokens_decoder"].items()}
            cfg_path.write_text(json.dumps(tc, indent=2, ensure_ascii=False), encoding="utf-8")
        report = TrimReport(
            original=len(tj["model"]["vocab"]), kept=len(keep), from_inputs=from_inputs, safety=safety, common=extra
        )
        write_meta(
            tmp,
            {
                **meta,
                "kind": "stripped",
                "vocabulary": {"original": report.original, "kept": report.kept, "common_words": report.common},
            },
        )
        load_config(tmp)  # the written dir loads
    return report


def _save_beside(model, model_dir: Path, out: Path) -> None:
    """`model` saved into out with every other file of model_dir (task.yaml, edgedistill.json, tokenizer, ...)."""
    from .student import save_label_model

    for f in model_dir.iterdir():
        if f.is_file() and not f.name.startswith(("model.", "pytorch_model", "config.json")):
            shutil.copy2(f, out / f.name)
    save_label_model(model, out)


def task_texts(annotations, inputs=None, task_type: str | None = None) -> list[str]:
    """Every text the student reads from these annotations (and the unlabelled `inputs`): inputs and choices
    (a numeric task's: the input's expressions, edge.expressions)."""
    from ..annotations import read_annotations
    from ..edge.expressions import choices_for

    texts = []
    for a in [*(r.to_json() for r in read_annotations(annotations)), *unlabelled(inputs)]:
        texts.append(a["input"])
        texts += list(choices_for(task_type, a["input"], a.get("choices")) or [])
    return texts


# ---------------------------------------------------------------- fewer layers


def layers_to_keep(total: int, k: int) -> list[int]:
    """k evenly spaced layers of `total`, the first and the last among them (one: the last)."""
    if not 1 <= k <= total:
        raise UserError(f"--layers {k}: the student has {total} layers; give 1 to {total}")
    return [total - 1] if k == 1 else sorted({round(i * (total - 1) / (k - 1)) for i in range(k)})


def drop_layers(model_dir, k: int, out_dir) -> list[int]:
    """Write model_dir with k of its encoder layers (layers_to_keep) into out_dir; returns their indices."""
    from torch import nn

    from .student import load_label_model

    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    model = load_label_model(model_dir, meta["family"])
    encoder = getattr(model.base_model, "encoder", None)
    if encoder is None or not hasattr(encoder, "layer"):
        raise UserError(
            f"{model_dir}: a {model.config.model_type} model; --layers knows BERT-style encoders (encoder.layer)"
        )
    total = len(encoder.layer)
    keep = layers_to_keep(total, k)
    encoder.layer = nn.ModuleList([encoder.layer[i] for i in keep])
    model.config.num_hidden_layers = len(keep)
    with build_dir(out_dir) as tmp:
        _save_beside(model, model_dir, tmp)
        write_meta(tmp, {**meta, "kind": "stripped", "layers": {"original": total, "kept": keep}})
    return keep


def distillation_inputs(annotations, inputs=None, need_choices: bool = False) -> list[dict]:
    """What a smaller student learns from: the annotated rows (teacher's answer ok), then the unlabelled `inputs`."""
    from ..annotations import read_annotations

    annotated = [a.to_json() for a in read_annotations(annotations) if a.status == "ok" and a.label is not None]
    return annotated + unlabelled(inputs, need_choices)


def unlabelled(inputs, need_choices: bool = False) -> list[dict]:
    """Every row of an --inputs file (JSON Lines or another data format: `input`, and `choices` for multiple
    choice) as an annotation record without a label."""
    from ..data import read_rows
    from ..errors import at

    rows = []
    for line, row in read_rows(inputs) if inputs else []:
        if not isinstance(row.get("input"), str) or not row["input"].strip():
            raise at(
                inputs,
                line,
                "input",
                "missing or empty; each row of --inputs needs the text the student reads, "
                "as the annotations' `input` field",
            )
        if need_choices and not (isinstance(row.get("choices"), list) and row["choices"]):
            raise at(
                inputs, line, "choices", "missing; a multiple-choice student reads each input with its list of choices"
            )
        rows.append(
            {
                "id": f"inputs:{line}",
                "input": row["input"],
                "choices": row.get("choices"),
                "status": "ok",
                "label": None,
            }
        )
    return rows


def teacher_annotations(model_dir, rows: list[dict], out_path, keep_labels: bool = False, ensemble=()) -> int:
    """`rows` (distillation_inputs) with the trained student's probabilities as `label_probs`: the targets a smaller
    student learns (train's soft-target path); the hard label its argmax, or with keep_labels the annotator's own
    where the row has one. `ensemble`: more trained students of the task; the probabilities are then the average of
    every model's. Returns the number of rows written."""
    from ..atomic import write_jsonl
    from ..edge.expressions import candidates

    meta = read_meta(model_dir)
    mc = meta["family"] == "multiple-choice"
    if mc and task_type(model_dir) == "numeric":  # a ranking student: the choices are the input's expressions
        rows = [r for r in ({**r, "choices": candidates(r["input"])} for r in rows) if r["choices"]]
    items = [{"input": r["input"], **({"choices": r["choices"]} if mc else {})} for r in rows]
    each = [probabilities(d, items) for d in (model_dir, *ensemble)]
    out = []
    for i, r in enumerate(rows):
        p = sum(model[i] for model in each) / len(each)
        keys = r["choices"] if mc else meta["labels"]
        # the hard label is the trained student's too (validation then measures agreement with it), unless kept
        label = r["label"] if keep_labels and r.get("label") is not None else keys[int(p.argmax())]
        probs: dict[str, float] = {}
        for k, v in zip(keys, p):  # a choice listed twice (CQA has some) holds both its shares
            probs[k] = probs.get(k, 0.0) + float(v)
        out.append({**r, "label": label, "label_probs": probs})
    write_jsonl(out_path, out)
    return len(out)


def probabilities(model_dir, items: list[dict]) -> list:
    """A trained student's probabilities over each item's choices (multiple choice) or its labels, in torch."""
    import numpy as np

    from ..deploy.parity import torch_outputs
    from ..edge.runtime import softmax

    meta = read_meta(model_dir)
    mc = meta["family"] == "multiple-choice"
    logits, _ = torch_outputs(model_dir, meta["family"], items, "choices" if mc else None, meta["max_length"])
    # (ragged choice counts come padded with NaN)
    return [
        softmax(np.asarray(row[: len(it["choices"])] if mc else row, dtype=np.float64))
        for it, row in zip(items, logits)
    ]


def ensemble_note(ensemble) -> str:
    n = len(ensemble)
    return f" and {n} more student{'s' if n > 1 else ''} (their answers averaged)" if n else ""


def check_ensemble(model_dir, ensemble) -> list[Path]:
    """The --ensemble dirs, each a trained student of MODEL's task whose answers average with MODEL's: same family,
    task type and labels, else a UserError naming the dir and what differs."""
    meta, dirs = read_meta(model_dir), [Path(d) for d in ensemble or []]
    for d in dirs:
        if not (d / "config.json").exists() or read_meta(d).get("kind") not in ("stripped", "student"):
            raise UserError(
                f"--ensemble {d}: not a stripped model dir; give another trained student of this task "
                "(edgedistill train --seed N, or --student BASE, then edgedistill strip)"
            )
        other = read_meta(d)
        for what in ("family", "labels"):
            if other.get(what) != meta.get(what):
                raise UserError(
                    f"--ensemble {d}: its {what} ({other.get(what)}) differ from MODEL's ({meta.get(what)}); "
                    "give a student of the same task"
                )
        if task_type(d) != task_type(model_dir):
            raise UserError(f"--ensemble {d}: a {task_type(d)} task, MODEL's is {task_type(model_dir)}")
    return dirs


def distill_layers(
    model_dir,
    annotations,
    k: int,
    out_dir,
    work: Path,
    epochs: float = 4.0,
    batch_size: int = 16,
    lr: float | None = None,
    seed: int = 0,
    echo=print,
    inputs=None,
    label_weight: float = 0.0,
    ensemble=(),
) -> dict:
    """A k-layer student from model_dir's layers, trained on its probabilities (averaged with `ensemble`'s) over the
    annotation inputs and the unlabelled `inputs` (distillation_inputs); written stripped to out_dir."""
    meta = read_meta(model_dir)
    base = work / f"base-{k}"
    kept = drop_layers(model_dir, k, base)
    report = _distill(
        model_dir, annotations, base, out_dir, work, epochs, batch_size, lr, seed, echo, inputs, label_weight, ensemble
    )
    write_meta(
        out_dir,
        {
            **read_meta(out_dir),
            "layers": {"original": meta.get("layers", {}).get("original") or _layer_count(model_dir), "kept": kept},
            **({"vocabulary": meta["vocabulary"]} if "vocabulary" in meta else {}),
        },
    )
    shutil.rmtree(base, ignore_errors=True)
    return report


def distill_into(
    model_dir,
    annotations,
    base,
    out_dir,
    work: Path,
    epochs: float = 4.0,
    batch_size: int = 16,
    lr: float | None = None,
    seed: int = 0,
    echo=print,
    inputs=None,
    label_weight: float = 0.0,
    ensemble=(),
) -> dict:
    """A fresh student of another `base` (a transformers model dir, e.g. all-MiniLM-L6-v2) trained on model_dir's
    probabilities (averaged with `ensemble`'s) over the annotation inputs and the unlabelled `inputs`, at train's own
    rates for that base; written stripped to out_dir, its full vocabulary kept (compress trims it as a candidate)."""
    report = _distill(
        model_dir, annotations, base, out_dir, work, epochs, batch_size, lr, seed, echo, inputs, label_weight, ensemble
    )
    write_meta(
        out_dir,
        {
            **read_meta(out_dir),
            "distilled_from": str(Path(model_dir).resolve()),
            "base": str(base),
            **({"ensemble": [str(Path(d).resolve()) for d in ensemble]} if ensemble else {}),
        },
    )
    return report


def _distill(
    model_dir,
    annotations,
    base,
    out_dir,
    work: Path,
    epochs,
    batch_size,
    lr,
    seed,
    echo,
    inputs,
    label_weight: float = 0.0,
    ensemble=(),
) -> dict:
    """Train a label-only student of `base` on model_dir's probabilities (soft targets computed once per work dir), strip it.
    label_weight > 0: the annotator's own labels as hard targets beside them, at that weight (Hinton et al. 2015's
    blend; for a two-tower multiple-choice student the hard term is also the one that ranks against the batch's choices)."""
    from .strip import strip_student
    from .train import TrainConfig, train

    if bounds.problem("compress", "label_weight", label_weight):  # the range --label-weight and pipeline.yaml use
        raise UserError(
            f"label weight {label_weight:g}: must be at least 0 and below 1 (1 would ignore the trained student)"
        )
    meta = read_meta(model_dir)
    soft = work / ("soft_targets.jsonl" if not label_weight else "soft_targets_labels.jsonl")
    if not soft.exists():
        rows = distillation_inputs(annotations, inputs, need_choices=_needs_choices(model_dir))
        teacher_annotations(model_dir, rows, soft, keep_labels=label_weight > 0, ensemble=ensemble)
    student = work / f"student-{Path(out_dir).name}"
    summary = train(
        TrainConfig(
            task=str(Path(model_dir) / "task.yaml"),
            annotations=str(soft),
            out=str(student),
            student=str(base),
            mode="label-only",
            soft_weight=1.0 - label_weight,
            epochs=epochs,
            batch_size=batch_size,
            # compress --epochs as measured (compress.md), not train's min_steps
            min_steps=0,
            lr=lr,
            max_length=meta["max_length"],
            seed=seed,
            pooling=_pooling(model_dir),
        ),
        echo=echo,
    )
    strip_student(student, out_dir)
    shutil.rmtree(student, ignore_errors=True)
    return {"val_agreement": summary.get("val_accuracy"), "train_s": summary.get("elapsed_s")}


def _needs_choices(model_dir) -> bool:
    """Whether each unlabelled input needs its own choices: a multiple-choice student's, save a numeric task's (whose
    choices are the input's expressions)."""
    return read_meta(model_dir)["family"] == "multiple-choice" and task_type(model_dir) != "numeric"


def _pooling(model_dir) -> str:
    """The pooling a distilled student keeps: a two-tower student's graph reads its inputs in two parts, so its
    successor must too; any other keeps train's choice for its base (auto)."""
    from .student import TWO_TOWER, pooling_of

    return TWO_TOWER if pooling_of(load_config(model_dir)) == TWO_TOWER else "auto"


def _layer_count(model_dir) -> int:
    return json.loads((Path(model_dir) / "config.json").read_text())["num_hidden_layers"]


# ---------------------------------------------------------------- candidates and the latency budget


@dataclass
class CompressConfig:
    model: str  # a stripped model dir (edgedistill strip)
    annotations: str  # the inputs it was trained on: the kept vocabulary, the distillation inputs, the timed inputs
    out: str  # the compressed model, in the stripped format
    layers: list[int] | None = None  # layer counts to build; several need a latency budget to choose among them
    latency_budget: float | None = None  # ms per prediction (batch 1, p50, this CPU): ship the most accurate within it
    trim_vocab: bool = True
    common_words: int = COMMON_WORDS  # the commonest words kept beside the task's own tokens when trimming
    eval_data: str | None = (
        None  # gold-labelled data: each candidate's bundle accuracy (else: agreement with the student)
    )
    quantize: str = "int8"  # how each candidate is exported to be timed (as `edgedistill export` will)
    threads: int = 2
    epochs: float = 4.0  # distillation of a smaller student
    batch_size: int = 16
    lr: float | None = None
    seed: int = 0
    # More inputs of the task, unlabelled (JSON Lines with `input`): smaller students also learn the trained student's
    # probabilities on them (no teacher needed), and their tokens join the kept vocabulary
    inputs: str | None = None
    # Other, smaller bases to distill the trained student into (model dirs; "default": the packaged all-MiniLM-L6-v2),
    # each a candidate beside the layer counts
    into: list[str] | None = None
    # Smaller students' hard targets: the annotations' own labels at this weight beside MODEL's probabilities (0: its
    # probabilities alone; a two-tower multiple-choice student ranks against the batch's choices only in that term)
    label_weight: float = 0.0
    # More trained students of the task (other seeds or bases): smaller students learn the average of their
    # probabilities and MODEL's, a less noisy target than one model's
    ensemble: list[str] | None = None


def compress(cfg: CompressConfig, echo=print) -> dict:
    """Build the candidates, export and time each, ship one into cfg.out; returns the summary (compress.json)."""
    import tempfile

    from ..atomic import write_json, write_text

    layers = sorted(set(cfg.layers or []), reverse=True)
    bases = [_into_base(b) for b in cfg.into or []]
    if len(layers) + len(bases) > 1 and cfg.latency_budget is None:
        asked = " ".join(
            ([f"--layers {','.join(map(str, layers))}"] if layers else []) + [f"--into {b}" for b in cfg.into or []]
        )
        raise UserError(
            f"{asked}: several candidates need --latency-budget MS to choose among them; or give one layer count "
            "or one base"
        )
    src, out = Path(cfg.model), Path(cfg.out)
    if read_meta(src).get("kind") not in ("stripped", "student"):
        raise UserError(f"{src}: not a stripped model dir (edgedistill strip writes one)")
    ensemble = check_ensemble(src, cfg.ensemble)
    if ensemble and not (layers or bases):
        raise UserError("--ensemble: its answers are what smaller students learn; give --layers K or --into BASE too")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".work", dir=out.parent))
    try:
        full, fit, fit_inputs, held_out, held_inputs = src, cfg.annotations, cfg.inputs, None, []
        if not cfg.eval_data:
            fit, held_out = hold_out(cfg.annotations, work)
            fit_inputs, held_inputs = hold_out_inputs(
                cfg.inputs, work, HOLD_OUT_MAX - len(held_out), _needs_choices(src)
            )
            echo(
                f"scoring: {held_out_description(len(held_out), len(held_inputs), short=True)} held out of the "
                "vocabulary and the distillation; each candidate is scored by its agreement with MODEL on them "
                "(--eval-data: on gold instead)"
            )
        held_annotated = None if held_out is None else len(held_out)  # what the fixes count on
        if held_inputs:
            held_out = [*held_out, *held_inputs]
        scoring = Scoring(src, cfg.eval_data, held_out)
        if seen := scoring.seen(cfg.annotations, cfg.inputs):
            echo(f"warning: {seen}")
        vocabulary = None
        if cfg.trim_vocab:
            texts = task_texts(fit, fit_inputs, task_type(src))
            r = trim_vocabulary(src, texts, work / "trimmed", cfg.common_words)
            full = work / "trimmed"
            vocabulary = {
                "kept": r.kept,
                "original": r.original,
                "agreement_unseen": scoring.agreement(full),
                "unseen_rows": len(scoring.examples),
            }
            echo(
                f"vocabulary: kept {r.kept:,} of {r.original:,} tokens ({r.from_inputs:,} the inputs use, {r.safety:,} special "
                f"and single-character, {r.common:,} common words); MODEL with it keeps its answer on "
                f"{100 * vocabulary['agreement_unseen']:.1f} % of {len(scoring.examples):,} inputs {scoring.unseen}"
            )
        if warning := trim_warning(vocabulary):
            echo(f"warning: {warning}")
        total = _layer_count(full)
        # the student itself: one candidate among others under a budget, or when asked for (--layers TOTAL) or alone
        dirs = [full] if (cfg.latency_budget is not None or total in layers or not (layers or bases)) else []
        for k in layers:
            if k == total:
                continue
            echo(f"{k} layers: distilling from the {total}-layer student{ensemble_note(ensemble)} ...")
            distill_layers(
                full,
                fit,
                k,
                work / f"{k}-layers",
                work,
                cfg.epochs,
                cfg.batch_size,
                cfg.lr,
                cfg.seed,
                echo=lambda *_: None,
                inputs=fit_inputs,
                label_weight=cfg.label_weight,
                ensemble=ensemble,
            )
            dirs.append(work / f"{k}-layers")
        for i, base in enumerate(bases):
            echo(
                f"{base_name(base)}: distilling the {total}-layer student{ensemble_note(ensemble)} into a fresh "
                f"{base_name(base)} ..."
            )
            d = work / f"into-{i}"
            distill_into(
                full,
                fit,
                base,
                d,
                work,
                cfg.epochs,
                cfg.batch_size,
                cfg.lr,
                cfg.seed,
                echo=lambda *_: None,
                inputs=fit_inputs,
                label_weight=cfg.label_weight,
                ensemble=ensemble,
            )
            write_meta(
                d, {**read_meta(d), "distilled_from": str(src.resolve())}
            )  # not the trimmed copy in the work dir
            if cfg.trim_vocab:
                trim_vocabulary(d, texts, work / f"into-{i}-trimmed", cfg.common_words)
                d = work / f"into-{i}-trimmed"
            dirs.append(d)
        rows = [measure_candidate(d, scoring.score, weights_bytes(src), cfg, work) for d in dirs]
        smaller = sum(d != full for d in dirs)
        for d, r in zip(dirs, rows):  # MODEL itself is what the others are measured against: it needs no evidence
            agree = r.pop("agree")
            r["evidence"] = None if d == full else keep_evidence(agree, len(scoring.examples), smaller)
        for r, ms in zip(
            rows, p50_ms({r["name"]: r.pop("bundle") for r in rows}, cfg.annotations, cfg.threads).values()
        ):
            r["p50_ms"] = ms
        chosen = choose(rows, cfg.latency_budget)
        summary = {
            "source": str(src),
            "budget_ms": cfg.latency_budget,
            "threads": cfg.threads,
            "quantize": cfg.quantize,
            "accuracy_on": "eval_data (gold)"
            if cfg.eval_data
            else held_out_description(held_annotated, len(held_inputs)),
            "ensemble": [str(d) for d in ensemble],
            "vocabulary": vocabulary,
            "eval_seen": seen,
            "candidates": rows,
            "chosen": chosen and chosen["name"],
        }
        summary["evidence"] = evidence_record(summary, len(scoring.examples), held_annotated)
        summary["choice"] = choice_line(summary)
        for line in pareto_lines(summary):
            echo(line)
        if summary["evidence"]["warning"]:
            echo(f"warning: {summary['evidence']['warning']}")
        if chosen is None:
            raise UserError(no_choice_message(summary))
        if summary["choice"]:
            echo(summary["choice"])
        with build_dir(out) as tmp:
            shutil.copytree(dirs[rows.index(chosen)], tmp, dirs_exist_ok=True)
            # the trained student stays the source (export finds its annotations for parity through it)
            write_meta(
                tmp, {**read_meta(tmp), "source": read_meta(src).get("source"), "compressed_from": str(src.resolve())}
            )
            write_json(tmp / "compress.json", summary)
            pareto_plot(summary, tmp / "compress.png")
            notes = [
                n
                for n in (vocabulary_line(vocabulary), warning and f"Warning: {warning}", seen and f"Warning: {seen}")
                if n
            ]
            write_text(
                tmp / "compress.md",
                "\n".join(pareto_lines(summary) + ["", *notes, *evidence_lines(summary)])
                + "\n\n![accuracy vs latency](compress.png)\n",
            )
        return summary
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure_candidate(model_dir: Path, score, checkpoint_bytes: int, cfg: CompressConfig, work: Path) -> dict:
    """Export the candidate as `edgedistill export` would; its accuracy, its agreement with MODEL (`score`:
    Scoring.score) and its size (timed later, beside the others)."""
    from ..deploy.export import ExportConfig, export_bundle

    bundle = work / f"bundle-{Path(model_dir).name}"
    m = export_bundle(
        ExportConfig(
            model=str(model_dir),
            out=str(bundle),
            quantize=cfg.quantize,
            parity_data=cfg.annotations,
            threads=cfg.threads,
        ),
        echo=lambda *_: None,
    )
    meta, layers = read_meta(model_dir), _layer_count(model_dir)
    base = base_name(meta["base"]) if "distilled_from" in meta else None
    return {
        "name": (f"{base} distilled, " if base else "")
        + f"{layers} layers"
        + (", trimmed vocabulary" if "vocabulary" in meta else ""),
        "layers": layers,
        "base": base,
        "vocabulary": meta.get("vocabulary", {}).get("kept"),
        **score(bundle),
        "bundle": bundle,
        "bundle_mb": m["size_bytes"] / 1e6,
        "of_checkpoint": m["size_bytes"] / checkpoint_bytes,
    }


def _into_base(name: str) -> Path:
    """An --into base: a transformers model dir, or "default" for the packaged all-MiniLM-L6-v2 (train's default student)."""
    from .train import default_student

    base = Path(default_student() if name == "default" else name)
    if not (base / "config.json").exists():
        raise UserError(
            f"--into {name}: not a transformers model dir (no config.json); give a base such as all-MiniLM-L6-v2's "
            "dir, or 'default' for the packaged all-MiniLM-L6-v2"
        )
    return base


def vocabulary_line(v: dict | None) -> str | None:
    """What trimming kept, and how often the student with it keeps its answer on inputs it was not built from."""
    return v and (
        f"Trimmed vocabulary: {v['kept']:,} of {v['original']:,} tokens; with it the student keeps its answer on "
        f"{100 * v['agreement_unseen']:.1f} % of {v['unseen_rows']:,} inputs whose words it was not built from."
    )


def trim_warning(v: dict | None) -> str | None:
    """The warning a trimmed vocabulary earns by changing the student's answer on too many unseen inputs, else None."""
    if not v or v["agreement_unseen"] >= TRIM_AGREEMENT:
        return None
    return (
        f"the trimmed vocabulary changes the student's answer on {100 - 100 * v['agreement_unseen']:.1f} % of "
        f"{v['unseen_rows']:,} inputs whose words it was not built from. Give more of the task's inputs (--inputs: "
        "unlabelled, no teacher needed), keep more --common-words, or keep the whole vocabulary (--no-trim-vocab)."
    )


def hold_out(annotations, work: Path) -> tuple[Path, list]:
    """(the annotations without the held-out rows, written into work; the held-out annotated rows): HOLD_OUT of the
    rows with a teacher's answer, at most HOLD_OUT_MAX, the first by a hash of their ids (the same rows every run)."""
    from ..annotations import read_annotations
    from ..atomic import write_jsonl

    rows = read_annotations(annotations)
    usable = [a for a in rows if a.status == "ok" and a.label is not None]
    if len(usable) < 2:
        raise UserError(
            f"{annotations}: {len(usable)} annotated row(s); compress holds some out to score its candidates on and "
            "needs 2 or more, or gold-labelled data to score on (--eval-data)"
        )
    n = min(HOLD_OUT_MAX, max(1, round(HOLD_OUT * len(usable))))
    held = sorted(usable, key=lambda a: hashlib.sha1(str(a.id).encode()).hexdigest())[:n]
    ids = {a.id for a in held}
    fit = work / "annotations-fit.jsonl"
    write_jsonl(fit, [a.to_json() for a in rows if a.id not in ids])
    return fit, held


def hold_out_inputs(inputs, work: Path, most: int, need_choices: bool = False) -> tuple[Path | None, list]:
    """(the --inputs without the held-out rows, written into work; the held-out rows as Examples without gold): HOLD_OUT
    of the rows, at most `most` (what HOLD_OUT_MAX leaves beside the annotated ones), the first by a hash of their ids.
    Agreement with MODEL needs no label, so unlabelled inputs are rows to score on as good as annotated ones. (None, [])
    without --inputs."""
    from ..atomic import write_jsonl
    from ..data import Example

    if not inputs:
        return None, []
    rows = unlabelled(inputs, need_choices)
    n = max(0, min(most, round(HOLD_OUT * len(rows))))
    held = sorted(rows, key=lambda r: hashlib.sha1(r["id"].encode()).hexdigest())[:n]
    ids = {r["id"] for r in held}
    fit = work / "inputs-fit.jsonl"
    write_jsonl(
        fit,
        [
            {"input": r["input"], **({"choices": r["choices"]} if r["choices"] else {})}
            for r in rows
            if r["id"] not in ids
        ],
    )
    return fit, [Example(id=r["id"], input=r["input"], choices=r["choices"], gold=None) for r in held]


def held_out_description(annotated: int, inputs: int, short: bool = False) -> str:
    """What candidates are scored on without --eval-data: compress.json's accuracy_on, or (short) the held-out rows."""
    if short:
        return f"{annotated:,} annotated rows" + (f" and {inputs:,} of --inputs" if inputs else "")
    if not inputs:
        return f"agreement with the uncompressed student on {annotated:,} held-out annotated inputs"
    return (
        f"agreement with the uncompressed student on {annotated + inputs:,} held-out inputs "
        f"({annotated:,} annotated, {inputs:,} of --inputs)"
    )


class Scoring:
    """Answers on inputs the candidates were not built from: --eval-data's (with gold), else the held-out annotated
    rows'. `accuracy(model)` is a candidate's score: gold accuracy on --eval-data, else `agreement(model)` with
    MODEL's own answers, which are computed once, when first needed."""

    def __init__(self, source: Path, eval_data: str | None, held_out: list | None):
        from ..data import Example, load_examples
        from ..task import load_task

        self.task = load_task(source / "task.yaml")
        if eval_data:
            self.examples = load_examples(self.task, eval_data, require_gold=True)
            self.unseen = f"of {Path(eval_data).name}"
        else:
            self.examples = [Example(id=a.id, input=a.input, choices=a.choices, gold=None) for a in held_out]
            self.unseen = "held out of it"
        self.source, self.gold = source, bool(eval_data)

    def seen(self, annotations, inputs=None) -> str | None:
        """With --eval-data, the warning its rows earn by being inputs the candidates were built from (the annotations'
        or --inputs'): scores there overstate those on an app's inputs. None when none is, or without --eval-data."""
        from ..annotations import read_annotations

        if not self.gold:
            return None
        built = {a.input for a in read_annotations(annotations)} | {r["input"] for r in unlabelled(inputs)}
        n = sum(e.input in built for e in self.examples)
        if not n:
            return None
        return (
            f"{n:,} of the {len(self.examples):,} --eval-data rows are inputs of the annotations or --inputs, which "
            "the kept vocabulary and smaller students were built from, so the scores there overstate those on an "
            "app's inputs. Give --eval-data rows the annotations do not hold."
        )

    @functools.cached_property
    def reference(self) -> list[str]:
        from ..evaluate import predict_labels

        return predict_labels(self.source, self.task, self.examples)

    def agreement(self, model) -> float:
        return self.score(model)["agree"] / len(self.reference)

    def score(self, model) -> dict:
        """{"accuracy": gold accuracy with --eval-data, else the agreement rate with MODEL; "agree": on how many rows
        the model gives MODEL's answer (what keep_evidence weighs)}."""
        from ..evaluate import predict_labels, score

        answers = predict_labels(model, self.task, self.examples)
        agree = sum(a == b for a, b in zip(answers, self.reference))
        accuracy = score(self.task, self.examples, answers)["accuracy"] if self.gold else agree / len(self.reference)
        return {"accuracy": accuracy, "agree": agree}


# ---------------------------------------------------------------- what the scores are worth

EVIDENCE_RULE = (
    f"A smaller candidate replaces MODEL only where the scored rows show that it keeps MODEL's answer "
    f"on at least {100 * KEEP_AGREEMENT:.0f} % of inputs like them: the one-sided Clopper-Pearson lower "
    f"bound on its agreement with MODEL, at {100 * EVIDENCE_CONFIDENCE:.0f} % confidence split over the "
    f"smaller candidates (Bonferroni), reaches {100 * KEEP_AGREEMENT:.0f} %. Agreement bounds accuracy "
    "(on any gold labels a candidate is right wherever MODEL is and they agree), so a shown candidate "
    f"loses at most {100 - 100 * KEEP_AGREEMENT:.0f} pt at that confidence. Agreeing on all n rows, the "
    f"bound is {1 - EVIDENCE_CONFIDENCE:.2f} ** (1 / n)."
)


class Verdict(str, Enum):
    """What a smaller candidate's agreement with MODEL on the scored rows shows (keep_evidence)."""

    SHOWN = "shown"  # the lower bound reaches the target
    TOO_FEW_ROWS = "too few rows"  # even agreeing on every row, the bound would stay under the target
    ANSWERS_CHANGED = "answers changed"  # rows enough, but it changed MODEL's answer on too many of them


def agreement_lower_bound(agree: int, rows: int, alpha: float) -> float:
    """The one-sided (1 - alpha) Clopper-Pearson lower confidence bound on a rate seen `agree` times in `rows`: the rate
    at which `agree` or more of `rows` has probability alpha (0 for none; alpha ** (1 / rows) for all of them)."""
    if rows < 1 or not 0 <= agree <= rows or not 0 < alpha < 1:
        raise ValueError(f"{agree} of {rows} rows at alpha {alpha}: need rows >= 1, 0 <= agree <= rows, 0 < alpha < 1")
    if agree == 0:
        return 0.0
    if agree == rows:
        return alpha ** (1 / rows)
    lo, hi = 0.0, agree / rows
    for _ in range(60):  # P(X >= agree) grows with the rate: bisect for the rate where it is alpha
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _upper_tail(agree, rows, mid) < alpha else (lo, mid)
    return lo


def _upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), 0 < p < 1, each term in logs (no overflow at any n a data file holds)."""
    log_p, log_q, log_n = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    return math.fsum(
        math.exp(log_n - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q)
        for i in range(k, n + 1)
    )


def keep_evidence(
    agree: int, rows: int, candidates: int = 1, target: float = KEEP_AGREEMENT, confidence: float = EVIDENCE_CONFIDENCE
) -> dict:
    """The rule (EVIDENCE_RULE): whether a smaller candidate that gave MODEL's answer on `agree` of `rows` scored rows
    is shown to keep MODEL's answers. Its one-sided Clopper-Pearson lower bound on agreement, at `confidence` split over
    the `candidates` compared (Bonferroni: the budget picks among them), must reach `target`. The record compress.json
    keeps: the counts, the bound, `rows_needed` (how many rows, every one agreeing, would reach the target) and the
    Verdict (too few rows: even agreeing on all of them the bound would stay under the target)."""
    alpha = (1 - confidence) / candidates
    bound = agreement_lower_bound(agree, rows, alpha)
    verdict = (
        Verdict.SHOWN
        if bound >= target
        else Verdict.TOO_FEW_ROWS
        if alpha ** (1 / rows) < target
        else Verdict.ANSWERS_CHANGED
    )
    return {
        "agree": agree,
        "rows": rows,
        "lower_bound": round(bound, 4),
        "best_bound": round(alpha ** (1 / rows), 4),
        "target": target,
        "confidence": confidence,
        "candidates": candidates,
        "rows_needed": math.ceil(math.log(alpha) / math.log(target)),
        "verdict": verdict.value,
    }


def shown(row: dict) -> bool:
    """A candidate the budget may ship: MODEL itself (what the others are measured against), or one keep_evidence shows.
    A row without an evidence record (written before it was kept) counts as shown."""
    e = row.get("evidence")
    return e is None or e["verdict"] == Verdict.SHOWN.value


def evidence_record(s: dict, rows: int, held_out_annotated: int | None) -> dict:
    """compress.json's `evidence`: the rule, the rows scored on (held-out or --eval-data's), and the warning."""
    record = {
        "rule": EVIDENCE_RULE,
        "rows": rows,
        "target": KEEP_AGREEMENT,
        "confidence": EVIDENCE_CONFIDENCE,
        "scored_on": "held_out" if held_out_annotated is not None else "eval_data",
        "held_out_annotated": held_out_annotated,
    }
    return {**record, "warning": evidence_warning({**s, "evidence": record})}


def evidence_warning(s: dict) -> str | None:
    """The one warning a run earns where its scored rows do not show that a smaller candidate keeps MODEL's answers
    (keep_evidence), with the fixes; None where every smaller candidate is shown, or there is none."""
    weak = [r for r in s["candidates"] if not shown(r)]
    if not weak:
        return None
    few = [r for r in weak if r["evidence"]["verdict"] == Verdict.TOO_FEW_ROWS.value]
    changed = [r for r in weak if r not in few]
    parts = []
    if few:
        e = few[0]["evidence"]
        parts.append(
            f"the {e['rows']:,} rows the candidates are scored on cannot show that {_names(few)} "
            f"{'keeps' if len(few) == 1 else 'keep'} MODEL's answers: even agreeing with MODEL on all of "
            "them, "
            f"the one-sided {_pct(e['confidence'], 0)} lower bound on agreement (Clopper-Pearson"
            f"{', split over ' + str(e['candidates']) + ' candidates' if e['candidates'] > 1 else ''}) is "
            f"{_pct(e['best_bound'])}, under the {_pct(e['target'], 0)} compress needs, so "
            f"{'its score' if len(few) == 1 else 'their scores'} there ({_scores(few)}) "
            f"{'is' if len(few) == 1 else 'are'} no evidence. {_fixes(s, e)}"
        )
    for r in changed:
        e = r["evidence"]
        parts.append(
            f"{r['name']} changed MODEL's answer on {e['rows'] - e['agree']:,} of {e['rows']:,} scored rows: "
            f"its lower bound on agreement, {_pct(e['lower_bound'])}, is under the {_pct(e['target'], 0)} "
            "compress needs to prefer it to MODEL; the table says what it costs."
        )
    text = " ".join(parts)
    return text[0].lower() + text[1:]


def _fixes(s: dict, e: dict) -> str:
    """How to get rows enough to show it: a larger gold sample, or more unlabelled inputs (a tenth held out)."""
    if s["evidence"]["scored_on"] == "eval_data":
        return f"Give a larger --eval-data: {e['rows_needed']:,} gold-labelled rows or more."
    more = math.ceil(max(0, e["rows_needed"] - s["evidence"]["held_out_annotated"]) / HOLD_OUT)
    return (
        f"Give more rows to score on ({e['rows_needed']:,} or more): --eval-data FILE, a gold-labelled sample of "
        "the task, or --inputs FILE, more unlabelled inputs of the task (no teacher needed; a tenth of them is "
        f"held out to score on, so about {more:,} of them)."
    )


def choice_line(s: dict) -> str | None:
    """Which candidate was shipped and why, where the evidence rule took part in it; None where it did not."""
    chosen = next((r for r in s["candidates"] if r["name"] == s["chosen"]), None)
    if chosen is None:
        return None
    budget = s["budget_ms"]
    if budget is None:
        return (
            None
            if shown(chosen)
            else (
                f"Shipped {chosen['name']} as asked (one candidate, no --latency-budget), "
                "though the scored rows do not show that it keeps MODEL's answers."
            )
        )
    passed = [r for r in s["candidates"] if not shown(r) and r["p50_ms"] <= budget]
    if passed:
        return (
            f"Latency budget {budget:g} ms: shipped {chosen['name']}, not {_names(passed)}, which "
            f"{'fits' if len(passed) == 1 else 'fit'} the budget too: the scored rows do not show that "
            f"{'it keeps' if len(passed) == 1 else 'they keep'} MODEL's answers, so compress does not prefer "
            f"{'it' if len(passed) == 1 else 'them'} to MODEL on "
            f"{'its score' if len(passed) == 1 else 'their scores'}."
        )
    if chosen["evidence"]:
        e = chosen["evidence"]
        return (
            f"Latency budget {budget:g} ms: shipped {chosen['name']}, the most accurate within it; it gave MODEL's "
            f"answer on {e['agree']:,} of {e['rows']:,} scored rows, a lower bound of {_pct(e['lower_bound'])} "
            f"(at least {_pct(e['target'], 0)})."
        )
    return None


def no_choice_message(s: dict) -> str:
    """The UserError of a budget no candidate the rule allows meets: none is that fast, or only unshown ones are."""
    budget, rows = s["budget_ms"], s["candidates"]
    fits = [r for r in rows if r["p50_ms"] <= budget]
    if not fits:
        fastest = min(rows, key=lambda r: r["p50_ms"])
        return (
            f"--latency-budget {budget:g} ms: no candidate is that fast on this CPU; the fastest, "
            f"{fastest['name']}, takes {fastest['p50_ms']:.2f} ms. Raise the budget or add fewer --layers"
        )
    model = next((r for r in rows if r["evidence"] is None), None)
    slow = f"; MODEL itself takes {model['p50_ms']:.2f} ms" if model else ""
    return (
        f"--latency-budget {budget:g} ms: only {_names(fits)} {'meets' if len(fits) == 1 else 'meet'} it, and the "
        f"scored rows do not show that {'it keeps' if len(fits) == 1 else 'they keep'} MODEL's answers (the "
        f"warning above){slow}. Give more rows to score on (--eval-data, --inputs), raise the budget to ship "
        "MODEL, or ask for one candidate without --latency-budget (--layers K) to ship it regardless"
    )


def evidence_lines(s: dict) -> list[str]:
    """compress.md's account of the evidence: the rule, each smaller candidate's agreement and verdict, the warning,
    and which candidate was shipped and why."""
    e = s.get("evidence")
    smaller = [r for r in s["candidates"] if r.get("evidence")]
    if not e or not smaller:
        return []
    lines = ["", f"Evidence: {e['rule']}", ""]
    for r in smaller:
        v = r["evidence"]
        lines.append(
            f"- {r['name']}: MODEL's answer on {v['agree']:,} of {v['rows']:,} scored rows; lower bound "
            f"{_pct(v['lower_bound'])} (agreeing on all of them: {_pct(v['best_bound'])}; "
            f"{v['rows_needed']:,} rows, all agreeing, reach {_pct(v['target'], 0)}): {v['verdict']}."
        )
    if e.get("warning"):
        lines += ["", f"Warning: {e['warning']}"]
    if s.get("choice"):
        lines += ["", s["choice"]]
    return lines


def _names(rows: list[dict]) -> str:
    names = [r["name"] for r in rows]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _scores(rows: list[dict]) -> str:
    return ", ".join(f"{r['name']}: {_pct(r['accuracy'])}" for r in rows)


def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f} %"


def p50_ms(bundles: dict[str, Path], annotations, threads: int, min_time: float = 2.0) -> dict[str, float]:
    """Median wall time of one `EdgeModel.predict` call on one real input (tokenizing included), what an app pays,
    per bundle; the bundles take turns call by call, so noise on a shared machine hits them alike."""
    import statistics
    import time

    from ..annotations import read_annotations
    from ..runtime import EdgeModel

    models = {name: EdgeModel.load(path, threads=threads) for name, path in bundles.items()}
    field = next(iter(models.values())).manifest["task"].get("choices") or "choices"
    items = [
        {"input": a.input, **({field: a.choices} if a.choices else {})} for a in read_annotations(annotations)[:64]
    ]
    times = {name: [] for name in models}
    for model in models.values():  # warm-up
        for it in items[:5]:
            model.predict([it])
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < min_time * len(models) or n < 20:
        it = items[n % len(items)]
        for name, model in models.items():
            t0 = time.perf_counter()
            model.predict([it])
            times[name].append(time.perf_counter() - t0)
        n += 1
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def choose(rows: list[dict], budget: float | None) -> dict | None:
    """Without a budget the only candidate (asked for by name). Within a budget the most accurate (ties: the faster) of
    MODEL itself and the smaller candidates its scored rows show keep its answers (`shown`); None when none is."""
    fits = [r for r in rows if budget is None or (r["p50_ms"] <= budget and shown(r))]
    return max(fits, key=lambda r: (r["accuracy"], -r["p50_ms"])) if fits else None


def pareto_lines(s: dict) -> list[str]:
    confidence = _pct((s.get("evidence") or {}).get("confidence", EVIDENCE_CONFIDENCE), 0)
    header = (
        f"| candidate | accuracy ({s['accuracy_on']}) | p50 ms / prediction | bundle MB | of the FP32 checkpoint "
        f"| gave MODEL's answer (one-sided {confidence} lower bound): keeps its answers? | |"
    )
    lines = [header, "|---|---:|---:|---:|---:|---|---|"]
    for r in s["candidates"]:
        mark = (
            "shipped"
            if r["name"] == s["chosen"]
            else ("over budget" if s["budget_ms"] and r["p50_ms"] > s["budget_ms"] else "")
        )
        lines.append(
            f"| {r['name']} | {100 * r['accuracy']:.1f} % | {r['p50_ms']:.2f} | {r['bundle_mb']:.1f} | "
            f"{100 * r['of_checkpoint']:.1f} % | {_evidence_cell(r)} | {mark} |"
        )
    return lines


def _evidence_cell(r: dict) -> str:
    if "evidence" not in r:  # a compress.json written before the evidence was recorded
        return "–"
    e = r["evidence"]
    if e is None:
        return "MODEL itself"
    return f"{e['agree']:,} of {e['rows']:,} (≥ {_pct(e['lower_bound'])}): {e['verdict']}"


def pareto_plot(s: dict, path: Path, chosen_label: str = "shipped") -> None:
    """Accuracy against p50 latency, one point per candidate, its area the bundle's size; s["chosen"] starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in s["candidates"]:
        shipped = r["name"] == s["chosen"]
        ax.scatter(
            r["p50_ms"],
            100 * r["accuracy"],
            s=30 * r["bundle_mb"],
            alpha=0.6,
            color="#d4862c" if shipped else "#6a9fd4",
            marker="*" if shipped else "o",
            edgecolors="#222",
        )
        ax.annotate(
            f"{r['name']}\n{r['bundle_mb']:.1f} MB" + (f" ({chosen_label})" if shipped else ""),
            (r["p50_ms"], 100 * r["accuracy"]),
            textcoords="offset points",
            xytext=(8, -4),
            fontsize=7,
        )
    if s.get("budget_ms"):
        ax.axvline(s["budget_ms"], color="#c33", linewidth=1, linestyle="--", label=f"budget {s['budget_ms']:g} ms")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel(f"p50 ms per prediction (batch 1, {s['threads']} threads, this CPU)")
    ax.set_ylabel(f"accuracy (%; {s['accuracy_on']})")
    ax.set_title("compress candidates: accuracy vs latency (area: bundle size)", fontsize=9)
    ax.margins(x=0.3, y=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
