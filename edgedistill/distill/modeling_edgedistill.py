"""Label heads that read the mean of a BERT or MPNet encoder's token states, for transformers' Auto classes.

This file is self-contained (it imports torch and transformers only): edgedistill writes it into every student,
stripped or compressed dir whose head transformers' own classes lack, and that dir's config.json names its
classes in `auto_map`, so that

    AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)

(or AutoModelForMultipleChoice) gives the model as trained. Its `model_type` (edgedistill_bert, edgedistill_mpnet)
is one transformers does not know, so a load without trust_remote_code stops with an error instead of putting
a freshly initialised head on the [CLS] state. edgedistill itself imports this module as
`edgedistill.distill.modeling_edgedistill`: its own models are these classes.

Two heads (config.json `classifier_pooling`):
- "mean": one linear layer on the mean of the token states over the attention mask (a sentence encoder such as
  all-MiniLM-L6-v2 was pretrained to be read that way);
- "two-tower": the input's two texts encoded apart in one pass (attention kept inside each segment, positions
  restarted there, so each text's states are those of encoding it alone). Multiple choice: 20 x the cosine of
  the question's and the choice's mean states ([CLS] q [SEP] [CLS] c [SEP], the choice's token type 1).
  Classification: the one text parts at its first [SEP] (config `sep_token_id`), and a linear layer reads
  [u, v, |u - v|, u * v] of the two mean states (Sentence-BERT's NLI classifier).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    BertConfig,
    BertForMultipleChoice,
    BertForSequenceClassification,
    MPNetConfig,
    MPNetForMultipleChoice,
    MPNetForSequenceClassification,
)
from transformers.modeling_outputs import SequenceClassifierOutput

MEAN = "mean"
TWO_TOWER = "two-tower"
TWO_TOWER_SCALE = 20.0  # cosine -> logit, the scale the base's pretraining loss used


class EdgedistillBertConfig(BertConfig):
    """BertConfig under a model type of its own: transformers refuses it without this file's code."""

    model_type = "edgedistill_bert"


class EdgedistillMPNetConfig(MPNetConfig):
    """MPNetConfig under a model type of its own: transformers refuses it without this file's code."""

    model_type = "edgedistill_mpnet"


def encode(encoder, input_ids, attention_mask, token_type_ids=None, position_ids=None, output_hidden_states=None):
    """encoder(...) of a BERT or MPNet base, its position_ids (when given) counted from 0. BERT reads the token
    types; MPNet has none and counts positions from padding_idx + 1."""
    if isinstance(encoder.config, MPNetConfig):
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[-1], device=input_ids.device).expand_as(input_ids)
        position_ids, token_type_ids = position_ids + encoder.embeddings.padding_idx + 1, None
    given = {"token_type_ids": token_type_ids, "position_ids": position_ids}
    return encoder(
        input_ids=input_ids,
        attention_mask=attention_mask,
        output_hidden_states=output_hidden_states,
        return_dict=True,
        **{k: v for k, v in given.items() if v is not None},
    )


