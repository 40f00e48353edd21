"""Run an edgedistill bundle with onnxruntime, tokenizers and numpy only: no torch, no transformers.

    from edgedistill.runtime import EdgeModel      # or, inside a bundle: from edge_runtime import EdgeModel
    model = EdgeModel.load("runs/x/bundle")
    model.predict([{"text": "my card was charged twice"}])
    # -> [{"label": "billing", "probs": {"billing": 0.93, ...}}]

Loading checks the manifest (validate_manifest: every file it loads lies inside the bundle and is listed with its
sha256) and the sha256 of each file it loads. Those hashes prove integrity, not origin: a changed file whose hash
was changed in the manifest too loads. Load bundles only from a source you trust (INTEGRITY_NOTE).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat
import tempfile
import weakref
import zipfile
import zlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from .arith import tidy
from .expressions import choices_for, value_of
from .families import BY_TASK_TYPE, FAMILIES
from .template import fill_template, parse_template, template_fields

# 2: `models` may list app-only roles (APP_ROLES), which runtimes before it would try to load; a bundle
# without them is still written as 1, so those runtimes keep reading it.
# 3: a cascade (`cascade`: a static bundle in CASCADE_DIR answers where its top probability >= `threshold`), which
# runtimes before it would ignore, running the transformer alone; only cascade bundles are written as 3.
FORMAT_VERSION = 3
APP_ROLES_FORMAT, CASCADE_FORMAT = 2, 3
CASCADE_DIR = "cascade"
UNZIP_PREFIX = "edgedistill-bundle-"  # temp dirs a zipped bundle is unpacked into (removed on close)
# A zipped bundle is unpacked only within these: checked from the zip's headers before anything is written, and
# again while unpacking (a member may not inflate past the size its header declares).
MAX_UNZIPPED_BYTES = 8 << 30  # all members together
MAX_ZIP_MEMBERS = 10_000  # a bundle has tens of files
ZIP_RATIO_FROM = 1 << 20  # members larger than this (bytes) may not compress more than MAX_ZIP_RATIO
MAX_ZIP_RATIO = 100  # uncompressed / compressed: weights barely compress; a zip bomb ~1000x
APP_ROLES = ("text",)  # models for apps (text_model.onnx needs onnxruntime-extensions): listed, never loaded here


class BundleError(Exception):
    """A bundle that cannot be used as it is; the message says what is wrong and how to fix it."""


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def softmax(x: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis (shared by the runtime, INT8 sensitivity ranking and compress)."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------------------- manifest
# One set of rules for what a manifest may say (validate_manifest), checked at every load and by the writer
# (deploy/bundle.py) before it writes one; export/js/edgedistill.mjs (validateManifest) mirrors them.

MAX_MANIFEST_BYTES = 16 << 20  # a manifest lists files and settings (kilobytes); more is not one an export wrote
MAX_TOKENS = 1 << 20  # the most max_length / max_answer_tokens may say: no model reads a million tokens
MAX_TOKEN_ID = (1 << 31) - 1  # token ids are int64 feeds; vocabularies have at most millions of entries
OPTIONAL_ROLES = ("decoder_with_past",)  # a bert2bert student's decoder has no past keys/values
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
INTEGRITY_NOTE = (
    "The sha256 hashes in manifest.json prove integrity, not origin: they show that a file is the one "
    "the manifest lists, not who made the bundle (anyone who can change a file can change the manifest "
    "too). Load bundles only from a source you trust."
)


def read_manifest(path: Path, hashed: bool = True) -> dict:
    """The bundle's manifest.json: UTF-8 JSON, an object, inside the bundle, and valid (validate_manifest)."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.exists():
        raise BundleError(f"{path}: no manifest.json; is this a bundle made by `edgedistill export`?")
    bundle_file(path, "manifest.json")
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(
            f"{manifest_path}: {manifest_path.stat().st_size} bytes, more than a manifest holds "
            f"({MAX_MANIFEST_BYTES}); re-export the bundle"
        )
    try:
        text = manifest_path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise BundleError(f"{manifest_path}: not UTF-8 text (byte {e.start}); re-export the bundle") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as e:
        raise BundleError(
            f"{manifest_path}: corrupt manifest ({e.msg}, line {e.lineno} column {e.colno}); re-export the bundle"
        ) from None
    except RecursionError:
        raise BundleError(f"{manifest_path}: corrupt manifest (JSON nested too deeply); re-export the bundle") from None
    except ValueError as e:  # a number past Python's int digits limit
        raise BundleError(f"{manifest_path}: corrupt manifest ({e}); re-export the bundle") from None
    validate_manifest(manifest, str(manifest_path), hashed)
    return manifest


