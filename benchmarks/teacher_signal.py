"""How much of a small local teacher's judgement each way of asking recovers, and what it does to the student.

Annotates each dataset live with one teacher (default: the local llama.cpp server of
../shared/tools/local-teacher, Qwen2.5-Coder-0.5B-Instruct) under several teacher-signal settings and
prints, per setting, the agreement with gold and the tokens and teacher seconds per example:

    text            the zero-shot answer line, parsed (what edgedistill did before)
    votes N         self-consistency: the greedy answer plus N-1 sampled at T=0.7, the majority
    score ...       letter scoring from first-token logprobs: raw, calibrated over the batch or
                    against content-free inputs, and over K rotated option orders
    score + votes   label_probs = the blend annotate writes (teacher_signal.SCORE_WEIGHT)

All settings of one dataset share one cache, so each request is paid once and a re-run is free; the
seconds are the server's recorded time for each request the setting uses, paid now or before.
Then (quickstart only, --students) MiniLM label-only students train on the text labels, on the best
setting's labels as hard targets, and on its label_probs as soft targets, 3 seeds each, beside a
gold-label student, and are tested on the 60 held-out tickets.

    ../shared/tools/local-teacher start
    python benchmarks/teacher_signal.py --datasets quickstart --students      # 13 min on 2 cores, once the
                                                                              #   quickstart recording is cached
    python benchmarks/teacher_signal.py --datasets esnli,cqa --rows 50         # 11 min

Results merge by dataset into benchmarks/results/teacher_signal.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

from common import DSS_DIR, QUICKSTART, RESULTS, ROOT, command, mean_sd, offline, read_json


def settings(n_options: int, votes: int) -> dict[str, dict]:
    """Setting name -> AnnotateConfig overrides. Order matters only for who pays first."""
    k = n_options
    return {
        "text": dict(scoring="none"),
        "score, 1 order, raw": dict(calibration="none"),
        "score, 1 order, batch-calibrated": dict(calibration="batch"),
        "score, 1 order, content-free-calibrated": dict(calibration="content-free"),
        f"score, {k} orders, raw": dict(calibration="none", score_orders=k),
        f"score, {k} orders, batch-calibrated": dict(calibration="batch", score_orders=k),
        f"score, {2 * k} orders, raw": dict(calibration="none", score_orders=2 * k),
        f"score, {2 * k} orders, batch-calibrated": dict(calibration="batch", score_orders=2 * k),
        "votes 3": dict(scoring="none", votes=3),
        f"votes {votes}": dict(scoring="none", votes=votes),
        f"score {k} orders + votes {votes}": dict(calibration="batch", score_orders=k, votes=votes),
    }


def dataset_inputs(name: str, rows: int, work: Path, dss_dir: Path) -> tuple[Path, Path, Path | None]:
    """(task yaml, data file, held-out file or None). DSS samples are copied to the work dir, never to the project."""
    if name == "quickstart":
        return QUICKSTART / "task.yaml", QUICKSTART / "train.jsonl", QUICKSTART / "test.jsonl"
    src = dss_dir / name / f"{name}_test.json"
    if not src.exists():
        sys.exit(f"{src} not found: pass --dss-dir (the DSS data, see ../shared/datasets/dss/README.md)")
    lines = [ln for ln in src.read_text(encoding="utf-8").splitlines() if ln.strip()]
    random.Random(0).shuffle(lines)
    data = work / f"{name}_sample.jsonl"
    data.write_text("\n".join(lines[:rows]) + "\n", encoding="utf-8")
    return ROOT / "examples" / "dss" / f"{name}.yaml", data, None


def annotate_settings(name, task, data, work, args, rows: int | None) -> dict:
    from edgedistill.task import load_task
    from edgedistill.teacher.annotate import AnnotateConfig, annotate

    spec = load_task(task)
    n_options = len(spec.labels) if spec.type == "classification" else 5
    out = work / name
    recorded = QUICKSTART / "teacher_cache.sqlite"
    if name == "quickstart" and recorded.exists():  # what the quickstart recorded is not paid again
        from edgedistill.teacher.cache import Cache

        out.mkdir(parents=True, exist_ok=True)
        cache = Cache(out / "cache.sqlite")
        cache.merge_from(recorded)
        cache.close()
    results = {}
    for setting, over in settings(n_options, args.votes).items():
        t0 = time.time()
        cfg = AnnotateConfig(
            task=str(task),
            data=str(data),
            out=str(out),
            model=args.model,
            base_url=args.base_url,
            price_in=0.0,
            price_out=0.0,
            concurrency=1,
            rationalize=False,
            limit=rows,
            **over,
        )
        s = annotate(cfg, echo=lambda *_: None)
        shutil.copyfile(out / "annotations.jsonl", work / f"{name}.{_slug(setting)}.jsonl")
        kinds = s["requests_by_kind"]
        n = s["examples"]
        results[setting] = {
            "gold_agreement": s["gold_agreement"],
            "examples": n,
            "ok": s["ok"],
            "requests_per_example": sum(k["requests"] for k in kinds.values()) / n,
            "prompt_tokens_per_example": sum(k["prompt_tokens"] for k in kinds.values()) / n,
            "completion_tokens_per_example": sum(k["completion_tokens"] for k in kinds.values()) / n,
            "teacher_seconds_per_example": sum(k["seconds"] for k in kinds.values()) / n,
            "rationale_yield_first": s["rationale_yield_first"],
            "with_label_probs": s["with_label_probs"],
            "label_counts": _counts(work / f"{name}.{_slug(setting)}.jsonl"),
            "requests_sent_now": s["requests_sent"],
            "wall_s": round(time.time() - t0, 1),
            "config": over,
        }
        print(
            json.dumps(
                {
                    "dataset": name,
                    "setting": setting,
                    **{k: v for k, v in results[setting].items() if k != "label_counts"},
                }
            ),
            flush=True,
        )
    return results


def students(name, task, test, work, best: str, seeds: list[int]) -> dict:
    """Label-only students on text labels, on the best setting's hard labels, and on its soft targets; and on gold."""
    from edgedistill.data import load_examples
    from edgedistill.distill.train import TrainConfig, train
    from edgedistill.evaluate import predict_labels, score
    from edgedistill.task import load_task

    spec = load_task(task)
    held = load_examples(spec, test)
    runs = {
        "text labels (hard)": ("text", 0.0),
        f"{best} (hard)": (best, 0.0),
        f"{best} (soft, w=0.5)": (best, 0.5),
        "gold labels (standard)": ("text", None),
    }
    out = {}
    for label, (setting, soft) in runs.items():
        accs, secs = [], []
        for seed in seeds:
            t0 = time.time()
            mode = "standard" if soft is None else "label-only"
            cfg = TrainConfig(
                task=str(task),
                annotations=str(work / f"{name}.{_slug(setting)}.jsonl"),
                out=str(work / "student"),
                mode=mode,
                data=str(QUICKSTART / "train.jsonl") if mode == "standard" else None,
                epochs=4,
                batch_size=16,
                max_length=64,
                seed=seed,
                soft_weight=soft or 0.0,
                progress=False,
            )
            try:
                train(cfg, echo=lambda *_: None)
                accs.append(100 * score(spec, held, predict_labels(work / "student", spec, held))["accuracy"])
            except Exception as e:  # a run refused at the floor is a result, not a crash of the benchmark
                print(json.dumps({"student": label, "seed": seed, "failed": str(e)[:200]}), flush=True)
                accs.append(None)
            secs.append(time.time() - t0)
            print(
                json.dumps({"student": label, "seed": seed, "test_accuracy": accs[-1], "secs": round(secs[-1])}),
                flush=True,
            )
        ok = [a for a in accs if a is not None]
        m, sd = mean_sd(ok) if ok else (None, None)
        out[label] = {"per_seed": accs, "mean": m, "sd": sd if len(ok) > 1 else None, "seconds": round(sum(secs))}
    return out


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in s).strip("-")


