"""Tiny models and tokenizers built from a config, for tests: no hub access, a second to build.

Every stage's tests use these, so a tiny model is the same object everywhere.
"""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "the a an is are was were not no yes it this that of to in on at and or but for with my your "
    "premise hypothesis question answer choices entailment neutral contradiction true false maybe "
    "dog cat man woman child people park street house car train station garden book ball food "
    "running sitting eating playing sleeping happy sad big small red blue green because so if "
    "refund shipping login bug billing password order late broken charge account app crash please help "
    "how many what who where when why does do did has have had more less than each total left "
    "0 1 2 3 4 5 6 7 8 9 10 12 20 42 84 100 + - * / ( ) . , ? ! : answer: rationale: label: [label] [rationale]"
).split()


def tiny_tokenizer(style: str = "bert", sep_last: bool = False):
    """A fast tokenizer over WORDS. style="bert": [CLS] a [SEP] b [SEP]; style="t5": a </s>. sep_last: [SEP] the last
    id, after the words (so trimming the vocabulary renumbers it)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    if style == "bert":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    else:
        specials = ["<pad>", "</s>", "<unk>"]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(specials + WORDS))}
    if sep_last:
        vocab = {w: i for i, w in enumerate([w for w in vocab if w != "[SEP]"] + ["[SEP]"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=specials[1] if style == "bert" else "<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    if style == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tok,
            pad_token="[PAD]",
            unk_token="[UNK]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
            model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        )
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_input_names=["input_ids", "attention_mask"],
    )


def tiny_mpnet_tokenizer():
    """A fast tokenizer over WORDS as all-mpnet-base-v2's: <s> a </s></s> b </s>, <pad> id 1 (MPNet's padding_idx),
    no token types among its outputs."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(dict.fromkeys(["<s>", "<pad>", "</s>", "<unk>"] + WORDS + ["<mask>"]))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.RobertaProcessing(("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        model_input_names=["input_ids", "attention_mask"],
    )


def tiny_mpnet_sentence_encoder_dir(path, seed: int = 0) -> Path:
    """A tiny MPNet encoder + tokenizer that pools by the token mean, as all-mpnet-base-v2 (a --student base)."""
    import torch
    from transformers import MPNetConfig, MPNetModel

    torch.manual_seed(seed)
    path = Path(path)
    tok = tiny_mpnet_tokenizer()
    MPNetModel(
        MPNetConfig(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=130,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
        )
    ).save_pretrained(path)
    tok.save_pretrained(path)
    _mean_pooling(path)
    return path


def _mean_pooling(path: Path) -> None:
    """sentence-transformers' record that the model at path pools by the token mean (1_Pooling/config.json)."""
    import json

    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True})
    )


def tiny_bert_config(num_labels: int = 3, **kw):
    from transformers import BertConfig

    vocab = len(tiny_tokenizer("bert"))
    return BertConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=num_labels,
        **kw,
    )


def tiny_t5_config(**kw):
    from transformers import T5Config

    vocab = len(tiny_tokenizer("t5"))
    return T5Config(
        vocab_size=vocab,
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
        **kw,
    )


def tiny_encoder_dir(path, seed: int = 0) -> Path:
    """A tiny pretrained-looking BERT encoder + tokenizer saved as an HF dir (a --student base)."""
    import torch
    from transformers import BertModel

    torch.manual_seed(seed)
    path = Path(path)
    BertModel(tiny_bert_config()).save_pretrained(path)
    tiny_tokenizer("bert").save_pretrained(path)
    return path


def tiny_t5_dir(path, seed: int = 0) -> Path:
    """A tiny T5 seq2seq model + tokenizer saved as an HF dir (a --student base for numeric tasks)."""
    import torch
    from transformers import T5ForConditionalGeneration

    torch.manual_seed(seed)
    path = Path(path)
    T5ForConditionalGeneration(tiny_t5_config()).save_pretrained(path)
    tiny_tokenizer("t5").save_pretrained(path)
    return path


def tiny_classifier_dir(path, labels=("entailment", "neutral", "contradiction"), seed: int = 0) -> Path:
    """A tiny BertForSequenceClassification with id2label set, saved with its tokenizer."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    path = Path(path)
    cfg = tiny_bert_config(
        num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)}
    )
    BertForSequenceClassification(cfg).eval().save_pretrained(path)
    tiny_tokenizer("bert").save_pretrained(path)
    return path


def tiny_multiple_choice_dir(path, seed: int = 0) -> Path:
    import torch
    from transformers import BertForMultipleChoice

    torch.manual_seed(seed)
    path = Path(path)
    BertForMultipleChoice(tiny_bert_config(num_labels=1)).eval().save_pretrained(path)
    tiny_tokenizer("bert").save_pretrained(path)
    return path


def tiny_sentence_encoder_dir(path, seed: int = 0) -> Path:
    """tiny_encoder_dir as a sentence-transformers model that pools by the token mean (as all-MiniLM-L6-v2 does)."""
    path = tiny_encoder_dir(path, seed)
    _mean_pooling(path)
    return path