def validate_manifest(manifest, where: str = "manifest.json", hashed: bool = True) -> None:
    """Raise a BundleError naming the key and what it must be, unless the manifest is one this runtime can load:
    the keys it reads present and of their types, every model and the tokenizer a relative path inside the
    bundle, the roles its family runs, and (hashed) every file the runtime loads listed in `files` with its sha256.
    hashed=False is for the export's own unsealed stages (EdgeModel.load(..., verify=False))."""
    if not isinstance(manifest, dict):
        raise BundleError(
            f"{where}: a JSON {_json_type(manifest)} where a JSON object was expected; re-export the bundle"
        )
    _check_format_version(manifest, where)
    fam = _require(
        manifest, "family", where, lambda v: isinstance(v, str) and v in FAMILIES, f"one of {', '.join(FAMILIES)}"
    )
    _check_task(manifest, where)
    _require(manifest, "max_length", where, _int_in(1, MAX_TOKENS), f"an integer from 1 to {MAX_TOKENS}")
    tokenizer = _require(manifest, "tokenizer", where, _is(dict), "an object with `file` and `pad_token_id`")
    _check_name(tokenizer, "file", "tokenizer", where)
    _require(tokenizer, "pad_token_id", where, _int_in(0, MAX_TOKEN_ID), "a token id (an integer >= 0)", "tokenizer")
    _check_models(manifest, fam, where)
    _check_labels(manifest, fam, where)
    if fam == "seq2seq":
        for key in ("decoder_start_token_id", "eos_token_id"):
            _require(manifest, key, where, _int_in(0, MAX_TOKEN_ID), "a token id (an integer >= 0)")
        _optional(manifest, "max_answer_tokens", where, _int_in(1, MAX_TOKENS), f"an integer from 1 to {MAX_TOKENS}")
    quantization = _optional(manifest, "quantization", where, _is(dict), "an object")
    _optional(quantization or {}, "mode", where, _is(str), "text", "quantization")
    _check_cascade(manifest, fam, where)
    _check_files(manifest, where, hashed)


def _check_cascade(manifest: dict, fam: str, where: str) -> None:
    cascade = _optional(manifest, "cascade", where, _is(dict), "an object (bundle, threshold, manifest_sha256)")
    if cascade is None:
        return
    if fam != "sequence-classification":
        raise BundleError(f"{where}: cascade: only classifier bundles cascade (family {fam!r}); re-export the bundle")
    if manifest.get("format_version") != CASCADE_FORMAT:
        raise _bad(where, "format_version", manifest, f"{CASCADE_FORMAT} (the bundle has a cascade)")
    _require(cascade, "bundle", where, lambda v: v == CASCADE_DIR, repr(CASCADE_DIR), "cascade")
    _require(
        cascade,
        "threshold",
        where,
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1,
        "a probability in (0, 1]",
        "cascade",
    )
    _require(
        cascade,
        "manifest_sha256",
        where,
        lambda v: isinstance(v, str) and len(v) == 64,
        "the sha256 of the static bundle's manifest.json",
        "cascade",
    )


def runtime_models(manifest: dict) -> dict[str, str]:
    """role -> file of the models this runtime runs: the manifest's models but the app-only ones (APP_ROLES)."""
    return {role: name for role, name in manifest["models"].items() if role not in APP_ROLES}


def loaded_files(manifest: dict) -> dict[str, str]:
    """manifest key -> file, of the files `EdgeModel.load` reads: the ONNX models it runs and the tokenizer (not
    the ort/ copies, the app-only models, docs or code)."""
    return {
        **{f"models.{role}": name for role, name in runtime_models(manifest).items()},
        "tokenizer.file": manifest["tokenizer"]["file"],
    }


