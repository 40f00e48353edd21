"""The bundle an app embeds: model files, tokenizer, runtime, manifest (with hashes) and a README.

The runtime is the torch-free core: the whole edgedistill/edge/ package is copied to BUNDLE/edge/, and
edgedistill/runtime.py (which imports it) to BUNDLE/edge_runtime.py, so `from edge_runtime import
EdgeModel`, `python BUNDLE/edge_runtime.py` and export/run_bundle.py work with the bundle alone.
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import onnx

from .. import __version__
from ..atomic import write_json, write_text
from ..edge.runtime import (
    APP_ROLES,
    APP_ROLES_FORMAT,
    CASCADE_FORMAT,
    INTEGRITY_NOTE,
    sha256_file,
    validate_manifest,
)
from ..edge.template import template_fields

CORE = Path(__file__).resolve().parents[1] / "edge"  # the torch-free core every bundle carries
ORT_CONVERTER = "onnxruntime.tools.convert_onnx_models_to_ort"


def io_spec(onnx_path: Path) -> dict:
    g = onnx.load(str(onnx_path), load_external_data=False).graph
    init = {i.name for i in g.initializer}

    def dims(t):
        return [d.dim_param or d.dim_value for d in t.type.tensor_type.shape.dim]

    elem = {1: "float32", 7: "int64", 6: "int32", 8: "string", 9: "bool", 10: "float16"}
    return {
        "inputs": [
            {"name": i.name, "dtype": elem.get(i.type.tensor_type.elem_type, "?"), "shape": dims(i)}
            for i in g.input
            if i.name not in init
        ],
        "outputs": [
            {"name": o.name, "dtype": elem.get(o.type.tensor_type.elem_type, "?"), "shape": dims(o)} for o in g.output
        ],
    }


def convert_to_ort(bundle: Path, models: dict[str, str], subdir: str = "ort", extra_args=()) -> dict[str, str]:
    """ORT-format copies (what ONNX Runtime Mobile loads) + required_operators.config for a reduced build,
    in BUNDLE/subdir; extra_args go to the converter (e.g. --custom_op_library for the text model)."""
    out = bundle / subdir
    out.mkdir(parents=True)
    for name in models.values():
        shutil.copyfile(bundle / name, out / name)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            ORT_CONVERTER,
            str(out),
            "--output_dir",
            str(out),
            "--optimization_style",
            "Fixed",
            *extra_args,
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    for name in models.values():
        (out / name).unlink()
    if proc.returncode != 0:
        shutil.rmtree(out)
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "conversion failed"}
    written = {role: f"{subdir}/{Path(name).with_suffix('.ort').name}" for role, name in models.items()}
    config = next(out.glob("*.config"), None)
    if config is not None:
        written["required_operators"] = f"{subdir}/{config.name}"
    for leftover in out.glob("*.onnx"):
        leftover.unlink()
    return written


def add_ort_models(bundle: Path, manifest: dict, echo=print) -> None:
    """The ORT-format copies, into manifest["ort_models"]; a failed conversion is a warning, printed and
    recorded in manifest["warnings"]: the bundle still works with onnxruntime, not with ORT Mobile."""
    manifest["ort_models"] = convert_to_ort(bundle, manifest["models"])
    if "error" in manifest["ort_models"]:
        warning = (
            f"ORT-format conversion failed ({manifest['ort_models']['error']}): the bundle has no ort/ files, so "
            "ONNX Runtime Mobile (Android/iOS) cannot load it; the .onnx models work with onnxruntime. "
            f"Re-run the export, or convert by hand: python -m {ORT_CONVERTER} BUNDLE"
        )
        manifest.setdefault("warnings", []).append(warning)
        echo(f"WARNING: {warning}")


def copy_core(bundle: Path) -> list[str]:
    """BUNDLE/edge/ (the torch-free core's modules) and BUNDLE/edge_runtime.py; the paths written."""
    (bundle / "edge").mkdir(exist_ok=True)
    written = []
    for p in sorted(CORE.glob("*.py")):
        shutil.copyfile(p, bundle / "edge" / p.name)
        written.append(f"edge/{p.name}")
    shutil.copyfile(Path(__file__).resolve().parents[1] / "runtime.py", bundle / "edge_runtime.py")
    return written + ["edge_runtime.py"]


def finish(bundle: Path, manifest: dict) -> dict:
    """Copy the runtime, hash every file, write manifest.json and README.md. Call last: the hashes seal the bundle.
    The manifest is checked by the rules every load applies (validate_manifest) before it is written."""
    manifest["runtime"] = {"python": copy_core(bundle), "import": "from edge_runtime import EdgeModel"}
    write_text(bundle / "README.md", readme(manifest))
    manifest["files"] = {
        str(p.relative_to(bundle)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(bundle.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    manifest["format_version"] = (
        CASCADE_FORMAT if "cascade" in manifest else APP_ROLES_FORMAT if set(manifest["models"]) & set(APP_ROLES) else 1
    )
    manifest["edgedistill_version"] = __version__
    manifest["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    validate_manifest(manifest, f"{bundle}/manifest.json (as written by this export)")
    write_json(bundle / "manifest.json", manifest)
    return manifest


def zip_bundle(bundle: Path) -> Path:
    dest = bundle.with_suffix(".zip")
    tmp = dest.with_name(f".{dest.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(bundle.rglob("*")):
            if p.is_file():
                z.write(p, Path(bundle.name) / p.relative_to(bundle))
    tmp.replace(dest)
    return dest


def readme(m: dict) -> str:
    task = m["task"]
    io = m["io"][next(iter(m["io"]))]
    inputs = "\n".join(f"| `{i['name']}` | {i['dtype']} | {i['shape']} |" for i in io["inputs"])
    outputs = "\n".join(f"| `{o['name']}` | {o['dtype']} | {o['shape']} |" for o in io["outputs"])
    labels = (
        ", ".join(m.get("labels") or []) or "(generated text)"
        if m["family"] != "multiple-choice"
        else "the chosen option"
    )
    if m["family"] == "multiple-choice" and task["type"] == "numeric":
        labels = (
            "the chosen expression, one operation on two numbers of the input (edge/expressions.py builds the options; "
            "its value is the answer; None for an input with fewer than two numbers)"
        )
    q = m["quantization"]
    return f"""# {task["name"]}: edgedistill bundle

A {m["family"]} model for the task `{task["name"]}` ({task["type"]}), exported by edgedistill {__version__}.
Quantization: {q.get("mode", "none")} ({q.get("preset", "-")}, tuned for {m["target"]["preset"]}).
Output: {labels}.

## Use it from Python (onnxruntime, tokenizers, numpy; no torch)

```python
from edge_runtime import EdgeModel          # the runtime ships inside this folder
model = EdgeModel.load("path/to/this/folder")
print(model.predict([{json.dumps({f: "..." for f in template_fields(task["input"])})}]))
```

Inputs are rendered with the template `{json.dumps(task["input"])}` and tokenized with `tokenizer.json`
(truncated to {m["max_length"]} tokens, padded with id {m["tokenizer"]["pad_token_id"]}).

## Model inputs and outputs (`{m["models"][next(iter(m["models"]))]}`)

| input | dtype | shape |
|---|---|---|
{inputs}

| output | dtype | shape |
|---|---|---|
{outputs}

{_ort_text(m)} See `export/ANDROID.md` and `export/IOS.md` in the
edgedistill repository.
{_text_model_text(m)}
## Integrity, not origin

`manifest.json` lists every file with its sha256, and the runtime checks the files it loads against it.
{textwrap.fill(INTEGRITY_NOTE, 110)}

`edge/` is the runtime's torch-free core (`edge_runtime.py` imports it); `python run_bundle.py
path/to/this/folder` (export/run_bundle.py of the edgedistill repository) times the bundle with it.
"""


def _ort_text(m: dict) -> str:
    if "error" in (m.get("ort_models") or {}):
        return (
            "**WARNING: no `.ort` files**: the ORT-format conversion failed at export "
            f"({m['ort_models']['error']}), so ONNX Runtime Mobile cannot load this bundle as it is."
        )
    return (
        "ONNX Runtime Mobile (Android / iOS) loads the `.ort` files under `ort/`; `ort/required_operators.config`\n"
        "lists the operators a reduced mobile build needs."
    )


def _text_model_text(m: dict) -> str:
    t = m.get("text_model")
    if not t:
        return ""
    return (
        f"\n## Text in, probabilities out (`{t['file']}`, for apps)\n\n"
        f"Input `text`: string [1], the rendered input (one text per call); output `probs`: float32 "
        f"[1, {len(t['labels'])}] in the order of `labels`. It tokenizes inside the graph with onnxruntime-extensions' "
        f"`BertTokenizer` (domain `{t['custom_op_domain']}`): register the extensions' custom-op library in the "
        "session options. "
        + (f"ORT format: `{t['ort']['text']}`." if "text" in t["ort"] else "No ORT-format copy.")
        + "\n"
    )
