"""The ladder (issue 44): every tier of one student against the classifiers a user would pick instead.

    python benchmarks/ladder.py --datasets quickstart,esnli --seeds 0,1,2 --work DIR --out benchmarks/results

Per dataset and seed, each step the project's own command, skipped where its output exists in --work:
  edgedistill train --mode label-only --seed S, strip, export            the full student (INT8)
  edgedistill compress STRIPPED --into static, export                    the static tier
  edgedistill compress STRIPPED --layers 3, export                       fewer layers
  edgedistill export STRIPPED --cascade STATIC --cascade-threshold auto  the cascade
and the peers, trained on the same teacher labels and the same texts (the task's rendered input, which the static
tier reads too): model2vec's own StaticModelForClassification on a static model distilled from the packaged
all-MiniLM-L6-v2, SetFit on all-MiniLM-L6-v2 (a bounded number of contrastive steps), TF-IDF + logistic regression,
and optimum's default INT8 of the full student (the peer `edgedistill bench` builds).

Then, per dataset in this one process: accuracy on gold of every seed's models; and, for the first seed's models
interleaved (edge.timing), the p50 of one batch-1 predict call (tokenizing included), the mean time per input over
the test set answered one per call (what a cascade wins on), items/s at batch 32, size and training time.
Writes OUT/ladder.json, ladder.md and ladder.png. Reads ../shared/datasets/dss; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pickle
import random
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

from common import DSS_DIR, QUICKSTART, RESULTS, invocation, mean_sd, offline, read_json
from matplotlib.figure import Figure

from edgedistill.annotations import read_annotations
from edgedistill.compress.static import STATIC_DIMS
from edgedistill.data import Example, load_examples
from edgedistill.distill.train import default_student
from edgedistill.edge.machine import describe
from edgedistill.edge.runtime import EdgeModel, loaded_files
from edgedistill.edge.timing import Calls, summarize, time_interleaved
from edgedistill.measure.bench import BenchConfig, prepare_variants, read_subject
from edgedistill.measure.bench import load_variant as bench_variant
from edgedistill.pipeline import load_pipeline, run_pipeline
from edgedistill.task import load_task

THREADS = 2
SETFIT_BATCH = 16
FULL, STATIC, LAYERS, CASCADE = "full student (INT8)", "static tier", "3 layers (INT8)", "cascade: static, else full"
OPTIMUM, M2V = "optimum INT8 of the full student", "model2vec StaticModelForClassification"
SETFIT, TFIDF = "SetFit all-MiniLM-L6-v2", "TF-IDF + logistic regression"
PEERS = (OPTIMUM, M2V, SETFIT, TFIDF)


# ---------------------------------------------------------------- the data


def quickstart_data(work: Path, args) -> tuple[Path, Path, Path, Path | None]:
    """The quickstart's teacher labels: its pipeline replayed from the recorded teacher, until annotate."""
    run = work / "run"
    if not (run / "annotations.jsonl").exists():
        pipe = load_pipeline(QUICKSTART / "pipeline.yaml")
        pipe.run_dir = str(run)
        run_pipeline(pipe, until="annotate")
    return QUICKSTART / "task.yaml", run / "annotations.jsonl", QUICKSTART / "test.jsonl", None


def esnli_data(work: Path, args) -> tuple[Path, Path, Path, Path | None]:
    """2,000 PaLM-labelled rows of e-SNLI valid; gold test: 500 test rows (seeded sample); the next 500 valid rows
    as held-out inputs for the exports' parity check and the cascade's threshold."""
    ann, src = work / "ann", args.dss_dir / "esnli"
    if not (ann / "annotations.jsonl").exists():
        edgedistill("import-dss", "--dataset", "esnli", "--split", "valid", "--out", ann, "--limit", args.esnli_rows,
                    "--dss-dir", args.dss_dir)  # fmt: skip
    test, held_out = work / "test.jsonl", work / "held_out.jsonl"
    if not test.exists():
        write_rows(test, random.Random(1).sample(read_rows(src / "esnli_test.json"), args.test_rows))
    if not held_out.exists():
        write_rows(held_out, read_rows(src / "esnli_valid.json")[args.esnli_rows : args.esnli_rows + 500])
    return ann / "task.yaml", ann / "annotations.jsonl", test, held_out


