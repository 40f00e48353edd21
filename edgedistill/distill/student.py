"""The multi-task student: a standard label model plus a rationale decoder that only helps training.

Design (after Distilling Step-by-Step, Hsieh et al. 2023): the label model is an ordinary
transformers model (…ForSequenceClassification, …ForMultipleChoice or a seq2seq LM), so that
stripping the student is just saving the label model alone. The rationale decoder reads the label
model's encoder states through cross-attention, so the rationale loss shapes the same encoder the
device will run; it is saved in `rationale_decoder/` beside the label model and never exported.

Encoder families use a bert2bert-style decoder (BertLMHeadModel with cross-attention), warm-started
from the encoder's own first layers as EncoderDecoderModel does: the self-attention and FFN weights
start pretrained, only cross-attention starts random, which is what lets a 2-layer decoder learn to
write a sentence from a few thousand examples. The rationale loss reaches the encoder only through
cross-attention over its token states (not [CLS], not the input embeddings), see below.
Seq2seq models get a second decoder (a copy of the label decoder) that shares the encoder. An
encoder-only base (MiniLM) becomes a seq2seq student for numeric tasks as bert2bert: an
EncoderDecoderModel whose decoder is warm-started from the encoder's first layers (Rothe et al.
2020), because no pretrained T5 or BART installs offline and a randomly initialised decoder would
have to learn the language from a few hundred answers.
"""

from __future__ import annotations

import copy
import json
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers.processors import TemplateProcessing
from torch import nn
from transformers import AutoTokenizer, BertConfig, BertLMHeadModel, EncoderDecoderModel
from transformers.modeling_outputs import SequenceClassifierOutput

from ..atomic import write_json, write_text
from ..edge.families import auto_model_class, family_of_task
from ..model_dir import load_config
from . import modeling_edgedistill as own_code
from .modeling_edgedistill import (
    MEAN_FORWARDS,
    TWO_TOWER,
    forward_for,
    mean_states,
    plain_head,
)


def family_for(task_type: str, base_config, numeric: str = "auto") -> str:
    """The task's family (edge.families); an encoder-decoder base makes any task a seq2seq student.

    A numeric task (`numeric`, choices.NUMERIC): an encoder base ranks the problem's one-operation
    expressions as a multiple-choice student (auto, expressions), or writes its answer as bert2bert
    (generate). On SVAMP, 800 PaLM-labelled rows, the bert2bert student never left the floor
    (benchmarks/results/history/distill_accuracy_one_size.md); see benchmarks/results/distill_accuracy.md
    for the ranking student.
    """
    if base_config.is_encoder_decoder:
        if task_type == "numeric" and numeric == "expressions":
            raise ValueError(
                "--numeric expressions: needs an encoder base (BERT, MiniLM); a T5/BART base writes its "
                "answer (--numeric generate or auto)"
            )
        return "seq2seq"
    if task_type == "numeric":
        return "seq2seq" if numeric == "generate" else "multiple-choice"
    return family_of_task(task_type).name


def build_label_model(base_dir, family: str, labels: list[str] | None, decoder_layers: int = 2, pooling: str = "cls"):
    """The label model to train, its head pooling `pooling` (`pooling_for` resolves "auto")."""
    if family == "seq2seq":
        if not load_config(base_dir).is_encoder_decoder:
            return build_bert2bert(base_dir, decoder_layers)
        return auto_model_class(family).from_pretrained(base_dir)
    config = load_config(base_dir)
    if family == "sequence-classification":
        config.num_labels = len(labels)
        config.id2label, config.label2id = dict(enumerate(labels)), {label: i for i, label in enumerate(labels)}
    config.classifier_pooling = pooling
    if pooling == TWO_TOWER and family == "sequence-classification":
        config.sep_token_id = AutoTokenizer.from_pretrained(base_dir).sep_token_id  # where its two texts part
    return label_model_class(family, pooling, config.model_type).from_pretrained(base_dir, config=config)


