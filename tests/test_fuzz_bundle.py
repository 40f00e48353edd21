"""Tampered bundles: each one a copy of a bundle exported once here, changed as a careless or hostile hand would
change it (paths out of the bundle, files the manifest does not hash, wrong types, missing keys, labels that do
not fit the model, bad JSON, zip bombs and zip members that escape). Each must end in a BundleError that names
the key or file at fault, within a timeout: never a traceback, a silent load or a hang. A few of the same cases
run through `edgedistill predict`, export/run_bundle.py and the JS runtime (Node), which must exit non-zero with
the key named and no traceback.

A failure says which of traceback / silent / hang / vague (a BundleError that does not name the key) it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tiny

from edgedistill.deploy.bundle import finish, zip_bundle
from edgedistill.deploy.export import ExportConfig, export_bundle
from edgedistill.edge import runtime as runtime_core
from edgedistill.edge.runtime import INTEGRITY_NOTE, MAX_TOKEN_ID, MAX_TOKENS
from edgedistill.runtime import BundleError, EdgeModel

ROOT = Path(__file__).resolve().parents[1]
JS = ROOT / "export" / "js"
TIMEOUT_S = 60  # per case; a load and one prediction of the tiny bundle take well under a second
ITEM = {"premise": "a dog sat on my house", "hypothesis": "a cat is happy"}
WORDS = [
    "the",
    "dog",
    "is",
    "happy",
    "a",
    "cat",
    "sat",
    "on",
    "my",
    "house",
    "man",
    "woman",
    "running",
    "park",
    "red",
    "blue",
    "big",
    "small",
]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A tiny FP32 classification bundle (3 labels), exported once for every case of this module."""
    d = tmp_path_factory.mktemp("fuzz")
    cls = tiny.tiny_classifier_dir(d / "cls")
    (cls / "task.yaml").write_text(
        'name: nli\ntype: classification\ninput: "Premise: {premise}\\nHypothesis: '
        '{hypothesis}"\nlabels: [entailment, neutral, contradiction]\n'
    )
    with open(d / "nli.jsonl", "w") as f:
        f.writelines(
            json.dumps({"premise": " ".join(WORDS[i % 7 : i % 7 + 5]), "hypothesis": " ".join(WORDS[i % 5 :: 3])})
            + "\n"
            for i in range(20)
        )
    cfg = ExportConfig(
        model=str(cls), out=str(d / "bundle"), parity_data=str(d / "nli.jsonl"), parity_samples=20, quantize="none"
    )
    export_bundle(cfg, echo=lambda *_: None)
    return d / "bundle"


# ---------------------------------------------------------------------------------------------------- tampering


def manifest_of(b: Path) -> dict:
    return json.loads((b / "manifest.json").read_text(encoding="utf-8"))


def write_manifest(b: Path, m) -> None:
    (b / "manifest.json").write_text(json.dumps(m), encoding="utf-8")


def setting(*keys, value):
    """A tamper that sets manifest[k1][k2]... to value."""

    def tamper(b: Path, out: Path) -> Path:
        m = manifest_of(b)
        node = m
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
        write_manifest(b, m)
        return b

    return tamper


def dropping(*keys):
    """A tamper that deletes manifest[k1][k2]..."""

    def tamper(b: Path, out: Path) -> Path:
        m = manifest_of(b)
        node = m
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]
        write_manifest(b, m)
        return b

    return tamper


def raw_manifest(data: bytes):
    def tamper(b: Path, out: Path) -> Path:
        (b / "manifest.json").write_bytes(data)
        return b

    return tamper


def outside_copy(name: str, key: tuple, absolute: bool):
    """The manifest's key points at a copy of `name` outside the bundle, by `../` or by absolute path."""

    def tamper(b: Path, out: Path) -> Path:
        shutil.copyfile(b / name, out / name)
        target = str((out / name).resolve()) if absolute else os.path.relpath(out / name, b)
        return setting(*key, value=target)(b, out)

    return tamper