def read_rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{"premise": r["premise"], "hypothesis": r["hypothesis"], "label": int(r["label"])} for r in rows]


def write_rows(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def texts_and_labels(task_path: Path, annotations: Path, test: Path):
    """(training texts, teacher labels, test texts, gold labels): the task's rendered inputs, as every variant
    reads them."""
    task = load_task(task_path)
    anns = [a for a in read_annotations(annotations) if a.status == "ok" and a.label in task.labels]
    exs = load_examples(task, test, require_gold=True)
    return [a.input for a in anns], [a.label for a in anns], [e.input for e in exs], [e.gold for e in exs]


class Dataset(NamedTuple):
    prepare: Callable  # (WORK, args) -> task.yaml, annotations, gold test, held-out inputs or None
    recipe: dict  # edgedistill train's options beyond --mode and --seed
    export: dict  # edgedistill export's options


# the quickstart: its pipeline.yaml's student and export settings; e-SNLI: the learning curves' recipe. Exports accept
# 97 % INT8 agreement (the quickstart's setting) so that a 3-layer student's thinner margins do not stop the run, and
# 95 % on e-SNLI, whose weaker students' thin margins flip more labels (a 3-layer one agreed on 96.9 %).
DATASETS = {
    "quickstart": Dataset(
        quickstart_data, {"epochs": 4, "min-steps": 0, "batch-size": 16, "max-length": 64}, {"min-agreement": 0.97}
    ),
    "esnli": Dataset(
        esnli_data, {"epochs": 3, "batch-size": 16, "max-length": 128, "lr": 2e-4}, {"min-agreement": 0.95}
    ),
}


# ---------------------------------------------------------------- the edgedistill tiers


def edgedistill(*args) -> float:
    """Run one edgedistill command (offline); its wall time in s."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    print("$ edgedistill " + shlex.join(str(a) for a in args), flush=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgedistill.cli", *[str(a) for a in args]], check=True, env=env)
    return time.perf_counter() - t0


def step(d: Path, name: str, out: Path, *args) -> None:
    """One edgedistill command unless `out` exists; its wall time kept in d/times.json under `name`."""
    if not out.exists():
        record(d, name, edgedistill(*args))


def record(d: Path, name: str, seconds: float) -> None:
    (d / "times.json").write_text(json.dumps({**read_json(d / "times.json"), name: seconds}, indent=1))


def build_tiers(d: Path, task: Path, ann: Path, held_out: Path | None, ds: Dataset, seed: int, args) -> dict:
    """The seed's bundles, {variant: bundle dir}; the training steps' wall times into d/times.json."""
    train = [x for k, v in ds.recipe.items() for x in (f"--{k}", v)]
    step(d, "student", d / "student", "train", "--task", task, "--annotations", ann, "--out", d / "student",
         "--mode", "label-only", "--seed", seed, *train)  # fmt: skip
    step(d, "strip", d / "stripped", "strip", d / "student", "--out", d / "stripped")
    common = ["--annotations", ann, "--seed", seed, "--quantize", "none"]  # (none: its candidate timed FP32; see below)
    step(d, "static", d / "static", "compress", d / "stripped", *common, "--into", "static", "--out", d / "static")
    epochs = ["--epochs", 1] if args.quick else []
    step(d, "layers-3", d / "layers-3", "compress", d / "stripped", *common, "--layers", 3, "--out", d / "layers-3",
         *epochs)  # fmt: skip
    cascade = ["--cascade", d / "static", "--cascade-threshold", "auto"]
    bundles = {
        FULL: ("stripped", []),
        STATIC: ("static", []),
        LAYERS: ("layers-3", []),
        CASCADE: ("stripped", cascade),  # export's default --cascade-agreement
        **{cascade_name(a): ("stripped", [*cascade, "--cascade-agreement", a]) for a in args.cascade_agreements},
    }
    export = [x for k, v in ds.export.items() for x in (f"--{k}", v)] + (
        ["--parity-data", held_out] if held_out else []
    )
    out = {}
    for i, (name, (model, extra)) in enumerate(bundles.items()):
        out[name] = d / f"bundle-{i}"
        step(d, f"export {name}", out[name], "export", d / model, "--out", out[name], *export, *extra)
    return out


def cascade_name(agreement: float) -> str:
    """The row of a cascade whose P keeps `agreement` of the full student's answers on the held-out inputs."""
    return f"{CASCADE}, keeping {100 * agreement:g} %"


# ---------------------------------------------------------------- the peers (same texts, same teacher labels)


def model2vec_base(work: Path) -> tuple[Path, float]:
    """A static model distilled by model2vec from the packaged all-MiniLM-L6-v2 (the static tier's own start)."""
    out = work / "model2vec-base"
    if not out.exists():
        from model2vec.distill import distill  # deferred: optional bench dependency

        def write(tmp: Path) -> None:
            t0 = time.perf_counter()
            distill(default_student(), pca_dims=STATIC_DIMS, device="cpu").save_pretrained(str(tmp))
            (tmp / "distill_s.json").write_text(json.dumps(time.perf_counter() - t0))

        saved(out, write)
    return out, json.loads((out / "distill_s.json").read_text())


def saved(out: Path, write) -> None:
    """write(TMP) then TMP renamed to `out`: a killed run leaves no half-written model to resume from."""
    tmp = out.with_name(out.name + ".partial")
    if tmp.is_dir():
        shutil.rmtree(tmp)
    write(tmp)
    tmp.rename(out)


def fit_model2vec(out: Path, texts, labels, seed: int, work: Path) -> None:
    """model2vec's classifier on the distilled base (its own fit: early stopping on a tenth of the rows)."""
    from model2vec import StaticModel  # deferred: optional bench dependency
    from model2vec.train import StaticModelForClassification

    clf = StaticModelForClassification.from_static_model(model=StaticModel.from_pretrained(model2vec_base(work)[0]))
    clf.fit(texts, labels, device="cpu", random_seed=seed)
    clf.to_pipeline().save_pretrained(str(out))


def fit_setfit(out: Path, texts, labels, seed: int, args, max_length: int) -> None:
    """SetFit on all-MiniLM-L6-v2: --setfit-steps contrastive steps of SETFIT_BATCH pairs, then its logistic head."""
    from datasets import Dataset as HFDataset  # deferred: optional bench dependency
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(default_student())
    targs = TrainingArguments(output_dir=str(out.parent / "setfit-checkpoints"), batch_size=SETFIT_BATCH, num_epochs=1,
                              max_steps=args.setfit_steps, seed=seed, report_to="none", save_strategy="no",
                              show_progress_bar=False, max_length=max_length)  # fmt: skip
    Trainer(model=model, args=targs, train_dataset=HFDataset.from_dict({"text": texts, "label": labels})).train()
    model.save_pretrained(str(out))


def fit_tfidf(out: Path, texts, labels) -> None:
    """Word uni- and bigrams, TF-IDF weighted, into a logistic regression (deterministic: no seed)."""
    from sklearn.feature_extraction.text import TfidfVectorizer  # deferred: optional bench dependency
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipe = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(max_iter=1000))
    out.write_bytes(pickle.dumps(pipe.fit(texts, labels)))