def bundle_file(root: Path, name: str) -> Path:
    """root/name, a regular file that lies inside the bundle once symlinks are resolved."""
    f = Path(root) / name
    if not f.exists():
        raise BundleError(f"{f}: missing bundle file listed in the manifest; copy the whole bundle directory")
    real, inside = f.resolve(), Path(root).resolve()
    if real != inside and inside not in real.parents:
        raise BundleError(
            f"{f}: a symlink that resolves outside the bundle (to {real}); a bundle holds its own "
            "files: copy the real file in, or re-export the bundle"
        )
    if not real.is_file():
        raise BundleError(f"{f}: not a file; re-export the bundle")
    return f


def verify_files(path: Path, manifest: dict, hash_them: bool = True) -> None:
    """Each file the runtime loads lies inside the bundle and, with hash_them, has the sha256 the manifest lists."""
    for name in loaded_files(manifest).values():
        f = bundle_file(path, name)
        if hash_them and sha256_file(f) != manifest["files"][name]["sha256"]:
            raise BundleError(
                f"{f}: sha256 mismatch: the file is corrupt or was changed after export; re-copy or "
                f"re-export the bundle. {INTEGRITY_NOTE}"
            )


def _check_format_version(manifest: dict, where: str) -> None:
    version = manifest.get("format_version")
    if _int_in(1, FORMAT_VERSION)(version):
        return
    if _int_in(FORMAT_VERSION + 1, None)(version):
        raise BundleError(
            f"{where}: bundle format {version!r} is newer than this runtime understands ({FORMAT_VERSION}); "
            "upgrade edgedistill (pip install -U edgedistill) or re-export with this version"
        )
    raise _bad(where, "format_version", manifest, f"an integer from 1 to {FORMAT_VERSION}")


def _check_task(manifest: dict, where: str) -> None:
    task = _require(manifest, "task", where, _is(dict), "an object with `type` and `input`")
    _require(
        task,
        "type",
        where,
        lambda v: isinstance(v, str) and v in BY_TASK_TYPE,
        f"one of {', '.join(BY_TASK_TYPE)}",
        "task",
    )
    template = _require(task, "input", where, _is(str), 'a template of the input\'s fields, as "{text}"', "task")
    try:
        parse_template(template)
    except ValueError as e:
        raise BundleError(f"{where}: `task.input` {template!r} is not a template: {e}; re-export the bundle") from None
    _optional(task, "choices", where, _is(str), "the name of the field that holds the options", "task")


def _check_models(manifest: dict, fam: str, where: str) -> None:
    models = _require(manifest, "models", where, _is(dict), "an object of role -> file")
    roles = FAMILIES[fam].onnx_files
    for role in models:
        if role not in roles and role not in APP_ROLES:
            raise BundleError(
                f"{where}: `models.{role}`: not a role of a {fam} bundle (those are "
                f"{', '.join([*roles, *APP_ROLES])}); re-export the bundle"
            )
        _check_name(models, role, "models", where)
    for role in roles:
        if role not in models and role not in OPTIONAL_ROLES:
            raise _bad(where, f"models.{role}", {}, f"the file of the {fam} bundle's `{role}` model")


def _check_labels(manifest: dict, fam: str, where: str) -> None:
    def label_list(v) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, str) for x in v) and len(set(v)) == len(v)

    expected = "a list of the model's output labels (distinct texts, in output order)"
    if fam == "sequence-classification":
        _require(manifest, "labels", where, label_list, expected)
    else:
        _optional(manifest, "labels", where, label_list, expected + " or null")


def _check_files(manifest: dict, where: str, hashed: bool) -> None:
    files = _require(manifest, "files", where, _is(dict), "an object of file -> {sha256, bytes}")
    for name, entry in files.items():
        key = f"files[{json.dumps(name)}]"
        if not isinstance(entry, dict):
            raise _bad(where, key, files, "an object with the file's `sha256`", name)
        _require(
            entry,
            "sha256",
            where,
            lambda v: isinstance(v, str) and SHA256_HEX.fullmatch(v),
            "a sha256 (64 lowercase hex digits)",
            key,
        )
        _optional(entry, "bytes", where, _int_in(0, None), "the file's size (an integer >= 0)", key)
    if not hashed:
        return
    for key, name in loaded_files(manifest).items():
        if name not in files:
            raise BundleError(
                f"{where}: `{key}` is {name!r}, which `files` does not list with a sha256: the runtime "
                "loads only files it can verify; re-export the bundle"
            )


