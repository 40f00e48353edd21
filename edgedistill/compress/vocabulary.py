"""Vocabulary trimming.

Half of MiniLM's 22.7M parameters are the 30,522-row word embedding; one task's inputs use a few thousand of those
rows. The kept set is every token the task's inputs (annotation inputs and choices, plus `extra_texts`) tokenize to,
and a safety set: the special tokens, every single-character token (with and without the `##` prefix), so any word
of known characters can still be spelled, and the `common` commonest words (COMMON_WORDS by default): the first
entries of a WordPiece vocabulary after its placeholders and characters, which BERT's WordPiece vocabularies
(MiniLM's among them) list in order of frequency ("the", "of", "and", ...). A word the annotations happen not to use
but a user will type keeps its own embedding instead of being spelled from pieces: on the quickstart, trimming
without them cost 2 of 60 held-out tickets and with 2,000 of them none (the e-SNLI student, FP32: 66.2 % without,
67.4 % with, 67.0 % untrimmed; benchmarks/results/compress.md and history/compress_no_common_words.md). Ids are
renumbered in their original order; the embedding keeps the kept rows, the tokenizer (tokenizer.json, vocab.txt,
tokenizer_config.json) the kept entries. An input whose original tokens were all kept tokenizes to the same tokens
and gets exactly the same logits (tests/test_compress.py); a word the kept vocabulary cannot spell becomes [UNK]
(WordPiece).

The trimmed vocabulary's own cost, MODEL with it against MODEL without, is measured on inputs it was not built from
and said; under TRIM_AGREEMENT it is a warning (on CQA, trimmed to 1,000 questions' words, all-MiniLM-L6-v2 kept its
answer on 74 % of held-out questions and 75 % of test questions, and lost 3.7 pt: benchmarks/results/trim_unseen.md).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..atomic import build_dir
from ..errors import UserError
from ..model_dir import load_config, read_meta, write_meta

TRIMMABLE_MODELS = ("WordPiece", "WordLevel")  # tokenizer models whose vocabulary is a plain token -> id map
# the commonest words kept beside the task's own tokens (about 0.8 MB of an INT8 bundle at 384 dims)
COMMON_WORDS = 2000
TRIM_AGREEMENT = 0.99  # the trimmed vocabulary keeps MODEL's answer on fewer unseen inputs than this: a warning


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
    """Write model_dir with only the vocabulary `texts` need (and the safety set, `common` common words) into
    out_dir."""
    # deferred: loads torch and transformers; importing compress stays torch-free for its --help and the configs
    from transformers import AutoTokenizer

    from ..distill.student import load_label_model

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
    _keep_embeddings(model, keep, new_id)
    report = TrimReport(
        original=len(tj["model"]["vocab"]), kept=len(keep), from_inputs=from_inputs, safety=safety, common=extra
    )
    with build_dir(out_dir) as tmp:
        save_beside(model, model_dir, tmp)
        _write_tokenizer(model_dir, tmp, tj, new_id)
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


def _keep_embeddings(model, keep: list[int], new_id: dict[int, int]) -> None:
    """The model's word embedding cut to the `keep` rows, in order; the token ids its config names renumbered."""
    # deferred: loads torch; importing compress stays torch-free for its --help and the configs
    import torch
    from torch import nn

    old = model.get_input_embeddings()
    emb = nn.Embedding(
        len(keep), old.embedding_dim, padding_idx=None if old.padding_idx is None else new_id[old.padding_idx]
    )
    with torch.no_grad():
        emb.weight.copy_(old.weight[torch.tensor(keep)])
    model.set_input_embeddings(emb)
    model.config.vocab_size = len(keep)
    # the graph reads them (a two-tower classifier parts its text at [SEP])
    for key in ("pad_token_id", "sep_token_id"):
        if getattr(model.config, key, None) is not None:
            setattr(model.config, key, new_id[getattr(model.config, key)])


def _write_tokenizer(model_dir: Path, out: Path, tj: dict, new_id: dict[int, int]) -> None:
    """The tokenizer's files over the kept tokens: tokenizer.json, vocab.txt, tokenizer_config.json's added tokens."""
    (out / "tokenizer.json").write_text(
        json.dumps(remap_tokenizer_json(tj, new_id), ensure_ascii=False), encoding="utf-8"
    )
    if (model_dir / "vocab.txt").exists():
        order = sorted(tj["model"]["vocab"].items(), key=lambda kv: kv[1])
        (out / "vocab.txt").write_text("".join(t + "\n" for t, i in order if i in new_id), encoding="utf-8")
    cfg_path = out / "tokenizer_config.json"
    if cfg_path.exists():
        tc = json.loads(cfg_path.read_text(encoding="utf-8"))
        if "added_tokens_decoder" in tc:
            tc["added_tokens_decoder"] = {str(new_id[int(k)]): v for k, v in tc["added_tokens_decoder"].items()}
        cfg_path.write_text(json.dumps(tc, indent=2, ensure_ascii=False), encoding="utf-8")


def save_beside(model, model_dir: Path, out: Path) -> None:
    """`model` saved into out with every other file of model_dir (task.yaml, edgedistill.json, tokenizer, ...)."""
    # deferred: loads torch (as distill/ does); importing compress stays torch-free for its --help and the configs
    from ..distill.student import save_label_model

    for f in model_dir.iterdir():
        if f.is_file() and not f.name.startswith(("model.", "pytorch_model", "config.json")):
            shutil.copy2(f, out / f.name)
    save_label_model(model, out)


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