def mean_states(hidden, mask):
    """The mean of each row's token states over its attention mask, (rows, H)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def mean_pooled_forward(
    self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, output_hidden_states=None, **_unused
):
    """A …ForSequenceClassification / …ForMultipleChoice forward whose head reads the mean token state."""
    k = input_ids.shape[1] if input_ids.dim() == 3 else None  # multiple choice: (rows, choices, tokens)
    given = (("input_ids", input_ids), ("attention_mask", attention_mask), ("token_type_ids", token_type_ids))
    flat = {n: v.reshape(-1, v.shape[-1]) for n, v in given if v is not None}
    mask = flat.get("attention_mask", torch.ones_like(flat["input_ids"]))
    out = encode(
        self.base_model, flat["input_ids"], mask, flat.get("token_type_ids"), output_hidden_states=output_hidden_states
    )
    logits = self.classifier(self.dropout(mean_states(out.last_hidden_state, mask)))
    if k is not None:
        logits = logits.view(-1, k)
    loss = F.cross_entropy(logits, labels) if labels is not None else None
    return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


def segment_inputs(attention_mask, token_type_ids):
    """(attention (n, s, s), position_ids, first-text mask, second-text mask) that encode a packed pair's two texts
    apart."""
    mask = attention_mask.bool()
    first, second = mask & (token_type_ids == 0), mask & (token_type_ids == 1)
    attention = (token_type_ids.unsqueeze(2) == token_type_ids.unsqueeze(1)) & mask.unsqueeze(1)
    positions = torch.where(second, second.long().cumsum(1) - 1, first.long().cumsum(1) - 1).clamp_min(0)
    return attention.long(), positions, first.long(), second.long()


def split_types(input_ids, attention_mask, sep_token_id: int):
    """token_type_ids that part one text at its first [SEP]: 0 up to and including it, 1 after (the final [SEP]
    too); a text without one is all 0, its second part empty."""
    sep = (input_ids == sep_token_id).long()
    return ((sep.cumsum(-1) - sep) > 0).long() * attention_mask.long()


def two_tower_classify(
    self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, output_hidden_states=None, **_unused
):
    """A …ForSequenceClassification forward that encodes the two parts of its input (`split_types`) apart in one
    pass and classifies [u, v, |u - v|, u * v] of their mean states."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    types = split_types(input_ids, attention_mask, self.config.sep_token_id)
    attention, positions, first, second = segment_inputs(attention_mask, types)
    out = encode(self.base_model, input_ids, attention, torch.zeros_like(types), positions, output_hidden_states)
    u, v = mean_states(out.last_hidden_state, first), mean_states(out.last_hidden_state, second)
    logits = self.classifier(self.dropout(torch.cat([u, v, (u - v).abs(), u * v], dim=-1)))
    loss = F.cross_entropy(logits, labels) if labels is not None else None
    return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


def encode_apart(encoder, ids, mask, types, k: int):
    """The eager shortcut to the one pass's mean states (u, v) (`segment_inputs`; the same numbers, dropout aside):
    each row's question encoded once rather than once per choice, and each choice alone at its own length. None
    where the packing is not the plain one (a row whose choices carry different question tokens, as truncation may
    leave them, or padding on the left), for the one pass to handle."""
    first, second = mask.bool() & (types == 0), mask.bool() & (types == 1)
    q_len, c_len = first.sum(1), second.sum(1)
    lq, lc = int(q_len.max()), int(c_len.max())
    questions = (ids * first).view(-1, k, ids.shape[-1])
    if not bool((questions == questions[:, :1]).all()) or not bool((first[:, :lq].sum(1) == q_len).all()):
        return None
    at = (q_len.unsqueeze(1) + torch.arange(lc, device=ids.device)).clamp_max(ids.shape[-1] - 1)
    c_mask = torch.arange(lc, device=ids.device) < c_len.unsqueeze(1)
    if not bool(second.gather(1, at)[c_mask].all()):
        return None
    q_ids, q_mask = questions[:, 0, :lq], first.view(-1, k, ids.shape[-1])[:, 0, :lq]
    c_ids = ids.gather(1, at) * c_mask

    def states(tokens, m):
        return mean_states(encode(encoder, tokens, m.long(), torch.zeros_like(tokens)).last_hidden_state, m)

    return states(q_ids, q_mask).repeat_interleave(k, 0), states(c_ids, c_mask)


def two_tower_forward(
    self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, output_hidden_states=None, **_unused
):
    """A …ForMultipleChoice forward that scores each (question, choice) pair by 20 x the cosine of their mean
    states, each text encoded apart in the one pass (`segment_inputs`)."""
    if token_type_ids is None:
        raise ValueError(
            "a two-tower student needs token_type_ids: they say where the question ends and the choice begins"
        )
    k = input_ids.shape[1] if input_ids.dim() == 3 else None
    ids, mask, types = (v.reshape(-1, v.shape[-1]) for v in (input_ids, attention_mask, token_type_ids))
    # the shortcut in eager torch (training and answering); the one pass where it is traced or exported, so the
    # graph stays the one the runtimes feed
    exporting = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
    shortcut = k is not None and not output_hidden_states and not exporting and not getattr(self, "one_pass", False)
    apart = shortcut and encode_apart(self.base_model, ids, mask, types, k)
    if apart:
        (u, v), hidden = apart, None
    else:
        attention, positions, first, second = segment_inputs(mask, types)
        out = encode(self.base_model, ids, attention, torch.zeros_like(types), positions, output_hidden_states)
        u, v = mean_states(out.last_hidden_state, first), mean_states(out.last_hidden_state, second)
        hidden = out.hidden_states
    logits = TWO_TOWER_SCALE * F.cosine_similarity(u, v, dim=-1)
    logits = logits.view(-1, k) if k is not None else logits.unsqueeze(-1)
    loss = F.cross_entropy(logits, labels) if labels is not None else None
    result = SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=hidden)
    if self.training and k is not None:
        # Training only: every question against every choice in the batch (rows, rows * k), the other rows'
        # choices as extra negatives, the loss the base was pretrained with. Row i's own choices are columns
        # in_batch_offsets[i] + j.
        question = F.normalize(u.view(-1, k, u.shape[-1])[:, 0], dim=-1)
        result.in_batch_logits = TWO_TOWER_SCALE * question @ F.normalize(v, dim=-1).T
        result.in_batch_offsets = k * torch.arange(len(question), device=question.device)
    return result