def _check_name(parent: dict, key: str, prefix: str, where: str) -> str:
    """parent[key]: a file name inside the bundle (relative_name)."""
    return _require(
        parent,
        key,
        where,
        lambda v: isinstance(v, str) and relative_name(v),
        "a file name inside the bundle (a relative path with / separators and no '..', '.', empty part, "
        "absolute path or backslash)",
        prefix,
    )


def relative_name(name: str) -> bool:
    """A path that stays inside the folder it is joined to: / separators, no absolute path, drive, backslash, NUL,
    '..', '.' or empty part (the rule for the manifest's file names and a zipped bundle's members)."""
    return (
        bool(name)
        and "\\" not in name
        and "\0" not in name
        and not re.match(r"[A-Za-z]:", name)
        and all(p not in ("", ".", "..") for p in name.split("/"))
    )


def _require(parent: dict, key: str, where: str, ok, expected: str, prefix: str = ""):
    """parent[key] when ok(it), else a BundleError naming the key (prefix.key) and what it must be."""
    if key not in parent or not ok(parent[key]):
        raise _bad(where, f"{prefix}.{key}" if prefix else key, parent, expected, key)
    return parent[key]


def _optional(parent: dict, key: str, where: str, ok, expected: str, prefix: str = ""):
    """parent[key] when absent or null (None), else as _require."""
    if parent.get(key) is None:
        return None
    return _require(parent, key, where, ok, expected, prefix)


def _bad(where: str, dotted: str, parent: dict, expected: str, key: str | None = None) -> BundleError:
    key = dotted.rsplit(".", 1)[-1] if key is None else key
    got = "missing" if key not in parent else f"{_json_type(parent[key])} {json.dumps(parent[key])[:80]}"
    return BundleError(f"{where}: `{dotted}` must be {expected}, not {got}; re-export the bundle (edgedistill export)")


def _is(kind):
    return lambda v: isinstance(v, kind)


def _int_in(lo: int, hi: int | None):
    """A check for a JSON integer (not a bool) from lo to hi (inclusive; None: no upper bound)."""
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)


def _json_type(v) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if v is None else names.get(type(v), type(v).__name__)


def _labels_mismatch(where, n_labels: int, width: int) -> BundleError:
    return BundleError(
        f"{where}: `labels` lists {n_labels} labels but the model outputs {width} scores per input: each output "
        "needs its label, in order; re-export the bundle"
    )


def answer_batch_size(manifest: dict) -> int:
    """Items per call when answering many. Dynamic INT8 quantizes each activation tensor with one scale
    from its min and max, so an item's answer depends on the items (and padding) beside it: an e-SNLI
    student's INT8 bundle gave another label to 4.4 % of 500 inputs at batch 32 than at batch 1. One
    item per call gives every input the answer an app gets, for 7 % more time there (4.75 vs 4.42 s
    for the 500, 2 threads). Other bundles batch 32, which changes their outputs by float rounding only."""
    return 1 if (manifest.get("quantization") or {}).get("mode") == "dynamic" else 32


