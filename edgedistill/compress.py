"""Stripped student -> smaller stripped student: a trimmed vocabulary and fewer layers, distilled.

`edgedistill compress` sits between strip and export and writes the same stripped format, so
`edgedistill export` takes its output unchanged.

Vocabulary trimming. Half of MiniLM's 22.7M parameters are the 30,522-row word embedding; one task's
inputs use a few thousand of those rows. The kept set is every token the task's inputs (annotation
inputs and choices, plus `extra_texts`) tokenize to, and a safety set: the special tokens and every
single-character token (with and without the `##` prefix), so any word of known characters can still
be spelled. Ids are renumbered in their original order; the embedding keeps the kept rows, the
tokenizer (tokenizer.json, vocab.txt, tokenizer_config.json) the kept entries. An input whose original
tokens were all kept tokenizes to the same tokens and gets exactly the same logits
(tests/test_compress.py); a word the kept vocabulary cannot spell becomes [UNK] (WordPiece).

Fewer layers. A K-layer student starts from K evenly spaced layers of the trained one (the first and
the last included) and is trained on the same inputs with the trained student's probabilities as soft
targets (label loss = KL to them, edgedistill.train's soft-target path).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from .atomic import build_dir
from .errors import UserError
from .model_dir import read_meta, write_meta

TRIMMABLE_MODELS = ("WordPiece", "WordLevel")  # tokenizer models whose vocabulary is a plain token -> id map


@dataclass
class TrimReport:
    original: int
    kept: int
    from_inputs: int
    safety: int


def kept_token_ids(tokenizer_json: dict, tokenize, texts: list[str]) -> tuple[list[int], int, int]:
    """(sorted kept ids, how many the texts need, how many the safety set adds)."""
    vocab = tokenizer_json["model"]["vocab"]
    used = set()
    for text in texts:
        used.update(tokenize(text))
    specials = {t["id"] for t in tokenizer_json.get("added_tokens", [])}
    prefix = tokenizer_json["model"].get("continuing_subword_prefix") or "##"
    chars = {i for tok, i in vocab.items() if len(tok.removeprefix(prefix)) == 1}
    safety = (specials | chars) - used
    return sorted(used | specials | chars), len(used), len(safety)


def remap_tokenizer_json(tj: dict, new_id: dict[int, int]) -> dict:
    """The same tokenizer over the kept tokens: every id it holds renumbered."""
    tj = json.loads(json.dumps(tj))
    tj["model"]["vocab"] = {tok: new_id[i] for tok, i in sorted(tj["model"]["vocab"].items(), key=lambda kv: kv[1]) if i in new_id}
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


def trim_vocabulary(model_dir, texts: list[str], out_dir) -> TrimReport:
    """Write model_dir with only the vocabulary `texts` (and the safety set) need into out_dir."""
    import torch
    from torch import nn
    from transformers import AutoConfig, AutoTokenizer

    from .edge.families import auto_model_class

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    meta = read_meta(model_dir)
    if meta.get("family") == "seq2seq":
        raise UserError(f"{model_dir}: vocabulary trimming is for encoder students; a seq2seq student's decoder "
                        "writes from the whole vocabulary. Use --no-trim-vocab")
    tj = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    if tj["model"]["type"] not in TRIMMABLE_MODELS:
        raise UserError(f"{model_dir}/tokenizer.json: a {tj['model']['type']} tokenizer; trimming handles "
                        f"{', '.join(TRIMMABLE_MODELS)} vocabularies only. Use --no-trim-vocab")
    tok = AutoTokenizer.from_pretrained(model_dir)
    keep, from_inputs, safety = kept_token_ids(tj, lambda t: tok(t, add_special_tokens=False)["input_ids"], texts)
    new_id = {old: new for new, old in enumerate(keep)}

    model = auto_model_class(meta["family"]).from_pretrained(model_dir)
    old = model.get_input_embeddings()
    emb = nn.Embedding(len(keep), old.embedding_dim, padding_idx=None if old.padding_idx is None else new_id[old.padding_idx])
    with torch.no_grad():
        emb.weight.copy_(old.weight[torch.tensor(keep)])
    model.set_input_embeddings(emb)
    model.config.vocab_size = len(keep)
    if model.config.pad_token_id is not None:
        model.config.pad_token_id = new_id[model.config.pad_token_id]

    with build_dir(out_dir) as tmp:
        for f in model_dir.iterdir():  # task.yaml, edgedistill.json, special_tokens_map.json, ...
            if f.is_file() and not f.name.startswith(("model.", "pytorch_model", "config.json")):
                shutil.copy2(f, tmp / f.name)
        model.save_pretrained(tmp)
        (tmp / "tokenizer.json").write_text(json.dumps(remap_tokenizer_json(tj, new_id), ensure_ascii=False), encoding="utf-8")
        if (model_dir / "vocab.txt").exists():
            order = sorted(tj["model"]["vocab"].items(), key=lambda kv: kv[1])
            (tmp / "vocab.txt").write_text("".join(t + "\n" for t, i in order if i in new_id), encoding="utf-8")
        cfg_path = tmp / "tokenizer_config.json"
        if cfg_path.exists():
            tc = json.loads(cfg_path.read_text(encoding="utf-8"))
            if "added_tokens_decoder" in tc:
                tc["added_tokens_decoder"] = {str(new_id[int(k)]): v for k, v in tc["added_tokens_decoder"].items()}
            cfg_path.write_text(json.dumps(tc, indent=2, ensure_ascii=False), encoding="utf-8")
        report = TrimReport(original=len(tj["model"]["vocab"]), kept=len(keep), from_inputs=from_inputs, safety=safety)
        write_meta(tmp, {**meta, "kind": "stripped", "vocabulary": {"original": report.original, "kept": report.kept}})
        AutoConfig.from_pretrained(tmp)  # the written dir loads
    return report


def task_texts(annotations) -> list[str]:
    """Every text the student reads from these annotations: inputs and choices."""
    from .annotations import read_annotations

    texts = []
    for a in read_annotations(annotations):
        texts.append(a.input)
        texts += list(a.choices or [])
    return texts