MEAN_FORWARDS = {MEAN: mean_pooled_forward, TWO_TOWER: two_tower_forward}


def forward_for(pooling: str, multiple_choice: bool):
    """The forward of a `pooling` head (MEAN_FORWARDS); a two-tower classifier of text pairs has its own."""
    return two_tower_classify if pooling == TWO_TOWER and not multiple_choice else MEAN_FORWARDS[pooling]


def two_tower_classifier(config):
    """A two-tower classifier's head: [u, v, |u - v|, u * v] -> labels."""
    return nn.Linear(4 * config.hidden_size, config.num_labels)


def plain_head(model, pooling: str, multiple_choice: bool):
    """A BERT or MPNet …For* model's head made the one a mean-pooled student reads: no pooler, dropout, then one
    linear layer ([u, v, |u - v|, u * v] -> labels for a two-tower classifier of text pairs; MPNet's own
    sequence classifier, two layers on the <s> state, gives way to the one layer BERT's has)."""
    config = model.config
    model.base_model.pooler = None  # not read: no weights for it in the checkpoint or the ONNX graph
    if not hasattr(model, "dropout"):
        model.dropout = nn.Dropout(config.hidden_dropout_prob)
    if pooling == TWO_TOWER and not multiple_choice:
        model.classifier = two_tower_classifier(config)
    elif not isinstance(model.classifier, nn.Linear):
        model.classifier = nn.Linear(config.hidden_size, config.num_labels)


def _pooled(base, config_class, pooling: str):
    """base (a BERT or MPNet …ForSequenceClassification / …ForMultipleChoice) with its head on the mean token
    state(s): MeanPooled<base> or TwoTower<base>."""
    multiple_choice = base.__name__.endswith("ForMultipleChoice")
    name = ("TwoTower" if pooling == TWO_TOWER else "MeanPooled") + base.__name__

    def __init__(self, config):
        base.__init__(self, config)
        plain_head(self, pooling, multiple_choice)

    attrs = {
        "__init__": __init__,
        "forward": forward_for(pooling, multiple_choice),
        "config_class": config_class,
        "__module__": __name__,
        "__qualname__": name,
        # two-tower multiple choice: True answers through the exported graph's one pass instead of encode_apart's
        # shortcut (the same scores)
        "one_pass": False,
    }
    if pooling == TWO_TOWER and multiple_choice:
        # it keeps …ForMultipleChoice's classifier (so the plain class loads its weights) but never reads it
        attrs["_keys_to_ignore_on_load_missing"] = [r"^classifier\."]
    return type(name, (base,), attrs)


MeanPooledBertForSequenceClassification = _pooled(BertForSequenceClassification, EdgedistillBertConfig, MEAN)
MeanPooledBertForMultipleChoice = _pooled(BertForMultipleChoice, EdgedistillBertConfig, MEAN)
TwoTowerBertForSequenceClassification = _pooled(BertForSequenceClassification, EdgedistillBertConfig, TWO_TOWER)
TwoTowerBertForMultipleChoice = _pooled(BertForMultipleChoice, EdgedistillBertConfig, TWO_TOWER)
MeanPooledMPNetForSequenceClassification = _pooled(MPNetForSequenceClassification, EdgedistillMPNetConfig, MEAN)
MeanPooledMPNetForMultipleChoice = _pooled(MPNetForMultipleChoice, EdgedistillMPNetConfig, MEAN)
TwoTowerMPNetForSequenceClassification = _pooled(MPNetForSequenceClassification, EdgedistillMPNetConfig, TWO_TOWER)
TwoTowerMPNetForMultipleChoice = _pooled(MPNetForMultipleChoice, EdgedistillMPNetConfig, TWO_TOWER)