class EdgeModel:
    def __init__(self, path: Path, manifest: dict, sessions: dict, tokenizer: Tokenizer):
        self.path, self.manifest, self.sessions, self.tokenizer = path, manifest, sessions, tokenizer
        self.family = manifest["family"]
        self.task = manifest["task"]
        self.max_length = manifest["max_length"]
        self.labels = manifest.get("labels")
        self.pad_id = manifest["tokenizer"]["pad_token_id"]
        main = sessions["encoder" if self.family == "seq2seq" else "model"]
        self.input_names = [i.name for i in main.get_inputs()]
        self._fields = template_fields(self.task["input"])
        self._cleanup = None  # removes the unzipped copy of a zipped bundle (see close)
        self.static = None  # a cascade's static tier (an EdgeModel), answering where its top probability >= P
        self.batch_size = answer_batch_size(manifest)

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, path, threads: int | None = None, verify: bool = True, providers=None) -> EdgeModel:
        """Load a bundle directory or BUNDLE.zip. verify: check the sha256 of the files it loads.

        A zip is unpacked into a temporary directory that is removed by `close()`, by leaving a
        `with` block, or when the model is garbage-collected."""
        path = Path(path)
        if path.is_file() and path.suffix == ".zip":
            root, inner = _unzip(path)
            try:
                model = cls._load_dir(inner, threads, verify, providers)
            except BaseException:
                shutil.rmtree(root, ignore_errors=True)
                raise
            model._cleanup = weakref.finalize(model, shutil.rmtree, str(root), True)
            return model
        return cls._load_dir(path, threads, verify, providers)

    @classmethod
    def _load_dir(cls, path: Path, threads, verify, providers) -> EdgeModel:
        manifest = read_manifest(path, hashed=verify)
        verify_files(path, manifest, hash_them=verify)
        sessions = _sessions(path, manifest, threads, providers)
        tokenizer = _tokenizer(path, manifest)
        _check_fit(path, manifest, sessions, tokenizer)
        model = cls(path, manifest, sessions, tokenizer)
        if "cascade" in manifest:
            model.static = _cascade_model(path, manifest, threads, verify, providers)
        return model

    def close(self) -> None:
        """Remove the unzipped copy of a zipped bundle now (a directory bundle is left as it is)."""
        if self._cleanup is not None:
            self._cleanup()

    def __enter__(self) -> EdgeModel:  # noqa: PYI034 - typing.Self needs Python 3.11; the runtime runs on 3.10
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ inputs

    def render(self, item) -> str:
        """The model's input text for an item: a dict of the task's fields, or an already-rendered string."""
        if isinstance(item, str):
            return item
        missing = [f for f in self._fields if f not in item]
        if missing and "input" in item:  # an already-rendered input with its choices (parity, annotations)
            return item["input"]
        if missing:
            raise BundleError(
                f"input is missing the field {missing[0]!r}; the task renders {self.task['input']!r} "
                f"from the fields {self._fields}, or pass the rendered text as a string"
            )
        return fill_template(self.task["input"], item)

    def _encode_texts(self, firsts: list[str], seconds: list[str] | None, pad_to: int | None) -> dict[str, np.ndarray]:
        self.tokenizer.enable_truncation(self.max_length)  # over-long inputs are cut, as in training
        self.tokenizer.no_padding()
        encs = self.tokenizer.encode_batch(list(zip(firsts, seconds)) if seconds else firsts)
        length = pad_to or max(len(e.ids) for e in encs)
        ids = np.full((len(encs), length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encs), length), dtype=np.int64)
        types = np.zeros((len(encs), length), dtype=np.int64)
        for i, e in enumerate(encs):
            n = min(len(e.ids), length)
            ids[i, :n], mask[i, :n], types[i, :n] = e.ids[:n], e.attention_mask[:n], e.type_ids[:n]
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {k: v for k, v in feeds.items() if k in self.input_names}

    def encode(self, items, pad_to: int | None = None, choices: list[list[str]] | None = None) -> dict[str, np.ndarray]:
        """Model inputs for a batch. Multiple choice: (batch, num_choices, seq) from (input, choice) pairs, the
        choices given (as `logit_groups` passes the ones it built) or built here."""
        texts = [self.render(it) for it in items]
        if self.family != "multiple-choice":
            return self._encode_texts(texts, None, pad_to)
        choices = choices if choices is not None else [self._choices_of(it) for it in items]
        if len({len(c) for c in choices}) != 1:
            raise BundleError("all items of one batch need the same number of choices; predict them in separate calls")
        k = len(choices[0])
        flat = self._encode_texts([t for t in texts for _ in range(k)], [c for cs in choices for c in cs], pad_to)
        return {name: v.reshape(len(items), k, -1) for name, v in flat.items()}

    def _choices_of(self, item) -> list[str]:
        if self.task.get("type") == "numeric":  # a ranking student: the item's one-operation expressions
            return choices_for("numeric", self.render(item))
        field = self.task.get("choices") or "choices"
        if isinstance(item, str) or field not in item:
            raise BundleError(f"a multiple-choice item needs its options in the field {field!r}")
        return [str(c) for c in item[field]]

    # ------------------------------------------------------------------ inference

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Raw logits of the label model for encoded inputs (seq2seq: the first decoding step's logits)."""
        if self.family == "seq2seq":
            hidden = self.sessions["encoder"].run(None, feeds)[0]
            start = np.full((feeds["input_ids"].shape[0], 1), self.manifest["decoder_start_token_id"], dtype=np.int64)
            return self.sessions["decoder"].run(
                None,
                {
                    "input_ids": start,
                    "encoder_hidden_states": hidden,
                    "encoder_attention_mask": feeds["attention_mask"],
                },
            )[0][:, -1]
        return self.sessions["model"].run(None, feeds)[0]

    def predict(self, items, batch_size: int | None = None) -> list[dict]:
        """[{label, probs}] (seq2seq: [{answer}]), batch_size items per call; default `self.batch_size`. A cascade
        adds `tier` ("static" or "transformer") to each answer: the static model's where its top probability >= P."""
        items = list(items)
        batch_size = batch_size or self.batch_size
        if self.static is not None:
            return self._cascade(items, batch_size)
        out = []
        for i in range(0, len(items), batch_size):
            batch = items[i : i + batch_size]
            if self.family == "seq2seq":
                out += [{"answer": a} for a in self.generate(batch)]
                continue
            for group, choices, logits in self.logit_groups(batch):
                out += self.answers(group, logits, choices)
        return out

    def _cascade(self, items: list, batch_size: int) -> list[dict]:
        p = self.manifest["cascade"]["threshold"]
        out = [{**a, "tier": "static"} for a in self.static.predict(items, batch_size)]
        hard = [i for i, a in enumerate(out) if max(a["probs"].values()) < p]
        for start in range(0, len(hard), batch_size):
            rows = hard[start : start + batch_size]
            for group, choices, logits in self.logit_groups([items[i] for i in rows]):
                for i, a in zip(rows, self.answers(group, logits, choices)):
                    out[i] = {**a, "tier": "transformer"}
        return out

    def logit_groups(self, batch) -> list[tuple[list, list[list[str]] | None, np.ndarray]]:
        """(items, their choices, their label-model logits), one `run` call each. The choices (None unless multiple
        choice) are built once per item here, for `encode` and `answers` to reuse: a numeric task's are all the
        expressions over its numbers. A multiple-choice batch whose items have different numbers of choices runs
        item by item; an item with no choice (a numeric input with under two numbers) is not run."""
        if self.family != "multiple-choice":
            return [(batch, None, self.run(self.encode(batch)))]
        choices = [self._choices_of(it) for it in batch]
        if len({len(c) for c in choices}) > 1 or not choices[0]:
            return [
                ([it], [c], self.run(self.encode([it], choices=[c])) if c else np.zeros((1, 0), np.float32))
                for it, c in zip(batch, choices)
            ]
        return [(batch, choices, self.run(self.encode(batch, choices=choices)))]

    def answers(self, items, logits: np.ndarray, choices: list[list[str]] | None = None) -> list[dict]:
        """[{label, probs}] of these items from their label-model logits. A numeric task's ranking student adds
        `answer`, the chosen expression's value ({"label": "84 / 2", "answer": "42", ...}); label and answer are None
        for an item with nothing to choose from (fewer than two numbers in its input: no expression to rank).
        A multiple-choice model's `choices` are those `logit_groups` built for the items, built again if not given."""
        numeric = self.task.get("type") == "numeric"
        if logits.shape[-1] == 0:
            return [{"label": None, "probs": {}, **({"answer": None} if numeric else {})} for _ in items]
        if self.family == "multiple-choice" and choices is None:
            choices = [self._choices_of(it) for it in items]
        if choices is None and logits.shape[-1] != len(self.labels):  # a model whose output width is not static
            raise _labels_mismatch(self.path / "manifest.json", len(self.labels), logits.shape[-1])
        out = []
        for i, p in enumerate(softmax(logits.astype(np.float64))):
            names = choices[i] if choices is not None else self.labels
            label = names[int(p.argmax())]
            out.append(
                {
                    "label": label,
                    "probs": {n: float(x) for n, x in zip(names, p)},
                    **({"answer": value_of(label)} if numeric else {}),
                }
            )
        return out

    def generate(self, items, max_new_tokens: int | None = None) -> list[str]:
        """Greedy decoding over the exported decoder, reusing past keys/values after the first step."""
        feeds = self.encode(items)
        mask = feeds["attention_mask"]
        hidden = self.sessions["encoder"].run(None, feeds)[0]
        batch = hidden.shape[0]
        eos = int(self.manifest["eos_token_id"])
        tokens = np.full((batch, 1), self.manifest["decoder_start_token_id"], dtype=np.int64)
        session = self.sessions["decoder"]
        outs = session.run(None, {"input_ids": tokens, "encoder_hidden_states": hidden, "encoder_attention_mask": mask})
        generated = np.zeros((batch, 0), dtype=np.int64)
        done = np.zeros(batch, dtype=bool)
        with_past = self.sessions.get("decoder_with_past")  # absent for bert2bert: re-read the answer so far
        past_inputs = (
            [i.name for i in with_past.get_inputs() if i.name.startswith("past_key_values")] if with_past else []
        )
        cross = {}
        for _ in range(max_new_tokens or int(self.manifest.get("max_answer_tokens", 32))):
            step = outs[0][:, -1].argmax(-1).astype(np.int64)
            step = np.where(done, self.pad_id, step)
            generated = np.concatenate([generated, step[:, None]], axis=1)
            done |= step == eos
            if done.all():
                break
            if with_past is None:
                tokens = np.concatenate([tokens, step[:, None]], axis=1)
                outs = session.run(
                    None, {"input_ids": tokens, "encoder_hidden_states": hidden, "encoder_attention_mask": mask}
                )
                continue
            present = dict(zip([o.name for o in session.get_outputs()][1:], outs[1:]))
            past = {}
            for name in past_inputs:
                src = name.replace("past_key_values", "present")
                if src in present:
                    past[name] = present[src]
                    if ".encoder." in name:
                        cross[name] = present[src]  # cross-attention keys are computed once
                else:
                    past[name] = cross[name]
            session = with_past
            outs = session.run(None, {"input_ids": step[:, None], "encoder_attention_mask": mask, **past})
        texts = [
            self.tokenizer.decode([int(t) for t in row if t not in (eos, self.pad_id)], skip_special_tokens=True)
            for row in generated
        ]
        return [tidy(t).strip() for t in texts]  # a WordPiece decode splits decimals ("84. 0")


FEED_NAMES = ("input_ids", "attention_mask", "token_type_ids")  # the inputs _encode_texts builds


def _sessions(path: Path, manifest: dict, threads, providers) -> dict:
    """role -> onnxruntime session of each model the runtime runs."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    providers = providers or ["CPUExecutionProvider"]
    sessions = {}
    for role, name in runtime_models(manifest).items():
        try:
            sessions[role] = ort.InferenceSession(str(path / name), opts, providers=providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidProtobuf types
            raise BundleError(
                f"{path / name}: onnxruntime cannot load the model ({str(e)[:200]}); re-export the bundle"
            ) from None
    return sessions


def _cascade_model(path: Path, manifest: dict, threads, verify, providers) -> EdgeModel:
    """The static tier of a cascade bundle: its own bundle in CASCADE_DIR, its manifest the one the top one seals."""
    inner = bundle_file(path, f"{CASCADE_DIR}/manifest.json")
    if verify and sha256_file(inner) != manifest["cascade"]["manifest_sha256"]:
        raise BundleError(
            f"{inner}: sha256 mismatch with cascade.manifest_sha256; re-export the bundle. {INTEGRITY_NOTE}"
        )
    # One thread: a gather, a mean and a linear layer gain nothing from more, and a second session's intra-op pool
    # spinning beside the transformer's slowed each cascade call to about twice the two models' sum (e-SNLI student,
    # 2 threads: 6.5 ms per input against 3.9 + 0.25 ms)
    static = EdgeModel._load_dir(path / CASCADE_DIR, 1, verify, providers)
    if static.labels != manifest.get("labels") or static.family != "sequence-classification":
        raise BundleError(f"{inner}: the static tier's labels {static.labels} differ from the bundle's; re-export")
    return static


def _tokenizer(path: Path, manifest: dict) -> Tokenizer:
    f = path / manifest["tokenizer"]["file"]
    try:
        return Tokenizer.from_file(str(f))
    except Exception as e:  # noqa: BLE001 - tokenizers raises a bare Exception
        raise BundleError(f"{f}: tokenizers cannot read it ({str(e)[:200]}); re-export the bundle") from None


def _check_fit(path: Path, manifest: dict, sessions: dict, tokenizer: Tokenizer) -> None:
    """The manifest fits the models and the tokenizer it names: token ids in the vocabulary, the model's inputs ones
    the runtime feeds, and (classification) a label per output when the model's output width is static; a dynamic
    width is checked at each prediction (answers)."""
    where = path / "manifest.json"
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    ids = {
        "tokenizer.pad_token_id": manifest["tokenizer"]["pad_token_id"],
        **(
            {k: manifest[k] for k in ("decoder_start_token_id", "eos_token_id")}
            if manifest["family"] == "seq2seq"
            else {}
        ),
    }
    for key, value in ids.items():
        if value >= vocab:
            raise BundleError(f"{where}: `{key}` is {value}, outside the tokenizer's {vocab} ids; re-export the bundle")
    role = "encoder" if manifest["family"] == "seq2seq" else "model"
    unknown = [i.name for i in sessions[role].get_inputs() if i.name not in FEED_NAMES]
    if unknown:
        raise BundleError(
            f"{path / manifest['models'][role]}: the model takes inputs {unknown} that the runtime cannot "
            f"feed (it feeds {', '.join(FEED_NAMES)}); re-export the bundle"
        )
    if manifest["family"] == "sequence-classification":
        width = sessions["model"].get_outputs()[0].shape[-1]
        if isinstance(width, int) and width != len(manifest["labels"]):
            raise _labels_mismatch(where, len(manifest["labels"]), width)


def _unzip(path: Path) -> tuple[Path, Path]:
    """(temp dir the zip was unpacked into, the bundle dir inside it). Its members are checked from the zip's
    headers first (count, total size, compression ratio, names inside the target, no symlinks), and their sizes
    again while they are written."""
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise BundleError(
            f"{path}: cannot unpack the zipped bundle ({e}); re-copy it or re-export with --zip"
        ) from None
    with z:
        members = z.infolist()
        _check_zip_headers(path, members)
        dest = Path(tempfile.mkdtemp(prefix=UNZIP_PREFIX))
        try:
            _extract(path, z, members, dest)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    inner = [p for p in dest.iterdir() if p.is_dir()]
    return dest, inner[0] if len(inner) == 1 and not (dest / "manifest.json").exists() else dest


def _check_zip_headers(path: Path, members: list[zipfile.ZipInfo]) -> None:
    """What the zip's headers say is within the limits a bundle needs: MAX_ZIP_MEMBERS, MAX_UNZIPPED_BYTES,
    MAX_ZIP_RATIO, member names that stay inside the folder it is unpacked into, no symlinks."""
    fix = "re-copy the bundle or re-export it with --zip"
    if len(members) > MAX_ZIP_MEMBERS:
        raise BundleError(f"{path}: {len(members)} members, more than a bundle has ({MAX_ZIP_MEMBERS}); {fix}")
    total = sum(m.file_size for m in members)
    if total > MAX_UNZIPPED_BYTES:
        raise BundleError(f"{path}: its members uncompress to {total} bytes, more than {MAX_UNZIPPED_BYTES}; {fix}")
    for m in members:
        if not relative_name(m.filename.removesuffix("/") if m.is_dir() else m.filename):
            raise BundleError(
                f"{path}: member {m.filename!r} would be written outside the folder the bundle is "
                f"unpacked into (an absolute path, '..' or an empty part); {fix}"
            )
        if stat.S_ISLNK(m.external_attr >> 16):
            raise BundleError(f"{path}: member {m.filename!r} is a symlink; a bundle holds plain files; {fix}")
        if m.file_size > ZIP_RATIO_FROM and m.file_size > MAX_ZIP_RATIO * max(m.compress_size, 1):
            raise BundleError(
                f"{path}: member {m.filename!r} uncompresses to {m.file_size} bytes from "
                f"{m.compress_size}, more than {MAX_ZIP_RATIO}x: not a file an export writes; {fix}"
            )


def _extract(path: Path, z: zipfile.ZipFile, members: list[zipfile.ZipInfo], dest: Path) -> None:
    """Write the members under dest, none past the size its header declares (zipfile also stops reading a member
    there and fails its CRC check; counting here does not depend on that)."""
    for m in members:
        target = dest / m.filename
        try:
            if m.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with z.open(m) as src, open(target, "xb") as out:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > m.file_size:
                        raise BundleError(
                            f"{path}: member {m.filename!r} inflates past the {m.file_size} bytes its "
                            "header declares; re-copy the bundle or re-export it with --zip"
                        )
                    out.write(chunk)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, RuntimeError) as e:
            raise BundleError(
                f"{path}: cannot unpack member {m.filename!r} ({e}); re-copy the bundle or re-export it with --zip"
            ) from None