def build_peers(d: Path, texts, labels, seed: int, args, max_length: int) -> dict:
    """The seed's peers, {variant: saved model}; their fit times into d/times.json (model2vec's: with its base's
    distillation, as the static tier's compress step includes its own)."""
    peers = {
        M2V: (d / "model2vec", lambda o: fit_model2vec(o, texts, labels, seed, args.work)),
        SETFIT: (d / "setfit", lambda o: fit_setfit(o, texts, labels, seed, args, max_length)),
        TFIDF: (d / "tfidf.pkl", lambda o: fit_tfidf(o, texts, labels)),
    }
    _, base_s = model2vec_base(args.work)  # distilled once, before any fit is timed
    for name, (out, fit) in peers.items():
        if not out.exists():
            print(f"training the peer {name} (seed {seed}) ...", flush=True)
            t0 = time.perf_counter()
            saved(out, fit)
            record(d, name, time.perf_counter() - t0 + (base_s if name == M2V else 0))
    return {name: out for name, (out, _) in peers.items()}


# ---------------------------------------------------------------- one predict function per variant


class Variant(NamedTuple):
    predict: object  # (texts, batch size) -> labels
    size_bytes: int
    tiers: object = None  # a cascade's EdgeModel: which tier answered
    reference: object = None  # the model's own predict, where the timed one is an export of it (SetFit)