def _counts(path: Path) -> dict:
    from collections import Counter

    return dict(Counter(json.loads(ln).get("label") for ln in path.read_text().splitlines()).most_common())


def write_results(new: dict, meta: dict) -> None:
    from edgedistill.atomic import write_json, write_text

    path = RESULTS / "teacher_signal.json"
    old = read_json(path, {"datasets": {}})
    old["datasets"].update(new)
    old.setdefault("runs", []).append(meta)
    write_json(path, old)
    write_text(RESULTS / "teacher_signal.md", render(old))


def render(res: dict) -> str:
    lines = [
        "# Teacher signal: what a small local teacher's answers, logprobs and votes are worth",
        "",
        "Written by `benchmarks/teacher_signal.py`; each run's command, machine and wall time are listed at the end.",
        "",
    ]
    for name, d in res["datasets"].items():
        lines += [
            f"## {name}",
            "",
            f"{d['examples']} examples, teacher `{d['model']}`.",
            "",
            "| setting | agreement with gold | requests / ex | prompt tok / ex | completion tok / ex | teacher s / ex "
            "|",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for setting, r in d["settings"].items():
            lines.append(
                f"| {setting} | {100 * r['gold_agreement']:.1f} % | {r['requests_per_example']:.1f} | "
                f"{r['prompt_tokens_per_example']:.0f} | "
                f"{r['completion_tokens_per_example']:.1f} | {r['teacher_seconds_per_example']:.2f} |"
            )
        text = d["settings"].get("text", {})
        if text.get("rationale_yield_first") is not None:
            lines += [
                "",
                "Rationale yield of the zero-shot answer (an explanation of 5+ words): "
                f"{100 * text['rationale_yield_first']:.0f} %.",
            ]
        if d.get("students"):
            lines += [
                "",
                f"Students (MiniLM, label-only, 4 epochs, seeds {', '.join(map(str, d['seeds']))}), test accuracy on "
                f"{d['held_out']} held-out examples:",
                "",
                "| trained on | per seed (%) | mean ± sd |",
                "|---|---|---|",
            ]
            for label, r in d["students"].items():
                per = " / ".join("failed" if a is None else f"{a:.1f}" for a in r["per_seed"])
                mean = "–" if r["mean"] is None else f"{r['mean']:.1f} ± {r['sd'] or 0:.1f}"
                lines.append(f"| {label} | {per} | {mean} |")
        lines.append("")
    lines += ["## Runs", ""] + [
        f"- `{m['command']}`: {m['wall_s'] / 60:.0f} min, {m['machine']}" for m in res.get("runs", [])
    ]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="quickstart", help="comma list of quickstart, esnli, cqa")
    ap.add_argument(
        "--rows",
        type=int,
        default=50,
        help="examples of each DSS dataset's test split (the quickstart: all 240 tickets)",
    )
    ap.add_argument("--votes", type=int, default=5)
    ap.add_argument("--students", action="store_true", help="also train students on hard vs soft targets (quickstart)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--base-url", default="http://127.0.0.1:8765/v1")
    ap.add_argument("--model", default="qwen2.5-0.5b-instruct")
    ap.add_argument("--dss-dir", type=Path, default=DSS_DIR)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgedistill-teacher-signal"))
    args = ap.parse_args()
    offline()
    from edgedistill.edge.machine import describe, machine_record

    args.work.mkdir(parents=True, exist_ok=True)
    start, new = time.time(), {}
    for name in args.datasets.split(","):
        rows = None if name == "quickstart" else args.rows
        task, data, test = dataset_inputs(name, rows or 10**9, args.work, args.dss_dir)
        res = annotate_settings(name, task, data, args.work, args, rows)
        entry = {"model": args.model, "examples": next(iter(res.values()))["examples"], "settings": res}
        if args.students and test is not None:
            best = max((s for s in res if s != "text"), key=lambda s: res[s]["gold_agreement"])
            entry.update(
                students=students(name, task, test, args.work, best, [int(x) for x in args.seeds.split(",")]),
                seeds=[int(x) for x in args.seeds.split(",")],
                held_out=len(test.read_text().splitlines()),
                best=best,
            )
        new[name] = entry
    meta = {
        "command": command(__file__),
        "wall_s": round(time.time() - start),
        "machine": describe(machine_record()),
        "date": time.strftime("%Y-%m-%d"),
    }
    write_results(new, meta)
    print((RESULTS / "teacher_signal.md").read_text())


if __name__ == "__main__":
    main()