# ---------------------------------------------------------------- head pooling
#
# What the label head reads. BERT's own heads read the [CLS] state through a tanh "pooler"; a
# sentence-transformers encoder such as all-MiniLM-L6-v2 was trained to mean its token states
# instead (its 1_Pooling/config.json), and its [CLS] state and pooler never learned to stand for the
# input. Reading the mean, as it was trained, is what lets a few hundred rows teach it a task:
# e-SNLI, 630 training rows, label-only, seeds 0-2: 64.7 +- 1.1 % test against 55.8 +- 3.3 % through [CLS]
# (benchmarks/results/pooling.md). The choice is written to config.json as `classifier_pooling` and
# every torch-side load goes through `load_label_model`, which reads it back. The heads themselves live in
# modeling_edgedistill.py, which every dir with such a head carries (`save_label_model`), so that transformers'
# Auto classes load it as trained (trust_remote_code=True) and refuse it without its code.

# encoders whose …For* heads modeling_edgedistill's MeanPooled* / TwoTower* mirror, and their transformers class prefix
MEAN_POOLED_TYPES = {"bert": "Bert", "mpnet": "MPNet"}
HEAD_CLASS_PREFIX = {"mean": "MeanPooled", TWO_TOWER: "TwoTower"}


def pooling_for(base_dir, requested: str = "auto", pairs: bool = False) -> str:
    """The head pooling for a student built from base_dir. auto: the base's own setting (a compressed or trained
    student's `classifier_pooling`), else its sentence-transformers pooling (mean tokens -> mean; for a student that
    scores (question, choice) pairs, `pairs`, two-tower: the base's own comparison of two texts), else cls.

    Two-tower for multiple choice: CQA, label-only, 3 seeds each, +4.7 pt paired at 300 rows (41.2 +- 0.7 % vs
    36.6 +- 1.5 %), +3.2 at 1,000 (44.1 +- 1.8 % vs 40.9 +- 1.5 %) and +1.9 at 3,200 (within noise) over the
    mean-pooled joint head (benchmarks/results/two_tower.md)."""
    config = load_config(base_dir)
    if requested == "auto":
        requested = getattr(config, "classifier_pooling", None)
    if requested is None:
        st = Path(base_dir) / "1_Pooling" / "config.json"
        mean = st.exists() and json.loads(st.read_text()).get("pooling_mode_mean_tokens")
        requested = (TWO_TOWER if pairs else "mean") if mean and config.model_type in MEAN_POOLED_TYPES else "cls"
    if requested in ("mean", TWO_TOWER) and config.model_type not in MEAN_POOLED_TYPES:
        raise ValueError(
            f"--pooling {requested}: a {config.model_type} encoder; it is built for {', '.join(MEAN_POOLED_TYPES)} "
            "encoders. Use --pooling cls"
        )
    return requested


def label_model_class(family: str, pooling: str = "cls", model_type: str = "bert"):
    """The class of a label model: transformers' own for [CLS] heads and seq2seq, modeling_edgedistill's for the
    mean-pooled and two-tower heads."""
    if pooling in MEAN_FORWARDS and family != "seq2seq":
        head = auto_model_class(family).__name__.removeprefix("AutoModel")  # ForSequenceClassification, ...
        return getattr(own_code, HEAD_CLASS_PREFIX[pooling] + MEAN_POOLED_TYPES[model_type] + head)
    return auto_model_class(family)


def pooling_of(config) -> str:
    """The pooling a built, trained or stripped label model's config records ("cls" where none is)."""
    return getattr(config, "classifier_pooling", None) or "cls"


def load_label_model(model_dir, family: str):
    """A trained or stripped label model, with the head pooling it was trained with (config.json). Reads the dirs
    this version writes (their own model type, `save_label_model`) and those older versions wrote (plain bert/mpnet
    with `classifier_pooling`) alike: edgedistill runs its own head classes, never the code a dir carries."""
    config = load_config(model_dir)
    return label_model_class(family, pooling_of(config), config.model_type).from_pretrained(model_dir, config=config)


def save_label_model(model, out) -> None:
    """The one way a label model is written into a student, stripped or compressed dir: its weights and config,
    made loadable by transformers' own Auto classes (`carry_own_code`)."""
    model.save_pretrained(out)
    carry_own_code(out, type(model))


