"""Smaller and faster than quantization alone: compressed bundles against optimum's INT8, side by side.

    python benchmarks/compress.py --datasets quickstart,esnli [--layers 4,3,2] [--esnli-rows 2000] [--esnli-inputs 7842]

Per dataset, from one uncompressed stripped student:
  - the bundle `edgedistill export` makes of it (INT8), and optimum's default INT8 recipe of the same
    student (the peer `edgedistill bench` builds: edgedistill.measure.bench.prepare_variants);
  - `edgedistill compress` candidates: the trimmed vocabulary alone, and K-layer students distilled on
    the trained student's probabilities (edgedistill.compress.smaller), each exported INT8 as `edgedistill export` does;
    on e-SNLI also K-layer students (--inputs-layers) distilled on --esnli-inputs more unlabelled inputs besides
    (`edgedistill compress --inputs`: the next rows of `valid`, their text only);
  - accuracy on held-out gold data of the torch FP32 student, each bundle and each candidate's own FP32 model;
  - p50 latency at batch 1, 128 tokens, 2 threads, every variant interleaved in one run (edge.timing);
  - bundle size against the FP32 checkpoint.
Targets (issue 16): a compressed bundle >= 1.5x faster than optimum INT8 of the uncompressed student at
<= 1 pt accuracy loss vs its FP32 student; size <= 15 % of the FP32 checkpoint; INT8 within 0.5 pt of FP32.

Students: the quickstart's (RUN/stripped of `edgedistill run examples/quickstart/pipeline.yaml`, run until
strip here when missing) and an e-SNLI label-only student trained here on --esnli-rows PaLM-labelled rows
of `valid` (500 `test` rows held out). Writes benchmarks/results/compress.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import DSS_DIR, RESULTS, ROOT, command, offline, quickstart_student, read_json, side_by_side_timing


def esnli_student(
    work: Path, rows: int, dss_dir: Path, n_inputs: int = 0
) -> tuple[Path, Path, Path, Path, Path | None]:
    """A label-only MiniLM student on `rows` PaLM-labelled e-SNLI rows (the distill_accuracy recipe), and the next
    `n_inputs` rows of `valid` as unlabelled inputs (their text only: no teacher label reaches a compressed student)."""
    import random

    from edgedistill.atomic import write_jsonl
    from edgedistill.distill.strip import strip_student
    from edgedistill.distill.train import TrainConfig, train
    from edgedistill.teacher.dss import load_dss

    work.mkdir(parents=True, exist_ok=True)
    task, anns = load_dss("esnli", "valid", dss_dir)
    task.save(work / "esnli.yaml")
    random.Random(0).shuffle(anns)
    write_jsonl(work / "annotations.jsonl", [a.to_json() for a in anns[:rows]])
    inputs = None
    if n_inputs:
        inputs = work / f"inputs-{n_inputs}.jsonl"
        write_jsonl(inputs, [{"input": a.input} for a in anns[rows : rows + n_inputs]])
    lines = [
        ln
        for ln in (Path(dss_dir) / "esnli" / "esnli_test.json").read_text(encoding="utf-8").splitlines()
        if ln.strip()
    ]
    random.Random(1).shuffle(lines)
    (work / "test.jsonl").write_text("\n".join(lines[:500]) + "\n", encoding="utf-8")
    if not (work / "stripped").exists():
        train(
            TrainConfig(
                task=str(work / "esnli.yaml"),
                annotations=str(work / "annotations.jsonl"),
                out=str(work / "student"),
                mode="label-only",
                epochs=3,
                batch_size=16,
                max_length=128,
                seed=0,
                progress=False,
            ),
            echo=print,
        )
        strip_student(work / "student", work / "stripped")
    return work / "stripped", work / "annotations.jsonl", work / "esnli.yaml", work / "test.jsonl", inputs


def build_variants(
    stripped: Path,
    annotations: Path,
    layers: list[int],
    work: Path,
    inputs: Path | None = None,
    inputs_layers: tuple[int, ...] = (),
    inputs_epochs: float = 3.0,
) -> dict[str, Path]:
    """Variant name -> model dir to export: the student, its trimmed vocabulary, and K-layer distilled students
    (on the annotation inputs alone, and, with `inputs`, on those too: `edgedistill compress --inputs`)."""
    from edgedistill.compress.inputs import task_texts
    from edgedistill.compress.smaller import distill_layers
    from edgedistill.compress.vocabulary import COMMON_WORDS, trim_vocabulary
    from edgedistill.model_dir import read_meta

    models = {"uncompressed": stripped}
    for d in work.glob("trimmed*"):  # cached from a run whose trimming differed: its layers would be stale too
        # (the meta counts the common words trimming added, not the setting: a release without them has no count)
        if "common_words" not in read_meta(d).get("vocabulary", {}):
            raise SystemExit(f"{d}: trimmed without this release's {COMMON_WORDS} common words; pass a fresh --work")
    if not (work / "trimmed").exists():
        trim_vocabulary(stripped, task_texts(annotations), work / "trimmed")
    models["trimmed vocabulary"] = work / "trimmed"
    for k in layers:
        if not (work / f"layers-{k}").exists():
            print(f"distilling a {k}-layer student ...", flush=True)
            distill_layers(work / "trimmed", annotations, k, work / f"layers-{k}", work / "scratch")
        models[f"{k} layers, trimmed vocabulary"] = work / f"layers-{k}"
    if inputs and inputs_layers:
        n = sum(1 for _ in open(inputs, encoding="utf-8"))
        if not (work / f"trimmed-{inputs.stem}").exists():
            trim_vocabulary(stripped, task_texts(annotations, inputs), work / f"trimmed-{inputs.stem}")
        for k in inputs_layers:
            out = work / f"layers-{k}-{inputs.stem}"
            if not out.exists():
                print(f"distilling a {k}-layer student on {n} more unlabelled inputs ...", flush=True)
                distill_layers(
                    work / f"trimmed-{inputs.stem}",
                    annotations,
                    k,
                    out,
                    work / f"scratch-{inputs.stem}",
                    epochs=inputs_epochs,
                    inputs=inputs,
                )
            models[f"{k} layers, trimmed vocabulary, +{n:,} unlabelled inputs"] = out
    return models


def export_all(models: dict[str, Path], annotations: Path, work: Path) -> dict[str, dict]:
    from edgedistill.deploy.export import ExportConfig, export_bundle

    out = {}
    for name, model in models.items():
        bundle = work / "bundles" / name.replace(" ", "-").replace(",", "")
        m = export_bundle(
            ExportConfig(model=str(model), out=str(bundle), parity_data=str(annotations), min_agreement=0.9),
            echo=lambda *_: None,
        )
        out[name] = {
            "bundle": bundle,
            "model": model,
            "size_bytes": m["size_bytes"],
            "int8_agreement": m["parity"]["int8_agreement"],
            "smooth": m["quantization"].get("smooth"),
        }
    return out


def accuracies(task_path: Path, test: Path, bundles: dict[str, dict]) -> None:
    from edgedistill.data import load_examples
    from edgedistill.evaluate import evaluate_model
    from edgedistill.task import load_task

    task = load_task(task_path)
    exs = load_examples(task, test, require_gold=True)
    for b in bundles.values():
        b["accuracy"] = evaluate_model(b["bundle"], task, exs)["accuracy"]
        b["fp32_accuracy"] = evaluate_model(b["model"], task, exs)["accuracy"]


def time_side_by_side(bundles: dict[str, dict], stripped: Path, work: Path, texts: list[str], threads: int = 2) -> dict:
    """p50 at batch 1 x 128 tokens: optimum INT8 of the uncompressed student and every bundle, interleaved."""
    from edgedistill.edge.feeds import load_tokenizer, shape_feeds
    from edgedistill.edge.timing import summarize, time_interleaved
    from edgedistill.measure.bench import load_variant, prepare_variants, read_subject

    base = bundles["uncompressed"]["bundle"]
    subject = read_subject(base, stripped)
    paths, info = prepare_variants(subject, ["optimum-int8"], work / "peers")
    if info["optimum-int8"]["status"] != "ok":
        raise SystemExit(f"optimum INT8 peer: {info['optimum-int8']['reason']}")
    runners = {"optimum INT8 (uncompressed)": load_variant("optimum-int8", paths, threads)}
    toks = {"optimum INT8 (uncompressed)": load_tokenizer(subject.tokenizer)}
    for name, b in bundles.items():
        p = dict(paths, bundle=str(b["bundle"]), tokenizer=str(b["bundle"] / "tokenizer.json"))
        runners[f"bundle: {name}"] = load_variant("bundle", p, threads)
        toks[f"bundle: {name}"] = load_tokenizer(b["bundle"] / "tokenizer.json")
    prepared = {n: r.prepare(shape_feeds(toks[n], subject.family, texts, None, 1, 128)) for n, r in runners.items()}
    timed = time_interleaved(runners, prepared, side_by_side_timing())
    return {
        "optimum_int8": {**info["optimum-int8"], **summarize(timed["optimum INT8 (uncompressed)"]["times_ns"], 1)},
        **{n: summarize(t["times_ns"], 1) for n, t in timed.items() if n != "optimum INT8 (uncompressed)"},
    }


def run_dataset(name: str, args) -> dict:
    from edgedistill.annotations import read_annotations
    from edgedistill.model_dir import read_meta, weights_bytes

    work = args.work / name
    inputs = None
    if name == "quickstart":
        stripped, ann, task, test = quickstart_student(args.quickstart_run)
    else:
        stripped, ann, task, test, inputs = esnli_student(
            work / "student", args.esnli_rows, args.dss_dir, args.esnli_inputs
        )
    models = build_variants(stripped, ann, args.layers, work, inputs, args.inputs_layers, args.inputs_epochs)
    bundles = export_all(models, ann, work)
    accuracies(task, test, bundles)
    texts = [a.input for a in read_annotations(ann)[:64]]
    times = time_side_by_side(bundles, stripped, work, texts)
    ckpt = weights_bytes(stripped)
    opt = times.pop("optimum_int8")
    rows = [
        {
            "variant": "optimum INT8 of the uncompressed student",
            "p50_ms": opt["p50_ms"],
            "size_bytes": opt.get("size_bytes"),
        }
    ]
    for n, b in bundles.items():
        rows.append(
            {
                "variant": f"bundle: {n}",
                "p50_ms": times[f"bundle: {n}"]["p50_ms"],
                "size_bytes": b["size_bytes"],
                "accuracy": b["accuracy"],
                "fp32_accuracy": b["fp32_accuracy"],
                "int8_agreement": b["int8_agreement"],
                "smooth": b["smooth"],
            }
        )
    fp32 = bundles["uncompressed"]["fp32_accuracy"]
    for r in rows:
        r["speedup_vs_optimum"] = opt["p50_ms"] / r["p50_ms"]
        r["of_checkpoint"] = r["size_bytes"] / ckpt if r.get("size_bytes") else None
    pooling = json.loads((stripped / "config.json").read_text()).get("classifier_pooling", "cls")
    vocab = read_meta(models["trimmed vocabulary"]).get("vocabulary")
    return {
        "student": str(stripped),
        "pooling": pooling,
        "vocabulary": vocab,
        "test_rows": sum(1 for _ in open(test, encoding="utf-8")),
        "fp32_student_accuracy": fp32,
        "checkpoint_bytes": ckpt,
        "optimum_recipe": opt.get("recipe"),
        "rows": rows,
    }


def compressed_rows(d: dict) -> list[dict]:
    return [r for r in d["rows"] if "layers" in r["variant"] or "trimmed" in r["variant"]]


def fastest_within_1pt(d: dict) -> dict | None:
    """The fastest compressed bundle at most 1 pt under the FP32 student (the issue's first target)."""
    ok = [r for r in compressed_rows(d) if r["accuracy"] >= d["fp32_student_accuracy"] - 0.01]
    return max(ok, key=lambda r: r["speedup_vs_optimum"], default=None)


def targets(d: dict) -> list[str]:
    fp32 = d["fp32_student_accuracy"]
    comp = compressed_rows(d)
    fastest_ok = fastest_within_1pt(d)
    smallest = min(comp, key=lambda r: r["of_checkpoint"])
    out = []
    if fastest_ok:
        out.append(
            "- Fastest compressed bundle within 1 pt of the FP32 student "
            f"({100 * fp32:.1f} %): {fastest_ok['variant']}, "
            f"{fastest_ok['speedup_vs_optimum']:.2f}x optimum INT8 (target 1.5x: "
            f"{'met' if fastest_ok['speedup_vs_optimum'] >= 1.5 else 'missed'})."
        )
    else:
        out.append(
            "- No compressed bundle is within 1 pt of the FP32 student: the 1.5x target is missed at that accuracy."
        )
    out.append(
        f"- Smallest bundle: {smallest['variant']}, {100 * smallest['of_checkpoint']:.1f} % of the FP32 checkpoint "
        f"(target 15 %: {'met' if smallest['of_checkpoint'] <= 0.15 else 'missed'})."
    )
    for r in d["rows"][1:]:
        out.append(
            f"- {r['variant']}: INT8 {100 * r['accuracy']:.1f} % vs its FP32 model {100 * r['fp32_accuracy']:.1f} % "
            f"({_int8_delta(r)})" + (", the fastest within 1 pt of the student" if r is fastest_ok else "") + "."
        )
    return out


def _int8_delta(r: dict) -> str:
    delta = 100 * (r["accuracy"] - r["fp32_accuracy"])
    return f"{delta:+.1f} pt; target within 0.5 pt: {'met' if abs(delta) <= 0.5 else 'missed'}"


def _smooth_line(res: dict) -> str:
    """How many bundles kept their activation smoothing (the export keeps it where it lowers the INT8 drift)."""
    rows = [r for d in res["datasets"].values() for r in d["rows"] if "smooth" in r]
    kept = [r["smooth"] for r in rows if r["smooth"]]
    if not kept:
        return ""
    return (
        f"; {len(kept)} of {len(rows)} kept their activation smoothing "
        f"(`--smooth {kept[0]['alpha']:g}`), which lowered "
        f"their INT8 drift on the parity inputs {min(k['kl_unsmoothed'] / k['kl_smoothed'] for k in kept):.1f} to "
        f"{max(k['kl_unsmoothed'] / k['kl_smoothed'] for k in kept):.1f} times"
    )


def _vocab_line(v: dict | None) -> str:
    if not v:
        return ""
    common = f", {v['common_words']:,} of them common words the annotations do not use" if "common_words" in v else ""
    return f" Trimmed vocabulary: {v['kept']:,} of {v['original']:,} tokens{common}."


def render(res: dict) -> str:
    lines = [
        "# Compression: trimmed vocabulary and fewer layers against optimum's INT8",
        "",
        f"Written by `{res['command']}` on {res['machine']} ({res['wall_s'] / 60:.0f} min, {res['date']}). "
        "Latency: batch 1, 128 tokens, 2 threads, p50 of interleaved calls "
        "(tokenizing excluded, as in `edgedistill bench`); "
        "every bundle is INT8 as `edgedistill export` makes it, for this CPU" + _smooth_line(res) + ".",
        "",
    ]
    for name, d in res["datasets"].items():
        lines += [
            f"## {name}",
            "",
            f"Student: `{d['student']}` (head on "
            f"{'the mean token state' if d.get('pooling') == 'mean' else '[CLS]'}); FP32 student accuracy "
            f"{100 * d['fp32_student_accuracy']:.1f} % on "
            f"{d['test_rows']} held-out gold rows; FP32 checkpoint "
            f"{d['checkpoint_bytes'] / 1e6:.1f} MB; optimum recipe "
            f"`{d['optimum_recipe']}`." + _vocab_line(d.get("vocabulary")),
            "",
            "| variant | accuracy | its FP32 model | p50 ms | vs optimum INT8 | MB | of the FP32 checkpoint |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in d["rows"]:
            acc = f"{100 * r['accuracy']:.1f} %" if "accuracy" in r else "–"
            f32 = f"{100 * r['fp32_accuracy']:.1f} %" if "fp32_accuracy" in r else "–"
            mb = f"{r['size_bytes'] / 1e6:.1f}" if r.get("size_bytes") else "–"
            of = f"{100 * r['of_checkpoint']:.1f} %" if r.get("of_checkpoint") else "–"
            lines.append(
                f"| {r['variant']} | {acc} | {f32} | {r['p50_ms']:.2f} | {r['speedup_vs_optimum']:.2f}x | {mb} | {of} |"
            )
        lines += ["", *targets(d), "", f"![{name}: accuracy vs latency](compress_{name}.png)", ""]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="quickstart,esnli")
    ap.add_argument("--layers", default="4,3,2", help="layer counts of the distilled candidates")
    ap.add_argument("--esnli-rows", type=int, default=2000)
    ap.add_argument(
        "--esnli-inputs",
        type=int,
        default=7842,
        help="the next N rows of e-SNLI valid as unlabelled inputs "
        "(compress --inputs; 7842: every row after the training rows); 0: none",
    )
    ap.add_argument("--inputs-layers", default="4", help="layer counts distilled on the unlabelled inputs too")
    ap.add_argument("--inputs-epochs", type=float, default=3.0, help="their distillation epochs")
    ap.add_argument("--quickstart-run", type=Path, default=ROOT / "runs" / "quickstart")
    ap.add_argument("--dss-dir", type=Path, default=DSS_DIR)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgedistill-compress"))
    ap.add_argument("--rerender", action="store_true", help="only rewrite compress.md and the plots from compress.json")
    args = ap.parse_args()
    args.layers = [int(x) for x in args.layers.split(",")]
    args.inputs_layers = tuple(int(x) for x in args.inputs_layers.split(",") if x)
    offline()
    from edgedistill.atomic import write_json, write_text
    from edgedistill.edge.machine import describe, machine_record

    start = time.time()
    path = RESULTS / "compress.json"
    res = read_json(path, {"datasets": {}})
    if not args.rerender:
        for name in args.datasets.split(","):
            res["datasets"][name] = run_dataset(name, args)
        res.update(
            command=command(__file__),
            machine=describe(machine_record()),
            wall_s=round(time.time() - start),
            date=time.strftime("%Y-%m-%d"),
        )
        write_json(path, res)
    plot(res)
    write_text(RESULTS / "compress.md", render(res))
    print(render(res))


def plot(res: dict) -> None:
    """benchmarks/results/compress_<dataset>.png: each bundle's accuracy against its p50, the area its size;
    starred, the fastest within 1 pt of the FP32 student (compress's own Pareto plot)."""
    from edgedistill.compress.candidates import pareto_plot

    for name, d in res["datasets"].items():
        rows = [r for r in d["rows"] if "accuracy" in r]
        best = fastest_within_1pt(d)
        pareto_plot(
            {
                "candidates": [
                    {
                        "name": r["variant"].removeprefix("bundle: "),
                        "accuracy": r["accuracy"],
                        "p50_ms": r["p50_ms"],
                        "bundle_mb": r["size_bytes"] / 1e6,
                    }
                    for r in rows
                ],
                "chosen": best and best["variant"].removeprefix("bundle: "),
                "threads": 2,
                "accuracy_on": f"{d['test_rows']} held-out gold rows",
                "budget_ms": None,
            },
            RESULTS / f"compress_{name}.png",
            chosen_label="fastest within 1 pt of the student",
        )


if __name__ == "__main__":
    main()
