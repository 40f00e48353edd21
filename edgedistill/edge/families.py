"""One registry of task families: which model class, optimum task, ONNX files and answer rule each uses.

A task's `type` (classification, multiple-choice, numeric) picks its family; every stage that needs a
model class, an export task or a way to compare an answer with the gold reads it here. Torch-free:
model classes are named, not imported.
"""

from __future__ import annotations

from dataclasses import dataclass

from .arith import same_number


@dataclass(frozen=True)
class Family:
    name: str  # as written in manifests and train.json
    task_type: str  # the task spec's `type`
    auto_model: str  # transformers class that loads a student or stripped model of this family
    optimum_task: str  # optimum's ONNX export task
    onnx_files: dict  # role -> file name optimum writes
    answer: str  # what is compared with the gold: "label", "choice" (the option's text) or "number"
    metric: str = "accuracy"


FAMILIES = {
    "sequence-classification": Family(
        "sequence-classification",
        "classification",
        "AutoModelForSequenceClassification",
        "text-classification",
        {"model": "model.onnx"},
        "label",
    ),
    "multiple-choice": Family(
        "multiple-choice",
        "multiple-choice",
        "AutoModelForMultipleChoice",
        "multiple-choice",
        {"model": "model.onnx"},
        "choice",
    ),
    "seq2seq": Family(
        "seq2seq",
        "numeric",
        "AutoModelForSeq2SeqLM",
        "text2text-generation-with-past",
        {
            "encoder": "encoder_model.onnx",
            "decoder": "decoder_model.onnx",
            "decoder_with_past": "decoder_with_past_model.onnx",
        },
        "number",
    ),
}
BY_TASK_TYPE = {f.task_type: f for f in FAMILIES.values()}


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"family {name!r} is not one of {', '.join(FAMILIES)}") from None


def family_of_task(task_type: str) -> Family:
    try:
        return BY_TASK_TYPE[task_type]
    except KeyError:
        raise ValueError(f"task type {task_type!r} is not one of {', '.join(BY_TASK_TYPE)}") from None


def answers_match(task_type: str, answer, gold) -> bool:
    """The one rule for "is this answer right": numeric answers compare by value ("42" = "( 84.0 / 2.0 )"),
    labels and choices as text."""
    return same_number(answer, gold) if task_type == "numeric" else answer == gold


def auto_model_class(name: str):
    """The transformers class of a family (imports transformers: for torch-side callers only)."""
    # deferred: edge/ runs on devices without transformers
    import transformers

    return getattr(transformers, family(name).auto_model)