def symlinked_out(name: str):
    """BUNDLE/name becomes a symlink to an identical copy outside the bundle: its hash still matches."""

    def tamper(b: Path, out: Path) -> Path:
        shutil.copyfile(b / name, out / name)
        (b / name).unlink()
        (b / name).symlink_to(out / name)
        return b

    return tamper


def unlisted_copy(name: str, key: tuple, new: str):
    """A copy of `name` inside the bundle, which `files` does not list, loaded through `key`."""

    def tamper(b: Path, out: Path) -> Path:
        shutil.copyfile(b / name, b / new)
        return setting(*key, value=new)(b, out)

    return tamper


def rehashed(name: str, data: bytes):
    """`name` replaced by data, and its hash in the manifest updated to match (as anyone can)."""

    def tamper(b: Path, out: Path) -> Path:
        import hashlib

        (b / name).write_bytes(data)
        m = manifest_of(b)
        m["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        write_manifest(b, m)
        return b

    return tamper


def huge_number(b: Path, out: Path) -> Path:
    """max_length written as a 5,000-digit integer (past Python's int digits limit)."""
    text = (b / "manifest.json").read_text(encoding="utf-8")
    (b / "manifest.json").write_text(re.sub(r'"max_length": \d+', '"max_length": 1' + "0" * 5000, text))
    return b


def manifest_symlinked_out(b: Path, out: Path) -> Path:
    shutil.move(b / "manifest.json", out / "manifest.json")
    (b / "manifest.json").symlink_to(out / "manifest.json")
    return b


def zipped_with(add: Callable[[zipfile.ZipFile, str], None]):
    """The bundle zipped (as `export --zip`), then `add(zip, top folder)` appends members to it."""

    def tamper(b: Path, out: Path) -> Path:
        z = zip_bundle(b)
        with zipfile.ZipFile(z, "a") as f:
            add(f, b.name)
        return z

    return tamper


def member(name: str, data: bytes = b"x", mode: int | None = None):
    def add(f: zipfile.ZipFile, top: str) -> None:
        info = zipfile.ZipInfo(name.replace("{top}", top))
        info.compress_type = zipfile.ZIP_DEFLATED
        if mode is not None:
            info.external_attr = mode << 16
        f.writestr(info, data)

    return add


def many_members(n: int):
    def add(f: zipfile.ZipFile, top: str) -> None:
        for i in range(n):
            f.writestr(f"{top}/pad/{i}", b"")

    return add


def lying_sizes(b: Path, out: Path) -> Path:
    """A zip member that inflates to 8 MiB while its headers say 10 bytes."""
    z = zip_bundle(b)
    with zipfile.ZipFile(z, "a", zipfile.ZIP_DEFLATED) as f:
        f.writestr(f"{b.name}/liar.bin", b"\0" * (8 << 20))
    name = f"{b.name}/liar.bin"
    with zipfile.ZipFile(z) as f:
        info, central_dir = f.getinfo(name), f.start_dir
    data = bytearray(z.read_bytes())
    struct.pack_into("<I", data, info.header_offset + 22, 10)  # local file header: uncompressed size
    central = data.index(name.encode(), central_dir) - 46  # its central directory record
    assert data[central : central + 4] == b"PK\x01\x02"
    struct.pack_into("<I", data, central + 24, 10)  # central directory: uncompressed size
    z.write_bytes(bytes(data))
    return z


@dataclass(frozen=True)
class Case:
    id: str
    tamper: Callable[[Path, Path], Path]  # (bundle copy, a folder outside it) -> what to load
    names: str  # a regex the error must match: the key or file at fault


CASES = [
    # every file the runtime loads lies inside the bundle
    Case("model-dotdot", outside_copy("model.onnx", ("models", "model"), absolute=False), r"models\.model"),
    Case("model-absolute", outside_copy("model.onnx", ("models", "model"), absolute=True), r"models\.model"),
    Case("model-symlink-out", symlinked_out("model.onnx"), r"model\.onnx.*outside"),
    Case("tokenizer-dotdot", outside_copy("tokenizer.json", ("tokenizer", "file"), absolute=False), r"tokenizer\.file"),
    Case(
        "tokenizer-absolute", outside_copy("tokenizer.json", ("tokenizer", "file"), absolute=True), r"tokenizer\.file"
    ),
    Case("tokenizer-symlink-out", symlinked_out("tokenizer.json"), r"tokenizer\.json.*outside"),
    Case("model-dotdot-inside", setting("models", "model", value="edge/../model.onnx"), r"models\.model"),
    Case("model-backslash", setting("models", "model", value="ort\\..\\model.onnx"), r"models\.model"),
    Case("model-nul", setting("models", "model", value="model.onnx\u0000.txt"), r"models\.model"),
    Case("model-empty-name", setting("models", "model", value=""), r"models\.model"),
    Case("model-is-a-folder", setting("models", "model", value="edge"), r"edge"),
    Case("manifest-symlink-out", manifest_symlinked_out, r"manifest\.json.*outside"),
    # ... and is listed in `files` and hashed
    Case("model-unlisted", unlisted_copy("model.onnx", ("models", "model"), "other.onnx"), r"other\.onnx.*files"),
    Case(
        "tokenizer-unlisted", unlisted_copy("tokenizer.json", ("tokenizer", "file"), "tok2.json"), r"tok2\.json.*files"
    ),
    Case("model-hash-dropped", dropping("files", "model.onnx"), r"model\.onnx.*files"),
    Case("model-sha-missing", dropping("files", "model.onnx", "sha256"), r'files\["model\.onnx"\]\.sha256'),
    Case("model-sha-not-text", setting("files", "model.onnx", "sha256", value=123), r'files\["model\.onnx"\]\.sha256'),
    Case("model-sha-wrong", setting("files", "model.onnx", "sha256", value="0" * 64), r"model\.onnx: sha256 mismatch"),
    Case("files-a-list", setting("files", value=["model.onnx"]), r"files"),
    Case("tokenizer-not-json-rehashed", rehashed("tokenizer.json", b"\xff not a tokenizer"), r"tokenizer\.json"),
    Case("model-garbage-rehashed", rehashed("model.onnx", b"not onnx"), r"model\.onnx|onnxruntime cannot load"),
    # required keys and their types
    Case("models-missing", dropping("models"), r"models"),
    Case("models-a-string", setting("models", value="model.onnx"), r"models"),
    Case("models-empty", setting("models", value={}), r"models\.model"),
    Case("model-role-unknown", setting("models", "extra", value="model.onnx"), r"models\.extra"),
    Case("model-name-a-number", setting("models", "model", value=5), r"models\.model"),
    Case("tokenizer-missing", dropping("tokenizer"), r"tokenizer"),
    Case("tokenizer-a-string", setting("tokenizer", value="tokenizer.json"), r"tokenizer"),
    Case("tokenizer-file-missing", dropping("tokenizer", "file"), r"tokenizer\.file"),
    Case("pad-id-missing", dropping("tokenizer", "pad_token_id"), r"tokenizer\.pad_token_id"),
    Case("pad-id-text", setting("tokenizer", "pad_token_id", value="0"), r"tokenizer\.pad_token_id"),
    Case("family-missing", dropping("family"), r"family"),
    Case("family-unknown", setting("family", value="regression"), r"family"),
    Case("task-missing", dropping("task"), r"task"),
    Case("task-input-a-number", setting("task", "input", value=7), r"task\.input"),
    Case("task-input-format-spec", setting("task", "input", value="{premise:>3000000} {hypothesis}"), r"task\.input"),
    Case("task-input-attribute", setting("task", "input", value="{premise.__class__} {hypothesis}"), r"task\.input"),
    Case("task-input-unbalanced", setting("task", "input", value="{premise"), r"task\.input"),
    Case("max-length-lots", setting("max_length", value="lots"), r"max_length"),
    Case("max-length-zero", setting("max_length", value=0), r"max_length"),
    Case("max-length-float", setting("max_length", value=1.5), r"max_length"),
    Case("max-length-bool", setting("max_length", value=True), r"max_length"),
    Case("max-length-huge", setting("max_length", value=10**30), r"max_length"),
    Case("format-missing", dropping("format_version"), r"format_version"),
    Case("format-text", setting("format_version", value="1"), r"format_version"),
    Case("format-zero", setting("format_version", value=0), r"format_version"),
    Case("quantization-a-list", setting("quantization", value=[]), r"quantization"),
    # labels fit the model's outputs (3 here)
    Case("labels-too-few", setting("labels", value=["entailment", "neutral"]), r"labels.*3"),
    Case("labels-too-many", setting("labels", value=["a", "b", "c", "d"]), r"labels.*3"),
    Case("labels-missing", dropping("labels"), r"labels"),
    Case("labels-a-string", setting("labels", value="entailment"), r"labels"),
    Case("labels-repeated", setting("labels", value=["yes", "yes", "no"]), r"labels"),
    Case("labels-numbers", setting("labels", value=[1, 2, 3]), r"labels"),
    # the manifest file itself
    Case("manifest-a-list", raw_manifest(b"[1, 2, 3]"), r"manifest\.json.*object"),
    Case("manifest-a-string", raw_manifest(b'"bundle"'), r"manifest\.json.*object"),
    Case("manifest-not-utf8", raw_manifest(b'{"family": "\xff\xfe"}'), r"manifest\.json.*UTF-8"),
    Case("manifest-empty", raw_manifest(b""), r"manifest\.json"),
    Case("manifest-deep", raw_manifest(b"[" * 100_000 + b"]" * 100_000), r"manifest\.json"),
    Case("manifest-5000-digits", huge_number, r"manifest\.json.*(digits|max_length)"),
    Case("manifest-nan", raw_manifest(b'{"format_version": NaN}'), r"manifest\.json|format_version"),
    # zipped bundles
    Case("zip-member-dotdot", zipped_with(member("{top}/../../escaped.txt")), r"escaped\.txt"),
    Case("zip-member-absolute", zipped_with(member("/tmp/edgedistill-fuzz-absolute.txt")), r"absolute\.txt"),
    Case("zip-member-symlink", zipped_with(member("{top}/link", b"/etc/passwd", mode=0o120777)), r"link.*symlink"),
    Case("zip-bomb", zipped_with(member("{top}/zeros.bin", b"\0" * (64 << 20))), r"uncompress"),
    Case("zip-too-many-members", zipped_with(many_members(20_001)), r"members"),
    Case("zip-lying-sizes", lying_sizes, r"liar\.bin"),
]


# ---------------------------------------------------------------------------------------------------- outcomes


class Hang(Exception):
    pass


@contextmanager
def deadline(seconds: int):
    def fire(*_):
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def outcome(target: Path, names: str) -> tuple[str, str]:
    """(clear | vague | traceback | silent | hang, what happened) of loading target and predicting one item."""
    try:
        with deadline(TIMEOUT_S), EdgeModel.load(target) as model:
            got = model.predict([ITEM])
    except Hang as e:
        return "hang", str(e)
    except BundleError as e:
        return ("clear" if re.search(names, str(e), re.DOTALL) else "vague"), str(e)
    except Exception as e:  # noqa: BLE001 - what the suite counts
        return "traceback", f"{type(e).__name__}: {str(e)[:300]}"
    return "silent", f"loaded and predicted {got}"


def tampered(bundle: Path, tmp_path: Path, case: Case) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir(parents=True)
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy, symlinks=True)
    return case.tamper(copy, outside)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_tampered_bundle_is_refused_clearly(bundle, tmp_path, case):
    target = tampered(bundle, tmp_path, case)
    kind, detail = outcome(target, case.names)
    assert kind == "clear", f"{kind}: {detail}"
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/edgedistill-fuzz-absolute.txt").exists()


