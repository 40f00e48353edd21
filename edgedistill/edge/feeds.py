"""Model inputs built from a tokenizer.json: the same feeds for every variant `bench` times and for the
device kit, so a device's figures and this machine's are for the same inputs.

- `shape_feeds`: exactly (batch, seq) tokens of real text (or (batch, choices, seq)), for timing.
- `encode_examples`: feeds for predicting examples (objects with .input and .choices).
- `synthetic_texts`: random whole-word sentences, when no data is given.
"""

from __future__ import annotations

import random

import numpy as np
from tokenizers import Tokenizer

DEFAULT_CHOICES = ["yes", "no", "maybe", "true"]  # options of timed multiple-choice inputs without data


def load_tokenizer(path):
    return Tokenizer.from_file(str(path))


def _pad(tok) -> tuple[int, str]:
    if tok.padding:
        return tok.padding["pad_id"], tok.padding["pad_token"]
    for t in ("[PAD]", "<pad>", "<PAD>", "<|pad|>"):
        i = tok.token_to_id(t)
        if i is not None:
            return i, t
    return 0, tok.id_to_token(0) or "[PAD]"


def encode(tok, firsts, seconds=None, max_length: int = 512, pad_to: int | None = None) -> dict[str, np.ndarray]:
    """input_ids / attention_mask / token_type_ids, truncated to max_length, padded to pad_to (or longest)."""
    pad_id, pad_token = _pad(tok)
    tok.enable_truncation(max_length=max_length, strategy="longest_first")
    tok.enable_padding(pad_id=pad_id, pad_token=pad_token, length=pad_to)
    encs = tok.encode_batch(list(zip(firsts, seconds)) if seconds is not None else list(firsts))
    return {
        "input_ids": np.array([e.ids for e in encs], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64),
    }


def encode_examples(tok, family: str, examples, max_length: int) -> dict[str, np.ndarray]:
    """Feeds for predicting examples: (n, seq) for classification, (n, choices, seq) for multiple choice."""
    if family == "multiple-choice":
        n, c = len(examples), len(examples[0].choices)
        if any(len(e.choices) != c for e in examples):
            raise ValueError("examples in one batch must have the same number of choices")
        feeds = encode(
            tok, [e.input for e in examples for _ in e.choices], [ch for e in examples for ch in e.choices], max_length
        )
        return {k: v.reshape(n, c, -1) for k, v in feeds.items()}
    return encode(tok, [e.input for e in examples], None, max_length)


def synthetic_texts(tok, n: int = 64, words: int = 24, seed: int = 0) -> list[str]:
    """Sentences of random whole-word vocabulary entries, for when no --data is given."""
    rng = random.Random(seed)
    vocab = sorted(w for w in tok.get_vocab() if w.isalpha() and w.islower() and len(w) > 1)
    if not vocab:
        vocab = ["the", "a", "is"]
    return [" ".join(rng.choice(vocab) for _ in range(words)) for _ in range(n)]


def shape_feeds(
    tok, family: str, texts: list[str], choices: list[list[str]] | None, batch: int, seq: int, offset: int = 0
) -> dict[str, np.ndarray]:
    """Feeds of exactly (batch, seq) tokens (or (batch, choices, seq)); texts are packed end to end so
    that every position is real text, then truncated to seq."""

    def packed(start):
        parts, ntok, i = [], 0, start
        while ntok < seq:
            t = texts[i % len(texts)]
            parts.append(t)
            ntok += max(1, len(tok.encode(t, add_special_tokens=False).ids))
            i += 1
        return " ".join(parts), i

    firsts, i = [], offset
    for _ in range(batch):
        text, i = packed(i)
        firsts.append(text)
    if family == "multiple-choice":
        c = len(choices[0]) if choices else len(DEFAULT_CHOICES)
        pool = choices or [DEFAULT_CHOICES]
        opts = [pool[(offset + b) % len(pool)][:c] for b in range(batch)]
        feeds = encode(tok, [f for f in firsts for _ in range(c)], [o for os_ in opts for o in os_], seq, pad_to=seq)
        return {k: v.reshape(batch, c, seq) for k, v in feeds.items()}
    return encode(tok, firsts, None, seq, pad_to=seq)


def fit(feeds: dict[str, np.ndarray], names) -> dict[str, np.ndarray]:
    """Exactly the inputs a graph takes, in its order: missing ones (e.g. token_type_ids) as zeros."""
    ref = feeds["input_ids"]
    return {n: np.ascontiguousarray(feeds[n]) if n in feeds else np.zeros_like(ref) for n in names}
