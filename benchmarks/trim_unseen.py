"""What a trimmed vocabulary costs on inputs it was not built from, and whether compress's estimate sees it.

    python benchmarks/trim_unseen.py --dataset cqa --rows 1000 --model NAME=STRIPPED_DIR [--model ...] --out OUT.json

For each stripped student trained on the first --rows teacher-labelled rows of benchmarks/distill_accuracy.py's
dataset (common.load_dataset: the same rows and fixed test sample):
  - compress's estimate: the annotated rows compress holds out (edgedistill.compress.inputs.hold_out), the
    vocabulary trimmed as compress trims it from the rest, and the share of held-out rows on which the student
    with it keeps its own answer (compress.candidates.Scoring.agreement);
  - what it costs: the same trimmed student on the gold test sample, its accuracy beside the untrimmed one's, and
    the share of test rows whose answer it keeps;
  - the same with every other training-split input of the dataset as unlabelled `--inputs` (their words kept too);
  - each with every --common-words count given (compress --common-words).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import DSS_DIR, PLAN, invocation, load_dataset, offline, samples


def measure(model: Path, work: Path, dataset: str, task, test, rows: int, common: list[int]) -> dict:
    from edgedistill.compress.candidates import Scoring
    from edgedistill.compress.inputs import hold_out, task_texts
    from edgedistill.compress.vocabulary import trim_vocabulary
    from edgedistill.evaluate import predict_labels, score

    anns = work / f"{dataset}-{rows}.jsonl"
    fit, held = hold_out(anns, work)
    scoring = Scoring(model, None, held)
    untrimmed = predict_labels(model, task, test)
    out = {
        "model": str(model),
        "held_out_rows": len(held),
        "test_rows": len(test),
        "untrimmed_test_accuracy": score(task, test, untrimmed)["accuracy"],
    }
    seen = {json.loads(line)["id"] for line in open(anns, encoding="utf-8")}
    inputs = work / "other-inputs.jsonl"
    with open(inputs, "w", encoding="utf-8") as f:
        for line in open(work / f"{dataset}-all.jsonl", encoding="utf-8"):
            r = json.loads(line)
            if r["id"] not in seen:
                f.write(
                    json.dumps({"input": r["input"], **({"choices": r["choices"]} if r.get("choices") else {})}) + "\n"
                )
    n_inputs = sum(1 for _ in open(inputs, encoding="utf-8"))
    for (name, more), words in (
        (s, c) for s in (("annotations", None), (f"annotations + {n_inputs:,} more inputs", inputs)) for c in common
    ):
        name = f"{name}, {words:,} common words"
        trimmed = work / f"trimmed-{model.name}-{'more' if more else 'annotations'}-{words}"
        r = trim_vocabulary(model, task_texts(fit, more), trimmed, common=words)
        answers = predict_labels(trimmed, task, test)
        out[name] = {
            "kept": r.kept,
            "original": r.original,
            "held_out_agreement": scoring.agreement(trimmed),
            "test_agreement": sum(a == b for a, b in zip(answers, untrimmed)) / len(test),
            "test_accuracy": score(task, test, answers)["accuracy"],
        }
        print(f"{model.name}, vocabulary from the {name}: {json.dumps(out[name])}", flush=True)
    return out


def render(state: dict) -> str:
    n = next(iter(state["models"].values()))["held_out_rows"]
    lines = [
        "| student | vocabulary from | tokens kept | held out, answer kept "
        f"(compress's estimate, {n} rows) | test rows, answer kept | "
        "test accuracy | untrimmed |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, m in state["models"].items():
        for k, v in m.items():
            if isinstance(v, dict):
                lines.append(
                    f"| {name} | {k} | {v['kept']:,} of {v['original']:,} | {100 * v['held_out_agreement']:.1f} % | "
                    f"{100 * v['test_agreement']:.1f} % | {100 * v['test_accuracy']:.1f} % | "
                    f"{100 * m['untrimmed_test_accuracy']:.1f} % |"
                )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dss-dir", default=str(DSS_DIR))
    ap.add_argument("--dataset", default="cqa", choices=["esnli", "cqa"])
    ap.add_argument("--rows", type=int, default=1000, help="the teacher-labelled rows the students trained on")
    ap.add_argument(
        "--model", action="append", required=True, metavar="NAME=DIR", help="a stripped student; repeatable"
    )
    ap.add_argument("--common-words", default="2000", help="compress --common-words values to try, e.g. 2000,10000")
    ap.add_argument("--work", default="/tmp/edgedistill-trim-unseen")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    args.common_words = [int(c) for c in args.common_words.split(",")]
    offline()
    from edgedistill.atomic import write_json, write_jsonl

    plan, work = PLAN[args.dataset], Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    task, test, reference = load_dataset(args.dataset, plan, args.dss_dir, work, [args.rows])
    write_jsonl(work / f"{args.dataset}-all.jsonl", [a.to_json() for a in samples(args.dataset, plan, args.dss_dir)[1]])
    began = time.time()
    run = invocation(__file__)
    state = {
        "command": run["command"],
        "machine": run["machine"],
        "dataset": args.dataset,
        "rows": args.rows,
        "reference": reference,
        "models": {},
    }
    for spec in args.model:
        name, _, path = spec.partition("=")
        state["models"][name] = measure(Path(path), work, args.dataset, task, test, args.rows, args.common_words)
        state["wall_s"] = round(time.time() - began)
        write_json(Path(args.out), state)
    print(render(state))


if __name__ == "__main__":
    main()