def test_the_untampered_bundle_loads(bundle, tmp_path):
    """The cases above are refusals of their tampering, not of the bundle."""
    kind, detail = outcome(tampered(bundle, tmp_path, Case("none", lambda b, out: b, "")), "")
    assert kind == "silent", detail
    kind, detail = outcome(tampered(bundle, tmp_path / "z", Case("zip", lambda b, out: zip_bundle(b), "")), "")
    assert kind == "silent", detail


def test_labels_are_checked_at_predict_when_the_output_width_is_not_static(bundle):
    """The tiny model's output width is static (3), checked at load; a model whose width is dynamic is checked at
    each prediction, on the logits themselves."""
    model = EdgeModel.load(bundle)
    with pytest.raises(BundleError, match="`labels` lists 3 labels but the model outputs 5 scores"):
        model.answers([ITEM], np.zeros((1, 5), np.float32))


def test_zipped_bundle_over_the_size_cap_is_refused_before_unpacking(bundle, tmp_path, monkeypatch):
    z = zip_bundle(shutil.copytree(bundle, tmp_path / "b"))
    monkeypatch.setattr(runtime_core, "MAX_UNZIPPED_BYTES", 100_000)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    with pytest.raises(BundleError, match=r"members uncompress to \d+ bytes, more than 100000"):
        EdgeModel.load(z)
    assert list((tmp_path / "scratch").iterdir()) == []  # refused from the headers: nothing written


