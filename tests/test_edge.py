"""The torch-free core (edgedistill/edge/): its rules, and that it stands alone."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgedistill.edge import machine
from edgedistill.edge.answers import accuracy, gold_of, normalize_gold
from edgedistill.edge.families import answers_match
from edgedistill.edge.runtime import BundleError, validate_manifest
from edgedistill.measure.bench_report import failed_peers, place_labels, targets

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "edgedistill" / "edge"


# ---------------------------------------------------------------------------------------------
# The core imports nothing outside itself, and nothing that is not there


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield 0, a.name
        elif isinstance(node, ast.ImportFrom):
            yield node.level, node.module or ""


def test_core_modules_import_only_stdlib_numpy_onnxruntime_tokenizers_and_each_other():
    # transformers: families.auto_model_class, lazily
    allowed = {"numpy", "onnxruntime", "tokenizers", "transformers", "psutil", "resource"}
    for path in CORE.glob("*.py"):
        for level, name in _imports(path):
            top = name.split(".")[0]
            if level:
                assert level == 1 and (CORE / f"{top}.py").exists(), f"{path.name}: from {'.' * level}{name}"
            else:
                assert top in allowed or top in sys.stdlib_module_names, f"{path.name}: import {name}"


def test_machine_imports_resolve_and_no_error_is_swallowed():
    """machine.py imported a module that does not exist (`.cpu`) inside `except Exception: pass`."""
    path = CORE / "machine.py"
    for level, name in _imports(path):
        if level:
            base = ".".join(["edgedistill", "edge"][: 3 - level])  # the package `level` dots name
            full = f"{base}.{name}" if name else base
            assert importlib.util.find_spec(full) is not None, f"machine.py: from {'.' * level}{name} does not exist"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for h in (n for n in ast.walk(tree) if isinstance(n, ast.ExceptHandler)):
        broad = h.type is None or (isinstance(h.type, ast.Name) and h.type.id in ("Exception", "BaseException"))
        silent = all(isinstance(s, ast.Pass) for s in h.body)
        assert not (broad and silent), f"machine.py:{h.lineno}: a broad except that swallows the error"


# ---------------------------------------------------------------------------------------------
# One INT8 preset per CPU: the bundle, the optimum peer and results.json agree


@pytest.fixture
def avx_vnni_cpu(monkeypatch):
    """An Alder Lake-like x86 CPU: AVX2 and AVX-VNNI, no AVX-512."""
    monkeypatch.setattr(machine, "_read_cpuinfo", lambda: ("Fake Core i7-12700", {"avx2", "avx_vnni", "fma", "sse4_2"}))
    monkeypatch.setattr(machine.platform, "machine", lambda: "x86_64")


def test_avx_vnni_cpu_gets_one_preset_for_bundle_optimum_peer_and_record(avx_vnni_cpu):
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    from edgedistill.deploy.quantize import PRESETS, detect_preset
    from edgedistill.measure.bench import optimum_recipe

    target, bundle_preset, isa = detect_preset("auto")
    assert (target, bundle_preset) == ("x86", "avx_vnni") and isa["avx_vnni"] and not isa["avx512f"]
    peer_preset, method = optimum_recipe()
    assert peer_preset == bundle_preset == machine.machine_record(threads=[1], command=["x"])["quantization_preset"]
    # the peer's recipe is optimum's VNNI one: full-range weights like the bundle's, not avx2's reduce_range
    qconfig = getattr(AutoQuantizationConfig, method)(is_static=False)
    assert method == "avx512_vnni" and qconfig.reduce_range is False is PRESETS[bundle_preset]["reduce_range"]


def test_presets_of_other_cpus(monkeypatch):
    monkeypatch.setattr(machine.platform, "machine", lambda: "x86_64")
    assert machine.isa_preset({"avx2": True}) == "avx2"
    assert machine.isa_preset({"avx2": True, "avx512f": True}) == "avx512"
    assert machine.isa_preset({"avx512f": True, "avx512_vnni": True, "avx_vnni": True}) == "avx512_vnni"
    assert machine.cpu_preset("arm64", {"avx2": True})[:2] == ("arm64", "arm64")
    monkeypatch.setattr(machine.platform, "machine", lambda: "aarch64")
    assert machine.cpu_preset("auto", {"neon": True})[:2] == ("arm64", "arm64")
    assert machine.cpu_preset("x86", {"neon": True})[:2] == ("x86", "avx2")


# ---------------------------------------------------------------------------------------------
# Answers: the edgedistill rule, everywhere


def test_numbers_compare_by_value():
    assert answers_match("numeric", "12,000", "12000") and answers_match("numeric", "( 84. 0 / 2. 0 )", "42")
    assert not answers_match("numeric", "41", "42") and not answers_match("numeric", "dog", "dog")
    assert answers_match("classification", "dog", "dog") and not answers_match("classification", "12,000", "12000")
    preds = [{"answer": "12000"}, {"answer": "( 84. 0 / 2. 0 )"}, {"answer": "7"}, {"answer": "many"}]
    assert accuracy("numeric", preds, ["12,000", "42", "8", "8"]) == 0.5
    assert accuracy("numeric", preds, []) is None


def test_gold_normalisation():
    labels = ["entailment", "neutral", "contradiction"]
    assert (
        normalize_gold("classification", labels, 2)
        == "contradiction"
        == normalize_gold("classification", labels, " Contradiction")
    )
    assert (
        normalize_gold("multiple-choice", None, "b", ["x", "y"])
        == "y"
        == normalize_gold("multiple-choice", None, "1", ["x", "y"])
    )
    assert normalize_gold("multiple-choice", None, "Y", ["x", "y"]) == "y"
    assert normalize_gold("numeric", None, " 12,000 ") == "12,000"
    with pytest.raises(ValueError, match="unknown label 'maybe'"):
        normalize_gold("classification", labels, "maybe")
    with pytest.raises(ValueError, match="none of the choices"):
        normalize_gold("multiple-choice", None, "c", ["x", "y"])
    task = {"type": "multiple-choice", "choices": "options", "gold": "answer"}
    assert gold_of(task, {"options": '["x", "y"]', "answer": "B"}) == "y"
    assert gold_of(task, {"options": ["x", "y"], "answer": ""}) is None
    with pytest.raises(ValueError, match="data.jsonl:3: answer: 'q' is none"):
        gold_of(task, {"options": ["x", "y"], "answer": "q"}, "data.jsonl:3")


GOLD_FILES = [  # (task, rows, the golds both readers give); the gold field's forms a data file may hold
    (
        {"name": "t", "type": "classification", "input": "{x}", "labels": ["a", "b", "c"], "gold": "y"},
        [{"x": "p", "y": 0}, {"x": "q", "y": "2"}, {"x": "r", "y": "B"}, {"x": "s", "y": " c "}, {"x": "t", "y": ""}],
        ["a", "c", "b", "c", None],
    ),
    (
        {"name": "t", "type": "multiple-choice", "input": "{x}", "choices": "o", "gold": "y"},  # CSV-style options too
        [
            {"x": "p", "o": ["yes", "no"], "y": "b"},
            {"x": "q", "o": '["yes", "no"]', "y": "B"},
            {"x": "r", "o": "yes|no", "y": "1"},
            {"x": "s", "o": "Yes | No", "y": "no"},
            {"x": "t", "o": ["yes", "no"]},
        ],
        ["no", "no", "no", "No", None],
    ),
    (
        {"name": "t", "type": "numeric", "input": "{x}", "gold": "y"},
        [{"x": "p", "y": "42"}, {"x": "q", "y": " 12,000 "}],
        ["42", "12,000"],
    ),
]


@pytest.mark.parametrize("spec,rows,golds", GOLD_FILES, ids=["classification", "multiple-choice", "numeric"])
def test_bench_and_the_device_kit_read_the_same_golds_from_a_data_file(tmp_path, spec, rows, golds):
    """bench reads a data file with edgedistill.data (load_examples); the device kit (export/run_bundle.py), which has
    no edgedistill.data, reads it with edge.answers (read_records, gold_of, the task as a bundle's manifest holds it):
    each row's gold comes out the same through both, and a gold that is none of the answers is refused by both, at its
    line."""
    from edgedistill.data import load_examples
    from edgedistill.edge.answers import gold_of, read_records
    from edgedistill.errors import UserError
    from edgedistill.task import task_from_dict

    task = task_from_dict(spec)
    manifest_task = task.to_dict()  # what export writes into manifest.json (deploy.export._task_dict)
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [e.gold for e in load_examples(task, path)] == golds
    assert [gold_of(manifest_task, r, f"{path}:{n}") for n, r in read_records(path)] == golds
    if task.type == "numeric":
        return  # any non-empty text is a numeric gold to the device kit; data.py's stricter check: test_task_data
    bad = {**rows[0], "y": "maybe"}
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(UserError, match=r"d\.jsonl:2: y: .*'maybe'"):
        load_examples(task, path)
    with pytest.raises(ValueError, match=r"d\.jsonl:2: y: .*'maybe'"):
        [gold_of(manifest_task, r, f"{path}:{n}") for n, r in read_records(path)]


# ---------------------------------------------------------------------------------------------
# The "fastest variant" target needs every peer measured


def _run(variants, rows):
    return {
        "machine": {"isa": {"avx512_vnni": True}},
        "variants": variants,
        "results": [
            {"variant": v, "batch_size": 1, "seq_len": 128, "threads": 2, "status": "ok", "p50_ms": ms}
            for v, ms in rows
        ],
    }


def test_fastest_target_fails_when_a_peer_failed_to_build():
    variants = [
        {"name": "torch-fp32", "status": "ok"},
        {"name": "bundle", "status": "ok"},
        {"name": "optimum-int8", "status": "failed", "reason": "optimum quantization failed: RuntimeError: boom"},
    ]
    met = {t["target"]: t for t in targets(_run(variants, [("torch-fp32", 10.0), ("bundle", 2.0)]))}
    fastest = met["fastest variant measured"]
    assert fastest["met"] is False and fastest["value"].startswith("not measured: optimum INT8 (default) failed")
    assert "boom" in fastest["value"]
    peer = met["not slower than optimum INT8 (default)"]
    assert peer["met"] is False and peer["value"].startswith("not measured")
    # all peers failed: still said, not silently dropped
    only = targets(
        _run(
            [{"name": "bundle", "status": "ok"}, {"name": "ort-fp32", "status": "failed", "reason": "x"}],
            [("bundle", 2.0)],
        )
    )
    assert [(t["target"], t["met"]) for t in only] == [
        ("not slower than ORT FP32", False),
        ("fastest variant measured", False),
    ]


def test_fastest_target_with_skipped_or_measured_peers():
    variants = [
        {"name": "torch-fp32", "status": "ok"},
        {"name": "bundle", "status": "ok"},
        {"name": "ort-fp32", "status": "skipped", "reason": "seq2seq"},
    ]
    met = {t["target"]: t for t in targets(_run(variants, [("torch-fp32", 10.0), ("bundle", 2.0)]))}
    assert met["fastest variant measured"] == {
        **met["fastest variant measured"],
        "met": True,
        "value": "bundle (edgedistill)",
    }
    # a peer whose timing failed at the headline shape is failed there too
    run = _run(variants, [("torch-fp32", 10.0), ("bundle", 2.0)])
    run["results"].append(
        {"variant": "torch-int8", "batch_size": 1, "seq_len": 128, "threads": 2, "status": "failed", "error": "OOM"}
    )
    assert failed_peers(run, {"batch_size": 1, "seq_len": 128, "threads": 2}) == {
        "torch-int8": "failed at this shape (OOM)"
    }
    assert {t["target"]: t["met"] for t in targets(run)}["fastest variant measured"] is False


# ---------------------------------------------------------------------------------------------
# tradeoff.png labels


def _boxes(points, sizes, offsets):
    return [
        (x + dx - w / 2, y + dy - h / 2, x + dx + w / 2, y + dy + h / 2)
        for (x, y), (w, h), (dx, dy) in zip(points, sizes, offsets)
    ]


def _overlap(a, b):
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def test_labels_of_close_points_do_not_overlap():
    # the quickstart's bundle and ORT FP32 sit 2 points apart at nearly the same accuracy
    points = [(200.0, 150.0), (202.0, 151.0), (205.0, 149.0), (400.0, 100.0)]
    sizes = [(70.0, 22.0)] * 4
    preferred = [(16, 22), (-14, 18), (14, -30), (10, 14)]
    offsets = place_labels(points, sizes, preferred=preferred, marker=6.0, bounds=(0, 0, 600, 300))
    boxes = _boxes(points, sizes, offsets)
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not _overlap(boxes[i], boxes[j]), (i, j, offsets)
        for x, y in points:  # no label covers a point
            assert not _overlap(boxes[i], (x - 6, y - 6, x + 6, y + 6)), (i, offsets)
        assert 0 <= boxes[i][0] and boxes[i][2] <= 600 and 0 <= boxes[i][1] and boxes[i][3] <= 300
    # a lone point keeps its preferred offset (the near edge of the label at 10, 14)
    assert offsets[3] == (10 + 35.0, 14 + 11.0)


def test_labels_stay_inside_the_axes():
    offsets = place_labels([(595.0, 295.0)], [(80.0, 20.0)], marker=5.0, bounds=(0, 0, 600, 300))
    ((x0, y0, x1, y1),) = _boxes([(595.0, 295.0)], [(80.0, 20.0)], offsets)
    assert x0 >= 0 and x1 <= 600 and y0 >= 0 and y1 <= 300


# ---------------------------------------------------------------------------------------------
# The device kit defines none of the shared helpers again


def test_run_bundle_defines_no_shared_helper():
    tree = ast.parse((ROOT / "export" / "run_bundle.py").read_text(encoding="utf-8"))
    defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    shared = {
        "same_number",
        "normalize_gold",
        "summarize",
        "shape_feeds",
        "synthetic_texts",
        "peak_rss_mb",
        "rss_mb",
        "time_calls",
        "time_interleaved",
        "machine_record",
        "isa_features",
        "fit",
        "encode",
        "load_runtime",
    }
    assert not defined & shared


def test_duplicates_finds_nothing_shared_between_export_and_edgedistill():
    try:
        proc = subprocess.run(
            ["duplicates", "--most", "200", "--seconds", "60"], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
    except FileNotFoundError:
        pytest.skip("the duplicates tool is not on PATH here")
    pairs = [line for line in proc.stdout.splitlines() if line.startswith("D")]
    assert not [p for p in pairs if "export/" in p and "edgedistill/" in p], json.dumps(pairs, indent=1)


# ---------------------------------------------------------------------------------------------
# The manifest rules (edge/runtime.validate_manifest) for each family; tests/test_fuzz_bundle.py tampers real bundles


def _manifest(family: str, **changes) -> dict:
    sha = {"sha256": "0" * 64, "bytes": 1}
    models = {
        "seq2seq": {
            "encoder": "encoder_model.onnx",
            "decoder": "decoder_model.onnx",
            "decoder_with_past": "decoder_with_past_model.onnx",
        }
    }.get(family, {"model": "model.onnx"})
    m = {
        "format_version": 1,
        "family": family,
        "max_length": 128,
        "task": {"name": "t", "type": {"seq2seq": "numeric"}.get(family, "multiple-choice"), "input": "{question}"},
        "tokenizer": {"file": "tokenizer.json", "pad_token_id": 0},
        "models": models,
        "labels": None,
        "files": {name: sha for name in [*models.values(), "tokenizer.json"]},
        "quantization": {"mode": "none"},
    }
    if family == "seq2seq":
        m.update(decoder_start_token_id=0, eos_token_id=1)
    return {**m, **changes}


def test_manifest_rules_of_seq2seq_and_multiple_choice_bundles():
    for family in ("seq2seq", "multiple-choice"):
        validate_manifest(_manifest(family))
    no_past = _manifest("seq2seq")
    del no_past["models"]["decoder_with_past"]
    validate_manifest(no_past)  # bert2bert: no decoder with past keys/values
    bad = [
        (_manifest("seq2seq", decoder_start_token_id="0"), r"`decoder_start_token_id` must be a token id"),
        (_manifest("seq2seq", eos_token_id=None), r"`eos_token_id` must be a token id"),
        (_manifest("seq2seq", max_answer_tokens=0), r"`max_answer_tokens` must be an integer from 1"),
        (_manifest("seq2seq", models={"encoder": "encoder_model.onnx"}), r"`models\.decoder` must be the file"),
        (_manifest("multiple-choice", labels=["a", "a"]), r"`labels` must be a list .* or null"),
        (
            _manifest("multiple-choice", task={"type": "multiple-choice", "input": "{q}", "choices": 3}),
            r"`task\.choices` must be the name",
        ),
        (_manifest("multiple-choice", task={"type": "regression", "input": "{q}"}), r"`task\.type` must be one of"),
        (_manifest("multiple-choice", files={"model.onnx": "0" * 64}), r'`files\["model\.onnx"\]` must be an object'),
    ]
    for manifest, message in bad:
        with pytest.raises(BundleError, match=message):
            validate_manifest(manifest)


def test_unsealed_export_stages_skip_only_the_hash_listing():
    """The export loads its own stages (files: {}) with verify=False: every rule holds but the listing in `files`."""
    stage = _manifest("multiple-choice", files={})
    validate_manifest(stage, hashed=False)
    with pytest.raises(BundleError, match=r"`models\.model` is 'model\.onnx', which `files` does not list"):
        validate_manifest(stage)
    with pytest.raises(BundleError, match=r"`models\.model` must be a file name inside the bundle"):
        validate_manifest({**stage, "models": {"model": "/abs/model.onnx"}}, hashed=False)