def load_variant(name: str, path: Path, d: Path, max_length: int) -> Variant:
    """The variant `name` saved at `path` (seed dir d), loaded to predict labels of texts on THREADS threads."""
    if name == OPTIMUM:
        return optimum_variant(path, d / "stripped", d / "optimum")
    if name == SETFIT:
        return setfit_variant(path, max_length)
    if name == M2V:
        from model2vec.inference import StaticModelPipeline  # deferred: optional bench dependency

        m = StaticModelPipeline.from_pretrained(path)
        return Variant(lambda xs, b: list(m.predict(xs, batch_size=b, use_multiprocessing=False)), dir_bytes(path))
    if name == TFIDF:
        m = pickle.loads(path.read_bytes())
        return Variant(lambda xs, b: list(m.predict(xs)), path.stat().st_size)
    m = EdgeModel.load(path, threads=THREADS)
    cascade = m if m.static is not None else None
    return Variant(lambda xs, b: [a["label"] for a in m.predict(xs, batch_size=b)], bundle_bytes(path), cascade)


def optimum_variant(bundle: Path, stripped: Path, work: Path) -> Variant:
    """optimum's default INT8 of the full student, as `edgedistill bench` builds and runs it (its tokenizer)."""
    paths, info = prepare_variants(read_subject(bundle, stripped), ["optimum-int8"], work, echo=lambda *_: None)
    if info["optimum-int8"]["status"] != "ok":
        raise SystemExit(f"optimum INT8 peer: {info['optimum-int8']['reason']}")
    runner = bench_variant("optimum-int8", paths, THREADS)
    size = info["optimum-int8"]["size_bytes"] + Path(paths["tokenizer"]).stat().st_size
    return Variant(lambda xs, b: runner.predict([Example(id="", input=x) for x in xs], batch_size=b), size)


def setfit_variant(path: Path, max_length: int) -> Variant:
    """SetFit's body exported to ONNX by setfit's own exporter (FP32; its whole-model export_onnx needs skl2onnx for
    the logistic head), run by onnxruntime; its embeddings normalized as the body's Normalize module does; the head in
    scikit-learn. Its `reference` is SetFit's own torch predict (accuracy() reports the share of equal answers)."""
    import onnxruntime as ort
    from setfit import SetFitModel  # deferred: optional bench dependency
    from setfit.exporters.onnx import OnnxSetFitModel, export_onnx_setfit_model

    model = SetFitModel.from_pretrained(str(path))
    body, pooler = model.model_body[0], model.model_body[1]
    tok, onnx_file = body.tokenizer, path / "body.onnx"
    if not onnx_file.exists():
        dummy = dict(tok(["It's a test."], return_tensors="pt", return_token_type_ids=True))
        wrapped = OnnxSetFitModel(body.auto_model, lambda x: pooler(x)["sentence_embedding"])
        saved(onnx_file, lambda tmp: export_onnx_setfit_model(wrapped, dummy, str(tmp), opset=17))
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    session = ort.InferenceSession(str(onnx_file), so, providers=["CPUExecutionProvider"])

    def predict(xs, batch):
        out = []
        for i in range(0, len(xs), batch):
            feeds = tok(xs[i : i + batch], padding=True, truncation=True, max_length=max_length, return_tensors="np")
            e = session.run(None, {k: v.astype("int64") for k, v in feeds.items()})[0]
            out += list(model.model_head.predict(e / ((e**2).sum(1, keepdims=True) ** 0.5)))
        return out

    size = sum(f.stat().st_size for f in (onnx_file, path / "model_head.pkl", path / "tokenizer.json"))
    return Variant(predict, size, reference=lambda xs: list(model.predict(xs, show_progress_bar=False)))