def test_the_writer_refuses_a_manifest_the_runtime_would_refuse(bundle, tmp_path):
    b = shutil.copytree(bundle, tmp_path / "b")
    m = manifest_of(b)
    (b / "manifest.json").unlink()
    m["models"]["model"] = "../model.onnx"
    with pytest.raises(BundleError, match=r"as written by this export.*`models\.model` must be a file name inside"):
        finish(b, m)
    assert not (b / "manifest.json").exists()


def test_readme_says_the_hashes_prove_integrity_not_origin(bundle):
    readme = " ".join((bundle / "README.md").read_text(encoding="utf-8").split())
    assert "## Integrity, not origin" in (bundle / "README.md").read_text(encoding="utf-8")
    assert INTEGRITY_NOTE in readme


# ---------------------------------------------------------------------------------------------------- command lines

COMMAND_CASES = [
    c
    for c in CASES
    if c.id in ("model-dotdot", "manifest-a-list", "max-length-lots", "tokenizer-missing", "labels-too-few", "zip-bomb")
]


def command_outcome(cmd: list[str], names: str, **kw) -> tuple[str, str]:
    """(clear | vague | traceback | silent | hang, what it said) of a command that should refuse a bundle."""
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=TIMEOUT_S, **kw)
    except subprocess.TimeoutExpired:
        return "hang", f"no exit within {TIMEOUT_S} s"
    said = proc.stdout + proc.stderr
    if proc.returncode == 0:
        return "silent", f"exit 0: {said[-300:]}"
    if "Traceback" in said:
        return "traceback", said[-1500:]
    return ("clear" if re.search(names, said, re.DOTALL) else "vague"), said[-500:]


