"""Run an edgedistill bundle with onnxruntime, tokenizers and numpy only: no torch, no transformers.

    from edgedistill.runtime import EdgeModel      # or, inside a bundle: from edge_runtime import EdgeModel
    model = EdgeModel.load("runs/x/bundle")
    model.predict([{"text": "my card was charged twice"}])
    # -> [{"label": "billing", "probs": {"billing": 0.93, ...}}]
"""

from __future__ import annotations

import hashlib
import json
import shutil
import string
import tempfile
import weakref
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from .arith import tidy
from .expressions import choices_for, value_of

# 2: `models` may list app-only roles (APP_ROLES), which runtimes before it would try to load; a bundle
# without them is still written as 1, so those runtimes keep reading it.
FORMAT_VERSION = 2
UNZIP_PREFIX = "edgedistill-bundle-"  # temp dirs a zipped bundle is unpacked into (removed on close)
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


def read_manifest(path: Path) -> dict:
    """The bundle's manifest.json, checked for a format this runtime understands."""
    manifest_path = Path(path) / "manifest.json"
    if not manifest_path.exists():
        raise BundleError(f"{path}: no manifest.json; is this a bundle made by `edgedistill export`?")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BundleError(f"{manifest_path}: corrupt manifest ({e.msg}); re-export the bundle") from None
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BundleError(f"{manifest_path}: bundle format {version!r} is newer than this runtime understands "
                          f"({FORMAT_VERSION}); upgrade edgedistill (pip install -U edgedistill) or re-export with this version")
    return manifest


def runtime_models(manifest: dict) -> dict[str, str]:
    """role -> file of the models this runtime runs: the manifest's models but the app-only ones (APP_ROLES)."""
    return {role: name for role, name in manifest.get("models", {}).items() if role not in APP_ROLES}


def loaded_files(manifest: dict) -> list[str]:
    """The files `EdgeModel.load` reads: the ONNX models and the tokenizer (not the ort/ copies, docs or code)."""
    return list(runtime_models(manifest).values()) + [(manifest.get("tokenizer") or {}).get("file") or "tokenizer.json"]


def verify_files(path: Path, manifest: dict, names, hash_them: bool = True) -> None:
    """Each of `names` is present and, with hash_them, has the sha256 the manifest lists."""
    listed = manifest.get("files", {})
    for name in names:
        f = path / name
        if not f.exists():
            raise BundleError(f"{f}: missing bundle file listed in the manifest; copy the whole bundle directory")
        if hash_them and name in listed and sha256_file(f) != listed[name]["sha256"]:
            raise BundleError(f"{f}: sha256 mismatch: the file is corrupt or was changed after export; re-copy or re-export the bundle")


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
        self.max_length = int(manifest["max_length"])
        self.labels = manifest.get("labels")
        self.pad_id = int(manifest["tokenizer"]["pad_token_id"])
        main = sessions["encoder" if self.family == "seq2seq" else "model"]
        self.input_names = [i.name for i in main.get_inputs()]
        self._fields = [n for _, n, _, _ in string.Formatter().parse(self.task["input"]) if n]
        self._cleanup = None  # removes the unzipped copy of a zipped bundle (see close)
        self.batch_size = answer_batch_size(manifest)

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, path, threads: int | None = None, verify: bool = True, providers=None) -> "EdgeModel":
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
    def _load_dir(cls, path: Path, threads, verify, providers) -> "EdgeModel":
        manifest = read_manifest(path)
        verify_files(path, manifest, loaded_files(manifest), hash_them=verify)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        providers = providers or ["CPUExecutionProvider"]
        try:
            sessions = {role: ort.InferenceSession(str(path / name), opts, providers=providers)
                        for role, name in runtime_models(manifest).items()}
        except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise BundleError(f"{path}: onnxruntime cannot load the model ({str(e)[:200]}); re-export the bundle") from None
        tokenizer = Tokenizer.from_file(str(path / manifest["tokenizer"]["file"]))
        return cls(path, manifest, sessions, tokenizer)

    def close(self) -> None:
        """Remove the unzipped copy of a zipped bundle now (a directory bundle is left as it is)."""
        if self._cleanup is not None:
            self._cleanup()

    def __enter__(self) -> "EdgeModel":
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
            raise BundleError(f"input is missing the field {missing[0]!r}; the task renders {self.task['input']!r} "
                              f"from the fields {self._fields}, or pass the rendered text as a string")
        return self.task["input"].format(**{f: item[f] for f in self._fields})

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
            return self.sessions["decoder"].run(None, {"input_ids": start, "encoder_hidden_states": hidden,
                                                       "encoder_attention_mask": feeds["attention_mask"]})[0][:, -1]
        return self.sessions["model"].run(None, feeds)[0]

    def predict(self, items, batch_size: int | None = None) -> list[dict]:
        """[{label, probs}] (seq2seq: [{answer}]), batch_size items per call; default `self.batch_size`."""
        items = list(items)
        batch_size = batch_size or self.batch_size
        out = []
        for i in range(0, len(items), batch_size):
            batch = items[i:i + batch_size]
            if self.family == "seq2seq":
                out += [{"answer": a} for a in self.generate(batch)]
                continue
            for group, choices, logits in self.logit_groups(batch):
                out += self.answers(group, logits, choices)
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
            return [([it], [c], self.run(self.encode([it], choices=[c])) if c else np.zeros((1, 0), np.float32))
                    for it, c in zip(batch, choices)]
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
        out = []
        for i, p in enumerate(softmax(logits.astype(np.float64))):
            names = choices[i] if choices is not None else self.labels
            label = names[int(p.argmax())]
            out.append({"label": label, "probs": {n: float(x) for n, x in zip(names, p)}, **({"answer": value_of(label)} if numeric else {})})
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
        past_inputs = [i.name for i in with_past.get_inputs() if i.name.startswith("past_key_values")] if with_past else []
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
                outs = session.run(None, {"input_ids": tokens, "encoder_hidden_states": hidden, "encoder_attention_mask": mask})
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
        texts = [self.tokenizer.decode([int(t) for t in row if t not in (eos, self.pad_id)], skip_special_tokens=True)
                 for row in generated]
        return [tidy(t).strip() for t in texts]  # a WordPiece decode splits decimals ("84. 0")


def _unzip(path: Path) -> tuple[Path, Path]:
    """(temp dir the zip was unpacked into, the bundle dir inside it)."""
    dest = Path(tempfile.mkdtemp(prefix=UNZIP_PREFIX))
    try:
        with zipfile.ZipFile(path) as z:
            z.extractall(dest)
    except (zipfile.BadZipFile, OSError) as e:
        shutil.rmtree(dest, ignore_errors=True)
        raise BundleError(f"{path}: cannot unpack the zipped bundle ({e}); re-copy it or re-export with --zip") from None
    inner = [p for p in dest.iterdir() if p.is_dir()]
    return dest, inner[0] if len(inner) == 1 and not (dest / "manifest.json").exists() else dest