def bundle_bytes(bundle: Path) -> int:
    """The files EdgeModel.load reads (ONNX graphs, tokenizer), a cascade's static tier included."""
    m = json.loads((bundle / "manifest.json").read_text())
    own = sum((bundle / f).stat().st_size for f in loaded_files(m).values())
    return own + (bundle_bytes(bundle / m["cascade"]["bundle"]) if m.get("cascade") else 0)


def dir_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in Path(d).rglob("*") if p.is_file())


# ---------------------------------------------------------------- measurements


class OneByOne:
    """A time_interleaved runner answering the next test text alone per call, cycling; `order` keeps which."""

    def __init__(self, predict, texts: list[str]):
        self.predict, self.texts, self.order = predict, texts, []

    def call(self, _):
        self.order.append(len(self.order) % len(self.texts))
        self.predict([self.texts[self.order[-1]]], 1)


def accuracy(v: Variant, texts: list[str], gold: list[str]) -> dict:
    """Accuracy on gold, each input answered alone (as an app calls); a cascade's share answered by its static tier."""
    if v.tiers is None:
        labels = v.predict(texts, 1)
        out = {"accuracy": sum(p == g for p, g in zip(labels, gold)) / len(gold)}
        if v.reference is not None:
            out["agreement_with_own_predict"] = sum(a == b for a, b in zip(labels, v.reference(texts))) / len(gold)
        return out
    answers = [a for t in texts for a in v.tiers.predict([t], batch_size=1)]
    return {
        "accuracy": sum(a["label"] == g for a, g in zip(answers, gold)) / len(gold),
        "static_share": sum(a["tier"] == "static" for a in answers) / len(answers),
    }


def time_variants(variants: dict[str, Variant], texts: list[str], args) -> dict:
    """Interleaved: p50 of one batch-1 call and the mean per input over the test set (every input answered at least
    once), then items/s at batch 32."""
    one = {n: OneByOne(v.predict, texts) for n, v in variants.items()}
    b1 = time_interleaved(
        one, {n: None for n in one}, BenchConfig(min_time=args.min_time, min_iters=len(texts), warmup=0.5)
    )
    batches = [texts[i : i + 32] for i in range(0, len(texts) - 31, 32)] or [(texts * 32)[:32]]
    cycles = {n: itertools.cycle(batches) for n in variants}
    b32 = {n: Calls(lambda it, v=v: v.predict(next(it), 32)) for n, v in variants.items()}
    t32 = time_interleaved(b32, cycles, BenchConfig(min_time=args.min_time, min_iters=10, warmup=0.5))
    out = {}
    for n in variants:
        ns = b1[n]["times_ns"]
        per_input: dict[int, list[int]] = {}
        for i, t in zip(one[n].order[-len(ns) :], ns):
            per_input.setdefault(i, []).append(t)
        out[n] = {
            "p50_ms": summarize(ns, 1)["p50_ms"],
            "mean_per_input_ms": sum(sum(t) / len(t) for t in per_input.values()) / len(per_input) / 1e6,
            "items_s_b32": summarize(t32[n]["times_ns"], 32)["throughput_items_s"],
        }
    return out


def run_dataset(name: str, args) -> dict:
    """Build every seed's variants, then measure them; the dataset's results."""
    ds, work = DATASETS[name], args.work / name
    work.mkdir(parents=True, exist_ok=True)
    task, ann, test, held_out = ds.prepare(work, args)
    ds = ds._replace(recipe={**ds.recipe, **({"epochs": 1} if args.quick else {})})
    texts, labels, test_texts, gold = texts_and_labels(task, ann, test)
    built = {}
    for seed in args.seeds:
        d = work / f"seed{seed}"
        d.mkdir(exist_ok=True)
        tiers = build_tiers(d, task, ann, held_out, ds, seed, args)
        peers = build_peers(d, texts, labels, seed, args, ds.recipe["max-length"])
        built[seed] = {**tiers, OPTIMUM: tiers[FULL], **peers}
    rows: dict[str, dict] = {}
    for seed, models in built.items():
        d = work / f"seed{seed}"
        for n, path in models.items():
            v = load_variant(n, path, d, ds.recipe["max-length"])
            r = rows.setdefault(n, {"kind": "peer" if n in PEERS else "edgedistill", "size_bytes": v.size_bytes})
            for k, x in {**accuracy(v, test_texts, gold), "train_s": train_s(n, d)}.items():
                r.setdefault(k, []).append(x)
            if seed == args.seeds[0]:
                r["variant"] = v
    timed = time_variants({n: r.pop("variant") for n, r in rows.items()}, test_texts, args)
    for n, r in rows.items():
        r.update(timed[n])
    sizes = {"train_rows": len(texts), "test_rows": len(gold)}
    return {**sizes, "recipe": ds.recipe, "seeds": args.seeds, "timed_seed": args.seeds[0], "rows": rows}


