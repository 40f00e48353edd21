"""Import the PaLM-540B chain-of-thought outputs released with Distilling Step-by-Step (Hsieh et al. 2023).

The raw completions are few-shot CoT answers that often run on into an invented next question; we cut
that noise, read the rationale and the answer with the same parser a live teacher goes through, and
write the same annotations format as `edgedistill annotate`, so later stages get a real 540B teacher's
rationales at no cost.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import yaml

from ..annotations import Annotation
from ..data import load_examples
from ..edge.families import answers_match
from ..errors import UserError
from ..task import TaskSpec, load_task, task_from_dict
from .parsing import clean_rationale, parse_answer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "dss"
DATASETS = {
    # name: (batch size of the llm/*_CoT_<k>.json files, where the noise starts)
    "cqa": (1000, r"\n\s*\nQ:"),
    "svamp": (500, r"\n\s*\nQ:"),
    "esnli": (5500, r"\n\s*Premise"),
}
SPLITS = {"cqa": ("train", "test"), "svamp": ("train", "test"), "esnli": ("valid", "test")}
_ANSWER = re.compile(r"(?:so the answer is|the answer is|\n\s*answer\s*:)", re.IGNORECASE)


def default_dss_dir() -> Path:
    env = os.environ.get("EDGEDISTILL_SHARED")
    return Path(env) / "datasets" / "dss" if env else Path("../shared/datasets/dss")


def task_for(dataset: str) -> TaskSpec:
    path = EXAMPLES / f"{dataset}.yaml"
    if path.exists():
        return load_task(path)
    # installed without the examples folder: the same specs, inline
    return task_from_dict(yaml.safe_load(_INLINE[dataset]), source=f"<{dataset}>")


_INLINE = {
    "cqa": "name: cqa\ntype: multiple-choice\ninput: '{question}'\nchoices: choices\ngold: answer\nid: id\n",
    "svamp": "name: svamp\ntype: numeric\ninput: '{input}'\ngold: label\n",
    "esnli": 'name: esnli\ntype: classification\ninput: "Premise: {premise}\\nHypothesis: {hypothesis}"\n'
    "labels: [entailment, neutral, contradiction]\ngold: label\n",
}


def split_output(dataset: str, raw: str) -> tuple[str, str | None]:
    """(answer text, rationale) of one raw completion, with the invented continuation cut off."""
    text = re.split(DATASETS[dataset][1], raw, maxsplit=1)[0].strip()
    m = _ANSWER.search(text)
    rationale = text[: m.start()] if m else None
    if dataset == "esnli":
        rationale = re.sub(r"^\s*reasonings?\s*:\s*", "", rationale or "", flags=re.IGNORECASE) or None
    return text[m.start() :] if m else text, rationale


def load_dss(dataset: str, split: str, dss_dir=None, limit: int | None = None) -> tuple[TaskSpec, list[Annotation]]:
    if dataset not in DATASETS:
        raise UserError(f"--dataset: {dataset!r}; use one of {', '.join(DATASETS)}")
    if split not in SPLITS[dataset]:
        raise UserError(f"--split: {dataset} has the splits {', '.join(SPLITS[dataset])}, not {split!r}")
    root = Path(dss_dir) if dss_dir else default_dss_dir()
    data = root / dataset / f"{dataset}_{split}.json"
    if not data.exists():
        raise UserError(f"{data}: not found; pass --dss-dir pointing at the DSS datasets folder (shared/datasets/dss)")
    task = task_for(dataset)
    examples = load_examples(task, data, limit=limit)
    batch, _ = DATASETS[dataset]
    outputs: list[str] = []
    k = 0
    while len(outputs) < len(examples) and (root / dataset / "llm" / f"{split}_CoT_{k}.json").exists():
        part = json.loads((root / dataset / "llm" / f"{split}_CoT_{k}.json").read_text())
        if len(part) != batch and (root / dataset / "llm" / f"{split}_CoT_{k + 1}.json").exists():
            raise UserError(
                f"{root / dataset / 'llm'}/{split}_CoT_{k}.json: {len(part)} outputs, expected {batch} per batch"
            )
        outputs += part
        k += 1
    if len(outputs) < len(examples):
        raise UserError(
            f"{root / dataset / 'llm'}: {len(outputs)} teacher outputs for {len(examples)} examples of {split}"
        )
    rows = []
    for ex, raw in zip(examples, outputs):
        answer, rationale = split_output(dataset, raw)
        label = parse_answer(task, answer, ex.choices)
        kept = clean_rationale(rationale)
        row = Annotation(
            id=ex.id,
            input=ex.input,
            choices=ex.choices,
            label=label,
            rationale=kept,
            gold=ex.gold,
            status="ok" if label is not None else "parse_failed",
            error=None if label is not None else f"no answer found in {answer[:60]!r}",
            raw=raw,
            extra={"rationale_requested": True, **({"rationale_dropped": True} if rationale and not kept else {})},
        )
        rows.append(row)
    return task, rows


def agreement(task: TaskSpec, rows: list[Annotation]) -> float | None:
    judged = [r for r in rows if r.status == "ok" and r.gold is not None]
    if not judged:
        return None
    return sum(answers_match(task.type, r.label, r.gold) for r in judged) / len(judged)