def carry_own_code(model_dir, cls) -> None:
    """Make model_dir's config.json and code match its label model class `cls`. A modeling_edgedistill head: the
    config gets that file's model type (which transformers refuses without its code) and an `auto_map` naming its
    classes, and the file is written beside it, so `AutoModelFor….from_pretrained(dir, trust_remote_code=True)`
    gives the model as trained. transformers' own class ([CLS] heads, seq2seq): the dir carries no code."""
    model_dir = Path(model_dir)
    path, code = model_dir / "config.json", model_dir / Path(own_code.__file__).name
    config = json.loads(path.read_text(encoding="utf-8"))
    if cls.__module__ != own_code.__name__:
        code.unlink(missing_ok=True)
        if config.pop("auto_map", None) is not None:
            write_json(path, config)
        return
    module = code.stem
    head = "AutoModel" + cls.__name__[cls.__name__.index("For") :]
    config.update(
        model_type=cls.config_class.model_type,
        architectures=[cls.__name__],
        auto_map={"AutoConfig": f"{module}.{cls.config_class.__name__}", head: f"{module}.{cls.__name__}"},
    )
    write_json(path, config)
    write_text(code, Path(own_code.__file__).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- two towers in one pass
#
# A multiple-choice student may read the question and each choice apart, as all-MiniLM-L6-v2 was
# pretrained to embed them (one text at a time, its contrastive loss on 20 x the cosine of their mean
# states), instead of as one joint text it never saw: `--pooling two-tower`. Untrained, that already
# answers 39.3 % of CQA's test rows (benchmarks/results/pair_probe.md), above the joint head's start.
# It stays one graph with the usual inputs: the tokenizer's pair template gives the choice its own
# [CLS] (`pair_template`), and the forward keeps attention inside each segment (token_type_ids) and
# restarts the positions there, so each text's states are exactly those of encoding it alone.
#
# A classifier of text pairs (NLI: premise, hypothesis) may do the same: its input is one text whose first
# [SEP] parts the two (`{premise} [SEP] {hypothesis}`; the graph finds it, so every runtime feeds the one
# text as before), and a fresh linear layer reads [u, v, |u - v|, u * v] of their mean states, the
# classifier Sentence-BERT trained on NLI. On e-SNLI with 180 training rows, a linear probe on those
# features of the untrained base answers 50.0 % of the test rows, against 36.0 % on the joint text's mean
# state (benchmarks/results/pair_probe.md); fine-tuned, 41.3 +- 3.3 % against the joint head's one-class floor
# (benchmarks/results/two_tower.md).


def in_batch(out) -> tuple | None:
    """(in_batch_logits, in_batch_offsets) of a two-tower student in training, else None."""
    logits = getattr(out, "in_batch_logits", None)
    return None if logits is None else (logits, out.in_batch_offsets)


def pair_template(tok, pooling: str):
    """tok, for a two-tower student, with the pair template [CLS] A [SEP] [CLS] B [SEP] (B's tokens type 1) that
    it saves into tokenizer.json, so every runtime builds the inputs the graph expects, and token_type_ids among
    its outputs (MPNet's tokenizer has none of its own); other students unchanged."""
    if pooling != TWO_TOWER:
        return tok

    cls, sep = tok.cls_token, tok.sep_token
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} {cls}:1 $B:1 {sep}:1",
        special_tokens=[(cls, tok.cls_token_id), (sep, tok.sep_token_id)],
    )
    if "token_type_ids" not in tok.model_input_names:
        tok.model_input_names = tok.init_kwargs["model_input_names"] = [*tok.model_input_names, "token_type_ids"]
    return tok


def exportable(model):
    """The model as an instance of transformers' own class, which optimum's exporter recognises: a mean-pooled
    student's weights in a plain BERT or MPNet head model whose forward is swapped for `mean_pooled_forward` (the
    override optimum documents for onnx_export_from_model)."""
    pooling = pooling_of(model.config)
    if pooling not in MEAN_FORWARDS:
        return model
    plain = type(model).__mro__[1](model.config)
    multiple_choice = type(plain).__name__.endswith("ForMultipleChoice")
    plain_head(plain, pooling, multiple_choice)
    plain.load_state_dict(model.state_dict())
    plain.forward = types.MethodType(forward_for(pooling, multiple_choice), plain)
    return plain.eval()


def _output_class():
    return SequenceClassifierOutput