@pytest.mark.parametrize("case", COMMAND_CASES, ids=[c.id for c in COMMAND_CASES])
def test_predict_command_refuses_clearly(bundle, tmp_path, case):
    target = tampered(bundle, tmp_path, case)
    kind, said = command_outcome(
        [sys.executable, "-m", "edgedistill.cli", "predict", str(target), "--text", "a dog"], case.names
    )
    assert kind == "clear", f"{kind}: {said}"


@pytest.mark.parametrize("case", COMMAND_CASES[:3], ids=[c.id for c in COMMAND_CASES[:3]])
def test_run_bundle_refuses_clearly(bundle, tmp_path, case):
    target = tampered(bundle, tmp_path, case)
    kind, said = command_outcome(
        [sys.executable, str(ROOT / "export" / "run_bundle.py"), str(target), "--text", "a dog"], case.names
    )
    assert kind == "clear", f"{kind}: {said}"


# ---------------------------------------------------------------------------------------------------- JavaScript

JS_LOAD = """
import { BundleError, EdgeModel } from %s;
try {
  const model = await EdgeModel.load(process.argv[1]);
  console.log(JSON.stringify(await model.predict([JSON.parse(process.argv[2])])));
} catch (e) {
  process.stderr.write(e instanceof BundleError ? `error: ${e.message}\\n` : `Traceback (JS): ${e.stack ?? e}\\n`);
  process.exit(e instanceof BundleError ? 2 : 1);
}
"""
JS_CASES = [
    c
    for c in CASES
    if c.id
    in (
        "model-dotdot",
        "model-absolute",
        "model-symlink-out",
        "tokenizer-dotdot",
        "tokenizer-symlink-out",
        "model-unlisted",
        "model-hash-dropped",
        "labels-too-few",
        "labels-too-many",
        "manifest-a-list",
        "manifest-not-utf8",
        "max-length-lots",
        "tokenizer-missing",
        "pad-id-text",
        "task-input-format-spec",
        "model-role-unknown",
        "manifest-5000-digits",
        "manifest-deep",
    )
]


