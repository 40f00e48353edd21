"""A text-in model for apps (`export --text-model`): raw text -> label probabilities, one ONNX file.

    text (string [1]) --BertTokenizer (onnxruntime-extensions)--> input_ids / token_type_ids /
    attention_mask [seq] --Reshape [1, seq]--> the bundle's model --Softmax--> probs (float32 [1, labels])

An app in Kotlin, Swift or JavaScript has no HF tokenizers; onnxruntime-extensions' ops ship in ORT
Mobile's extensions packages, so tokenizing inside the graph is what lets an app feed text. The
extensions' BertTokenizer takes one text (two would be a sentence pair), hence [1], and it covers
WordPiece (BERT-family) tokenizers only. Its attributes are read from tokenizer.json, not from
gen_processing_models' defaults: those leave strip_accents off where BertNormalizer's
`strip_accents: null` means "strip when lowercasing" (MiniLM), so "Café" would get other ids.
The graph is checked at export against the bundle's own runtime (EdgeModel), or there is no bundle.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from ..edge.runtime import EdgeModel
from ..errors import UserError
from . import bundle as bundle_mod

FILE = "text_model.onnx"
ROLE = "text"  # edge.runtime.APP_ROLES: listed and hashed, never loaded by EdgeModel
DOMAIN = "ai.onnx.contrib"  # the onnxruntime-extensions custom-op domain
PROB_TOLERANCE = 1e-4
EXTENSIONS = "onnxruntime-extensions==0.15.2"
# Measured against tokenizers 0.22 on the MiniLM tokenizer (onnxruntime 1.32, benchmarks/text_model.py):
# ids identical on 604/604 quickstart texts and variants and 1,000/1,000 texts mixing accents,
# punctuation, CJK, ligatures, full-width and truncated ones; these differ (parity inputs rarely hold
# them, so the parity check does not catch them):
KNOWN_DIFFERENCES = (
    "uppercase letters whose lowercase tokenizers finds and the op does not (Œ, İ -> [UNK]); "
    "Hangul (tokenizers splits syllables into jamo, the op gives [UNK]); "
    "a word holding a character without a ## piece in the vocabulary, e.g. an emoji glued to a word "
    "('dog😀': tokenizers makes the whole word [UNK], the op keeps 'dog' and adds [UNK])"
)


def check_supported(family: str, tokenizer_json: Path) -> None:
    """Fail before the long export when the text model cannot be built; UserError says why and what to do."""
    if family != "sequence-classification":
        raise UserError(
            f"--text-model is classification-only: a {family} bundle needs several tokenizer calls per "
            "prediction (one per choice, or a decoding loop), which the extensions' BertTokenizer "
            "(one text or one pair per call) cannot express cheaply; export without --text-model"
        )
    extensions()
    tokenizer_attrs(json.loads(Path(tokenizer_json).read_text(encoding="utf-8")), max_length=8)  # any length: a check


def extensions():
    """The onnxruntime_extensions module; UserError naming the package when it is missing."""
    try:
        # deferred: optional ([all]); without it --text-model says what to install
        import onnxruntime_extensions
    except ImportError:
        raise UserError(
            f"--text-model needs onnxruntime-extensions: pip install '{EXTENSIONS}' "
            "(or pip install -e '.[all]'), then re-run the export"
        ) from None
    return onnxruntime_extensions


def tokenizer_attrs(tok: dict, max_length: int) -> dict:
    """BertTokenizer op attributes reproducing tokenizer.json's WordPiece pipeline, truncated to max_length."""
    model, norm = tok.get("model") or {}, tok.get("normalizer") or {}
    pre, post = (tok.get("pre_tokenizer") or {}).get("type"), tok.get("post_processor") or {}
    single = [next(iter(p.values())).get("id") for p in post.get("single", [])]
    problems = [
        what
        for what, ok in [
            (f"model {model.get('type')!r} (needs WordPiece)", model.get("type") == "WordPiece"),
            (
                f"normalizer {norm.get('type')!r} (needs BertNormalizer with clean_text)",
                norm.get("type") == "BertNormalizer" and norm.get("clean_text", True),
            ),
            (f"pre-tokenizer {pre!r} (needs BertPreTokenizer)", pre == "BertPreTokenizer"),
            (
                f"post-processor {post.get('type')!r} {single} (needs [CLS] A [SEP])",
                post.get("type") == "BertProcessing"
                or (post.get("type") == "TemplateProcessing" and len(single) == 3 and single[1] == "A"),
            ),
        ]
        if not ok
    ]
    if problems:
        raise UserError(
            "--text-model: onnxruntime-extensions' BertTokenizer cannot reproduce this tokenizer.json: "
            + "; ".join(problems)
            + ". It supports BERT-family WordPiece tokenizers (MiniLM, BERT, DistilBERT); "
            "export without --text-model and tokenize in the app"
        )
    cls_sep = [post["cls"][0], post["sep"][0]] if post["type"] == "BertProcessing" else [single[0], single[2]]
    lower = bool(norm.get("lowercase", True))
    strip = norm.get("strip_accents")
    return {
        "do_lower_case": int(lower),
        "strip_accents": int(lower if strip is None else strip),
        "tokenize_chinese_chars": int(norm.get("handle_chinese_chars", True)),
        "unk_token": model.get("unk_token", "[UNK]"),
        "suffix_indicator": model.get("continuing_subword_prefix", "##"),
        "cls_token": cls_sep[0],
        "sep_token": cls_sep[1],
        "max_length": int(max_length),
        "truncation_strategy_name": "longest_first",
    }