# the training steps each variant took (an edgedistill tier needs the full student first); a peer: its own fit
BUILDS_ON = {
    FULL: ("student",),
    STATIC: ("student", "static"),
    LAYERS: ("student", "layers-3"),
    CASCADE: ("student", "static"),
    OPTIMUM: ("student",),
}


def train_s(name: str, d: Path) -> float | None:
    times = read_json(d / "times.json")
    steps = BUILDS_ON[CASCADE] if name.startswith(CASCADE) else BUILDS_ON.get(name, (name,))
    return sum(times[s] for s in steps) if all(s in times for s in steps) else None


# ---------------------------------------------------------------- the report


def acc(r: dict) -> float:
    return 100 * mean_sd(r["accuracy"])[0]


def targets(name: str, d: dict) -> list[str]:
    rows = d["rows"]
    static, m2v, full = rows[STATIC], rows[M2V], rows[FULL]
    ok = {True: "met", False: "missed"}
    out = [
        f"- Static tier vs model2vec's classifier: {acc(static):.1f} % vs {acc(m2v):.1f} %, p50 "
        f"{static['p50_ms']:.3f} vs {m2v['p50_ms']:.3f} ms: "
        f"{ok[acc(static) >= acc(m2v) and static['p50_ms'] <= m2v['p50_ms']]}."
    ]
    for n, cascade in rows.items():
        if not n.startswith(CASCADE):
            continue
        speed = full["mean_per_input_ms"] / cascade["mean_per_input_ms"]
        out.append(
            f"- {n[0].upper() + n[1:]} vs the full student: {acc(cascade) - acc(full):+.1f} pt, {speed:.1f}x its "
            f"throughput by mean per-input time (static tier answers {100 * mean_sd(cascade['static_share'])[0]:.0f} "
            "%): " + (ok[acc(cascade) >= acc(full) - 0.5 and speed >= 3] if name == "quickstart" else "reported") + "."
        )
    ours = {n: r for n, r in rows.items() if r["kind"] == "edgedistill"}
    for n, r in rows.items():
        if r["kind"] == "peer":
            by = [m for m, o in ours.items() if acc(o) >= acc(r) - 0.5 and fast(o) <= fast(r)]
            out.append(f"- {n} ({acc(r):.1f} %, {fast(r):.3f} ms) dominated: " + (", ".join(by) or "missed") + ".")
    return out


def fast(r: dict) -> float:
    """A variant's latency for dominance and the plot: the mean per input over the test set, one per call (a
    cascade's latency depends on the input; for the others it is within noise of the p50)."""
    return r["mean_per_input_ms"]