@pytest.fixture(scope="module")
def node():
    if not shutil.which("node"):
        pytest.skip("node not installed (apt-get install nodejs, or see .ci/run)")
    if not (JS / "node_modules" / "onnxruntime-node").is_dir():
        pytest.skip("export/js/node_modules missing: run `npm ci` in export/js")
    return shutil.which("node")


@pytest.mark.parametrize("case", JS_CASES, ids=[c.id for c in JS_CASES])
def test_js_runtime_refuses_clearly(node, bundle, tmp_path, case):
    target = tampered(bundle, tmp_path, case)
    script = JS_LOAD % json.dumps((JS / "edgedistill.mjs").as_uri())
    kind, said = command_outcome(
        [node, "--input-type=module", "-e", script, str(target), json.dumps(ITEM)], case.names, cwd=JS
    )
    assert kind == "clear", f"{kind}: {said}"


JS_CHECKS = """
import { EdgeModel, INTEGRITY_NOTE, MANIFEST_LIMITS } from %s;
const model = await EdgeModel.load(process.argv[1]);
const label = (await model.predict([JSON.parse(process.argv[2])]))[0].label;
let atPredict = null;
try {
  model.answer(JSON.parse(process.argv[2]), [0, 0, 0, 0, 0]);
} catch (e) {
  atPredict = e.message;
}
console.log(JSON.stringify({ label, atPredict, INTEGRITY_NOTE, MANIFEST_LIMITS }));
"""


def test_js_loads_the_untampered_bundle_with_python_s_rules(node, bundle):
    """The JS refusals above are of the tampering; its limits and integrity note are Python's; labels are checked
    against the logits at predict too."""
    script = JS_CHECKS % json.dumps((JS / "edgedistill.mjs").as_uri())
    proc = subprocess.run(
        [node, "--input-type=module", "-e", script, str(bundle), json.dumps(ITEM)],
        cwd=JS,
        check=False,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["label"] in ("entailment", "neutral", "contradiction")
    assert "`labels` lists 3 labels but the model outputs 5 scores" in got["atPredict"]
    assert got["INTEGRITY_NOTE"] == INTEGRITY_NOTE
    assert got["MANIFEST_LIMITS"] == {
        "maxManifestBytes": runtime_core.MAX_MANIFEST_BYTES,
        "maxTokens": MAX_TOKENS,
        "maxTokenId": MAX_TOKEN_ID,
    }
