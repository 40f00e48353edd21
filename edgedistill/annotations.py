"""The annotations file: the teacher's output and the student's training input (`RUN/annotations.jsonl`).

One JSON object per line:
    {"id", "input", "choices"?, "label", "rationale", "gold"?, "status", "error"?, "raw"?, "usage"?}
`status` is "ok" | "parse_failed" | "failed" | "filtered" | "not_sent" (held back by --max-cost: a re-run with a
higher cap sends it). Only "ok" rows carry a usable teacher
label; `rationale` is null when it was not asked for, not given, or too short to teach anything.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import UserError, at

STATUSES = ("ok", "parse_failed", "failed", "filtered", "not_sent")


@dataclass
class Annotation:
    id: str
    input: str
    label: str | None = None
    rationale: str | None = None
    status: str = "ok"
    choices: list[str] | None = None
    gold: str | None = None
    error: str | None = None
    raw: str | None = None
    usage: dict | None = None
    extra: dict = field(default_factory=dict)  # e.g. {"rationale_requested": true}

    def to_json(self) -> dict:
        d = asdict(self)
        extra = d.pop("extra")
        d = {k: v for k, v in d.items() if v is not None or k in ("label", "rationale")}
        d.update(extra)
        return d


def read_annotations(path) -> list[Annotation]:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: annotations file not found; run `edgedistill annotate` (or `import-dss`) first")
    rows = []
    known = {f for f in Annotation.__dataclass_fields__} - {"extra"}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise at(path, n, None, f"malformed JSON line ({e.msg}); each line must be one annotation object") from None
        if not isinstance(d, dict):
            raise at(path, n, None, "each line must be a JSON object")
        for key in ("id", "input", "status"):
            if key not in d:
                raise at(path, n, key, "missing; is this an annotations.jsonl written by edgedistill?")
        if d["status"] not in STATUSES:
            raise at(path, n, "status", f"{d['status']!r} is not one of {STATUSES}")
        extra = {k: v for k, v in d.items() if k not in known}
        rows.append(Annotation(**{k: v for k, v in d.items() if k in known}, extra=extra))
        rows[-1].extra["line"] = n
    if not rows:
        raise UserError(f"{path}: empty annotations file; annotate some data first")
    return rows