def tokenizer_graph(tok_dir: Path, attrs: dict):
    """The extensions' BertTokenizer as a one-node ONNX model: gen_processing_models on the HF tokenizer
    in tok_dir, with `attrs` (tokenizer_attrs) overriding the defaults it would take."""
    # deferred: transformers loads torch; compress imports deploy/ torch-free
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tok_dir)
    try:
        pre, _ = extensions().gen_processing_models(hf, pre_kwargs=attrs)
    except ValueError as e:  # "Unsupported processor/tokenizer: X"
        raise UserError(
            f"--text-model: onnxruntime-extensions cannot convert this tokenizer ({e}); it converts "
            "BertTokenizerFast-style tokenizers; export without --text-model"
        ) from None
    return pre


def merge(tokenizer, model):
    """One graph: text -> tokenizer -> [1, seq] ids -> model -> Softmax -> probs (names as in
    manifest['text_model'])."""
    g = model.graph
    init = {i.name for i in g.initializer}
    wanted = [i.name for i in g.input if i.name not in init]
    tok_node = tokenizer.graph.node[0]
    # No offset_mapping (the op's last, optional output): left unconsumed, it made onnxruntime 1.32 hand
    # back probs arrays whose memory was reused by later runs (6 of 40 rows garbage in a list of results).
    del tok_node.output[3:]
    renamed = {o: f"tok_{o}" for o in tok_node.output}
    tok_node.output[:] = [renamed[o] for o in tok_node.output]
    missing = [n for n in wanted if n not in renamed]
    if missing:
        raise UserError(
            f"--text-model: the model takes {missing}, which the tokenizer op does not produce; "
            "export without --text-model"
        )
    shape = numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "text_model_row_shape")
    nodes = [tok_node] + [helper.make_node("Reshape", [renamed[n], shape.name], [n], name=f"row_{n}") for n in wanted]
    nodes += list(g.node) + [helper.make_node("Softmax", [g.output[0].name], ["probs"], axis=-1, name="probs_softmax")]
    labels = g.output[0].type.tensor_type.shape.dim[-1].dim_value or "num_labels"
    graph = helper.make_graph(
        nodes,
        "edgedistill_text_model",
        [helper.make_tensor_value_info("text", onnx.TensorProto.STRING, [1])],
        [helper.make_tensor_value_info("probs", onnx.TensorProto.FLOAT, [1, labels])],
        initializer=list(g.initializer) + [shape],
        value_info=list(g.value_info),
    )
    opsets = [o for o in model.opset_import if o.domain != DOMAIN] + [helper.make_opsetid(DOMAIN, 1)]
    merged = helper.make_model(
        graph, opset_imports=opsets, ir_version=model.ir_version, producer_name="edgedistill --text-model"
    )
    onnx.checker.check_model(merged)
    return merged


def session(path: Path, threads: int = 1):
    """An onnxruntime session of a text model (.onnx or .ort) with the extensions' custom ops registered."""
    return session_of(str(path), threads)