def render(res: dict) -> str:
    inv = res["invocation"]
    m = inv["machine"]
    isa = ", ".join(k for k, v in m["isa"].items() if v is True)
    lines = [
        "# The ladder: every tier against what a user would pick instead",
        "",
        f"Written by `{inv['command']}` on {describe(m)} (ISA: {isa}; load average {m['loadavg_1_5_15']} at the "
        f"start; {res['wall_s'] / 60:.0f} min, {inv['started']}).",
        "",
        f"Accuracy: on gold, mean ± sd over the seeds, each input answered alone. Latency: {THREADS} threads, the "
        "first seed's models interleaved (edge.timing); p50 b1 = one predict call on one text, tokenizing included; "
        "mean per input = the mean over the test set answered one per call (a cascade's latency depends on the "
        "input; the targets' 'as fast' and the plot use it for every variant); items/s at batch 32. "
        "MB: what a predict call loads (a bundle's ONNX graphs and tokenizer; a peer's "
        "saved model). Train s: the wall time of the steps the variant needed (edgedistill tiers include training "
        f"the full student). SetFit: {res['setfit_steps']} contrastive steps of {SETFIT_BATCH} pairs, then its "
        "logistic head; timed as its body's ONNX export (setfit's exporter, FP32 onnxruntime) with the head in "
        "scikit-learn (setfit's whole-model export needs skl2onnx for the head).",
        "",
    ]
    for name, d in res["datasets"].items():
        lines += [
            f"## {name}",
            "",
            f"{d['train_rows']} teacher-labelled training rows, {d['test_rows']} gold test rows, seeds {d['seeds']}; "
            f"student recipe: {d['recipe']}.",
            "",
            "| variant | accuracy % | p50 b1 ms | mean per-input ms | items/s b32 | MB | train s |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for n, r in d["rows"].items():
            a, sd = mean_sd([100 * x for x in r["accuracy"]])
            tr = [t for t in r["train_s"] if t is not None]  # None: a step run before times.json kept it
            share = f" (static answers {100 * mean_sd(r['static_share'])[0]:.0f} %)" if "static_share" in r else ""
            lines.append(
                f"| {n}{share} | {a:.1f} ± {sd:.1f} | {r['p50_ms']:.3f} | {r['mean_per_input_ms']:.3f} | "
                f"{r['items_s_b32']:,.0f} | {r['size_bytes'] / 1e6:.1f} | {f'{mean_sd(tr)[0]:.0f}' if tr else '–'} |"
            )
        lines += ["", "Targets:", "", *targets(name, d), ""]
    return "\n".join(lines + ["![accuracy against latency](ladder.png)", ""])


def plot(res: dict, path: Path) -> None:
    """Accuracy against the mean time per input (log), one point per variant, one panel per dataset (Agg)."""
    names = list(res["datasets"])
    fig = Figure(figsize=(6.5 * len(names), 4.8))
    for ax, name in zip(fig.subplots(1, len(names), squeeze=False)[0], names):
        for i, (n, r) in enumerate(res["datasets"][name]["rows"].items()):
            peer = r["kind"] == "peer"
            ax.scatter(fast(r), acc(r), marker="s" if peer else "o", color="tab:gray" if peer else "tab:blue")
            ax.annotate(n, (fast(r), acc(r)), fontsize=7, xytext=(4, 3 - 10 * (i % 2)), textcoords="offset points")
        ax.set(xscale="log", xlabel="mean time per input, one per call (ms, log)", ylabel="accuracy on gold (%)")
        ax.set_title(f"{name} (blue: edgedistill, gray: peers)", fontsize=10)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="quickstart,esnli", help=f"of {', '.join(DATASETS)}")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "edgedistill-ladder")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--dss-dir", type=Path, default=DSS_DIR)
    ap.add_argument("--esnli-rows", type=int, default=2000, help="PaLM-labelled e-SNLI valid rows to train on")
    ap.add_argument("--test-rows", type=int, default=500, help="e-SNLI test rows (seeded sample)")
    ap.add_argument("--setfit-steps", type=int, default=300, help="SetFit's contrastive steps (2 CPU cores: ~3 min)")
    ap.add_argument("--min-time", type=float, default=3.0, help="seconds of timed calls per variant and measure")
    ap.add_argument(
        "--cascade-agreements",
        default="0.95,0.9",
        help="more cascades beside export's default, each keeping this share of the full student's answers",
    )
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1 epoch, 20 SetFit steps, 0.5 s timing")
    args = ap.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.cascade_agreements = [float(a) for a in args.cascade_agreements.split(",") if a]
    if args.quick:
        args.setfit_steps, args.min_time = 20, 0.5
    offline()
    start, inv = time.time(), invocation(__file__)
    res = read_json(args.out / "ladder.json", {"datasets": {}})
    for name in args.datasets.split(","):
        res["datasets"][name] = run_dataset(name, args)
    res.update(invocation=inv, wall_s=round(time.time() - start), setfit_steps=args.setfit_steps)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ladder.json").write_text(json.dumps(res, indent=1))
    plot(res, args.out / "ladder.png")
    (args.out / "ladder.md").write_text(render(res))
    print(render(res))


if __name__ == "__main__":
    main()