def build_bert2bert(base_dir, decoder_layers: int):
    """A seq2seq label model from an encoder-only dir: the encoder whole, the decoder from its first layers.

    Answers such as "( 84.0 / 2.0 )" are short, so a few decoder layers suffice; the LM head starts
    random (all-MiniLM ships none), its input embeddings are the encoder's.
    """
    model_type = load_config(base_dir).model_type
    if model_type not in DECODER_CAPABLE:
        raise ValueError(
            f"{base_dir} is an encoder ({model_type}) that cannot be "
            f"warm-started as a decoder; for a numeric task pass a seq2seq dir (T5/BART) or a "
            f"{'/'.join(DECODER_CAPABLE)} encoder"
        )
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(
        str(base_dir), str(base_dir), decoder_num_hidden_layers=decoder_layers
    )
    # BERT has no decoder start or end: [CLS] starts an answer and [SEP] ends it, as in bert2bert.
    ids = {
        "decoder_start_token_id": tok.cls_token_id,
        "bos_token_id": tok.cls_token_id,
        "eos_token_id": tok.sep_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    for k, v in ids.items():
        setattr(model.config, k, v)
        setattr(model.generation_config, k, v)
    return model


# encoders whose HF class takes is_decoder + add_cross_attention, so EncoderDecoderModel can use them
# (optimum exports these decoders without past keys/values: onnx_export.has_past)
DECODER_CAPABLE = ("bert", "roberta", "xlm-roberta", "electra", "ernie", "camembert")


def build_rationale_decoder(label_model, family: str, layers: int = 2, shared: bool = False):
    if family == "seq2seq":
        # shared: the DSS original, one decoder for both tasks (its weights are the label model's)
        return label_model.get_decoder() if shared else copy.deepcopy(label_model.get_decoder())

    enc_cfg = label_model.config
    cfg = BertConfig(
        **{
            **enc_cfg.to_dict(),
            "is_decoder": True,
            "add_cross_attention": True,
            "num_hidden_layers": min(layers, enc_cfg.num_hidden_layers),
            "architectures": ["BertLMHeadModel"],
        }
    )
    dec = BertLMHeadModel(cfg)
    base = label_model.base_model
    # warm start: embeddings and the first `layers` encoder layers (cross-attention stays random)
    missing, _ = dec.bert.load_state_dict(base.state_dict(), strict=False)
    assert all("crossattention" in k or "pooler" in k for k in missing), missing
    # The decoder keeps its own copy of the word embeddings (tied to its LM head), as bert2bert does:
    # a shared copy would let the LM softmax, which moves every vocabulary row each step, rewrite
    # the encoder's inputs.
    dec.tie_weights()
    # Random cross-attention would only add noise at first; with its output projection at zero the
    # decoder starts as the warm LM it was copied from and lets the encoder in as reading it helps.
    # (The encoder is also shielded from this decoder early on: train.RationaleWarmup.)
    for layer in dec.bert.encoder.layer:
        nn.init.zeros_(layer.crossattention.output.dense.weight)
        nn.init.zeros_(layer.crossattention.output.dense.bias)
    return dec


def head_states(last_hidden, attention_mask, rows: int, pooling: str):
    """The final state the label head reads, per row, (rows, H): [CLS] or the token mean (`pooling`); a
    multiple-choice row's choices flattened, (rows, k * H)."""
    if pooling in MEAN_FORWARDS:  # a two-tower student: the mean over both its texts
        return mean_states(last_hidden, attention_mask.reshape(-1, attention_mask.shape[-1])).reshape(rows, -1)
    return last_hidden[:, 0].reshape(rows, -1)


PADDING_LOGIT = -1e4  # a padding choice's score: never predicted, nothing in the softmax


def label_outputs(label_model, inputs: dict, choice_mask=None, output_hidden_states: bool = False):
    """The label model's outputs; for a multiple-choice batch with padding choices (`choice_mask` False: the
    row has fewer choices than the longest), only the real choices are run, each as a row of one choice
    (every choice is scored alone, so that is the same computation), and padding gets PADDING_LOGIT and
    zero states. A numeric task's rows hold 6 to 60 expressions: running the padding too cost 2-3x."""
    if choice_mask is None:
        return label_model(**inputs, output_hidden_states=output_hidden_states)
    rows, k = choice_mask.shape
    real = choice_mask.reshape(-1).to(inputs["input_ids"].device)
    flat = {n: v.reshape(rows * k, 1, v.shape[-1])[real] for n, v in inputs.items()}
    out = label_model(**flat, output_hidden_states=output_hidden_states)
    logits = out.logits.new_full((rows * k,), PADDING_LOGIT)
    logits[real] = out.logits.reshape(-1)
    hidden = None
    if output_hidden_states:
        hidden = []
        for h in out.hidden_states:
            full = h.new_zeros((rows * k, *h.shape[1:]))
            full[real] = h
            hidden.append(full)
    result = _output_class()(logits=logits.view(rows, k), hidden_states=hidden and tuple(hidden))
    if in_batch(out) is not None:
        # A two-tower student in training saw each real (question, choice) pair as a row of its own: every pair's
        # question against every real choice. Keep one question per row (its first pair's; a row's real choices
        # are a prefix of it, so they start there among the real pairs): ragged batches rank among every real
        # choice in the batch too.
        counts = choice_mask.sum(1).to(out.in_batch_logits.device)
        first = counts.cumsum(0) - counts
        result.in_batch_logits, result.in_batch_offsets = out.in_batch_logits[first], first
    return result


class RationaleStudent(nn.Module):
    """loss = alpha * label_loss + (1 - alpha) * rationale_loss, the rationale term over rows that have one.

    The rationale term is the decoder's loss on the teacher's rationale (multitask) or, when the batch
    carries a rationale-reading teacher's targets (rationale-teacher), the distance to its soft labels
    and head states (`distill_loss`).
    """

    def __init__(
        self,
        label_model,
        decoder,
        family: str,
        alpha: float,
        temperature: float = 2.0,
        hidden_weight: float = 1.0,
        soft_weight: float = 0.5,
        soft_temperature: float = 1.0,
    ):
        super().__init__()
        self.label_model, self.decoder, self.family, self.alpha = label_model, decoder, family, alpha
        self.temperature, self.hidden_weight = temperature, hidden_weight
        self.soft_weight, self.soft_temperature = soft_weight, soft_temperature
        self.config = label_model.config  # the Trainer reads a few config fields
        self.rationale_reaches_encoder = True  # train.RationaleWarmup turns it off for the first steps
        # A shared decoder reads "[start] rationale:" before a rationale; those prefix tokens are
        # given, not predicted, so the label path's first step ([start] -> answer) stays untouched.
        self.rationale_prefix_len = 0

    def label_loss(self, logits, labels, teacher_probs=None, has_probs=None, batch_scores=None):
        """Cross-entropy on the hard labels; on rows with the annotator's distribution, blended with
        T^2 KL(teacher || student) at soft_temperature (the teacher's probabilities sharpened or
        flattened by 1/T, the student's logits divided by T, as in Hinton et al. 2015). A two-tower student's
        hard term ranks each row's answer among every choice in the batch (`batch_scores`: `in_batch` of its output)."""
        if batch_scores is not None:
            wide, offsets = batch_scores
            hard = F.cross_entropy(wide, labels + offsets, reduction="none")
        else:
            hard = F.cross_entropy(logits, labels, reduction="none")
        if teacher_probs is None or not self.soft_weight:
            return hard.mean()
        t = self.soft_temperature
        target = teacher_probs.float().clamp_min(0) ** (1 / t)
        target = target / target.sum(-1, keepdim=True).clamp_min(1e-12)
        kl = (target * (target.clamp_min(1e-12).log() - F.log_softmax(logits.float() / t, -1))).sum(-1) * t * t
        w = self.soft_weight * has_probs.float()
        return ((1 - w) * hard + w * kl).mean()

    # long: one parameter per key of the collated batch (the Trainer passes them by name)
    def forward(
        self,
        input_ids,
        attention_mask,
        labels=None,
        token_type_ids=None,
        rationale_ids=None,
        rationale_mask=None,
        has_rationale=None,
        ctx_input_ids=None,
        ctx_attention_mask=None,
        ctx_token_type_ids=None,
        label_ids=None,
        soft_labels=None,
        teacher_hidden=None,
        teacher_probs=None,
        has_probs=None,
        choice_mask=None,
    ):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        if soft_labels is not None:
            return self.distill_forward(
                inputs, labels, soft_labels, teacher_hidden, teacher_probs, has_probs, choice_mask
            )
        want_rationale = (
            self.decoder is not None
            and self.alpha < 1
            and rationale_ids is not None
            and has_rationale is not None
            and bool(has_rationale.any())
        )
        if self.family == "seq2seq":
            out = self.label_model(**inputs, labels=label_ids)
            label_loss, logits, enc = out.loss, out.logits, out.encoder_last_hidden_state
            ctx_mask = attention_mask
        else:
            out = label_outputs(
                self.label_model, inputs, choice_mask, want_rationale and self.family == "sequence-classification"
            )
            logits = out.logits
            label_loss = (
                self.label_loss(logits, labels, teacher_probs, has_probs, in_batch(out)) if labels is not None else None
            )
            if want_rationale and self.family == "sequence-classification":
                enc, ctx_mask = out.hidden_states[-1], attention_mask
            elif want_rationale:  # multiple choice: the decoder reads the question alone, not each choice pair
                ctx = {"input_ids": ctx_input_ids, "attention_mask": ctx_attention_mask}
                if ctx_token_type_ids is not None:
                    ctx["token_type_ids"] = ctx_token_type_ids
                enc, ctx_mask = self.label_model.base_model(**ctx).last_hidden_state, ctx_attention_mask
        loss = label_loss
        rationale_loss = torch.zeros((), device=input_ids.device)
        if want_rationale:
            rationale_loss = self.rationale_loss(enc, ctx_mask, rationale_ids, rationale_mask, has_rationale)
            loss = self.alpha * label_loss + (1 - self.alpha) * rationale_loss
        elif label_loss is not None and self.alpha < 1 and rationale_ids is not None:
            loss = self.alpha * label_loss  # a batch with no rationale at all: only the label term
        return {
            "loss": loss,
            "logits": logits,
            "label_loss": label_loss.detach() if label_loss is not None else None,
            "rationale_loss": rationale_loss.detach(),
        }

    def distill_forward(
        self, inputs, labels, soft_labels, teacher_hidden, teacher_probs=None, has_probs=None, choice_mask=None
    ):
        """alpha * CE(hard label) + (1 - alpha) * (T^2 KL(teacher || student at T) + w * (1 - cos) of head states)."""
        out = label_outputs(self.label_model, inputs, choice_mask, teacher_hidden is not None)
        logits = out.logits
        label_loss = self.label_loss(logits, labels, teacher_probs, has_probs, in_batch(out))
        t = self.temperature
        kd = F.kl_div(F.log_softmax(logits.float() / t, -1), soft_labels.float(), reduction="batchmean") * t * t
        if teacher_hidden is not None and self.hidden_weight:
            mine = head_states(
                out.hidden_states[-1], inputs["attention_mask"], logits.shape[0], pooling_of(self.config)
            )
            kd = (
                kd + self.hidden_weight * (1 - F.cosine_similarity(mine.float(), teacher_hidden.float(), dim=-1)).mean()
            )
        loss = self.alpha * label_loss + (1 - self.alpha) * kd
        return {"loss": loss, "logits": logits, "label_loss": label_loss.detach(), "rationale_loss": kd.detach()}

    def rationale_loss(self, enc, enc_mask, rationale_ids, rationale_mask, has_rationale):
        """Mean token cross-entropy per row, averaged over the rows that have a rationale.

        rationale_ids start with the decoder's start token ([CLS] for BERT, the decoder start for T5).
        """
        rows = has_rationale.nonzero(as_tuple=True)[0]
        ids, mask, enc, enc_mask = rationale_ids[rows], rationale_mask[rows], enc[rows], enc_mask[rows]
        if not self.rationale_reaches_encoder:
            enc = enc.detach()
        if self.family != "seq2seq":
            # The label head reads [CLS]; the decoder reads the tokens only, so that it cannot train
            # [CLS] into an input-independent "attention sink" for itself.
            enc_mask = enc_mask.clone()
            enc_mask[:, 0] = 0
        dec_in, dec_mask = ids[:, :-1], mask[:, :-1]
        target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        target[:, : self.rationale_prefix_len] = -100
        out = self.decoder(
            input_ids=dec_in, attention_mask=dec_mask, encoder_hidden_states=enc, encoder_attention_mask=enc_mask
        )
        if hasattr(out, "logits"):  # a decoder with its own LM head (bert2bert, and the encoder families)
            logits = out.logits
        else:  # a T5/BART decoder stack returns states; the LM head sits on the label model
            hidden = out[0]
            if getattr(self.config, "tie_word_embeddings", False) and hasattr(self.config, "d_model"):
                hidden = hidden * self.config.d_model**-0.5  # T5 rescales before a tied LM head
            logits = self.label_model.get_output_embeddings()(hidden)
        tok_loss = F.cross_entropy(logits.transpose(1, 2).float(), target, reduction="none", ignore_index=-100)
        per_row = tok_loss.sum(1) / (target != -100).sum(1).clamp(min=1)
        return per_row.mean()