def session_of(model, threads: int = 1):
    """The same for a path or an in-memory ModelProto."""
    opts = ort.SessionOptions()
    opts.register_custom_ops_library(extensions().get_library_path())
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    src = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def parity(path: Path, edge: EdgeModel, items: list[dict]) -> dict:
    """The text model vs the bundle's runtime on the parity inputs: label agreement and max |Δprob|."""
    s = session(path)
    # Batch 1, as an app calls it: dynamic INT8 scales activations per batch, so a padded batch differs.
    ref = edge.predict(items, batch_size=1)
    got = np.array([s.run(["probs"], {"text": np.array([edge.render(it)], dtype=object)})[0][0] for it in items])
    diff = np.abs(got - np.array([[p["probs"][n] for n in edge.labels] for p in ref])).max(axis=1)
    same = [edge.labels[int(g.argmax())] == p["label"] for g, p in zip(got, ref)]
    return {
        "examples": len(items),
        "labels_equal": int(sum(same)),
        "max_abs_prob_diff": float(diff.max()),
        "worst_input": edge.render(items[int(diff.argmax())])[:80],
    }


def enforce(p: dict, what: str) -> None:
    """UserError unless every label matches and every probability is within PROB_TOLERANCE."""
    if p["labels_equal"] != p["examples"] or not p["max_abs_prob_diff"] <= PROB_TOLERANCE:
        raise UserError(
            f"text model parity failed, no bundle written: {what} gives the bundle's label on "
            f"{p['labels_equal']}/{p['examples']} parity inputs, max |Δprob| = {p['max_abs_prob_diff']:.3g} "
            f"> {PROB_TOLERANCE} (worst input: {p['worst_input']!r}). Its tokenizer op does not reproduce "
            "tokenizer.json on such inputs: export without --text-model, and report the input"
        )


def add(bundle: Path, reference: Path, tok_dir: Path, manifest: dict, items: list[dict], echo=print) -> None:
    """Build text_model.onnx in the staging dir `bundle`, verify it (and its .ort copy) against the
    bundle's runtime loaded from `reference`, and list it in the manifest; UserError when it fails."""
    echo("building the text-in model (onnxruntime-extensions tokenizer + model + softmax) ...")
    attrs = tokenizer_attrs(json.loads((bundle / "tokenizer.json").read_text(encoding="utf-8")), manifest["max_length"])
    model = onnx.load(str(bundle / manifest["models"]["model"]))
    onnx.save(merge(tokenizer_graph(tok_dir, attrs), model), str(bundle / FILE))
    edge = EdgeModel.load(reference, verify=False)
    result = parity(bundle / FILE, edge, items)
    enforce(result, FILE)
    echo(
        f"text model parity: labels {result['labels_equal']}/{result['examples']}, max |Δprob| "
        f"{result['max_abs_prob_diff']:.2e}"
    )
    ort = bundle_mod.convert_to_ort(
        bundle, {ROLE: FILE}, subdir="ort/text", extra_args=["--custom_op_library", extensions().get_library_path()]
    )
    if "error" not in ort:
        enforce(parity(bundle / ort[ROLE], edge, items), ort[ROLE])
        result["ort_checked"] = True
    else:
        warning = (
            f"no ORT-format text model ({ort['error']}): apps load {FILE} itself (ONNX format) with the full "
            "onnxruntime-android / onnxruntime-objc package; or convert by hand (export/ANDROID.md, section 6)"
        )
        manifest.setdefault("warnings", []).append(warning)
        echo(f"WARNING: {warning}")
    manifest["models"][ROLE] = FILE
    manifest["io"][ROLE] = bundle_mod.io_spec(bundle / FILE)
    manifest["text_model"] = {
        "file": FILE,
        "ort": ort,
        "inputs": manifest["io"][ROLE]["inputs"],
        "outputs": manifest["io"][ROLE]["outputs"],
        "input_text": f"the rendered task input ({manifest['task']['input']!r}), one text per call",
        "labels": manifest["labels"],
        "custom_op_domain": DOMAIN,
        "custom_ops": ["BertTokenizer"],
        "known_tokenizer_differences": KNOWN_DIFFERENCES,
        "requires": f"onnxruntime-extensions ({EXTENSIONS} here): register its custom-op library in the session "
        "options",
        "tokenizer": attrs,
        "parity": {**result, "tolerance": PROB_TOLERANCE, "reference": "the bundle's EdgeModel.predict"},
    }
