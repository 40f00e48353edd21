"""A broken pipeline.yaml fails before any work, naming the key path and the fix."""

import json
from pathlib import Path

import pytest

from edgedistill.errors import UserError
from edgedistill.pipeline import fingerprints, load_pipeline

TASK = "name: t\ntype: classification\ninput: '{text}'\nlabels: [a, b]\ngold: label\n"


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "task.yaml").write_text(TASK)
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": "hello", "label": "a"}) + "\n")
    return tmp_path


def load(folder, text):
    (folder / "p.yaml").write_text("task: task.yaml\ndata: d.jsonl\n" + text)
    return load_pipeline(folder / "p.yaml")


@pytest.mark.parametrize(
    "extra, match",
    [
        ("teacher: {modle: gpt-4o}\n", r"teacher\.modle: unknown key; allowed here: model"),
        ("student: {epochs: three}\n", r"student\.epochs: expected float, got 'three'"),
        ("bench: {seq_lens: 128}\n", r"bench\.seq_lens: expected a list"),
        ("bench: {seq_lens: [128, x]}\n", r"bench\.seq_lens\[1\]: expected int"),
        ("eval_data: missing.jsonl\n", r"eval_data: file .*missing.jsonl does not exist"),
        ("student: {mode: multi}\n", r"student\.mode: 'multi' is not one of"),
        (
            "student: {candidates: [standard]}\n",
            r"p\.yaml:3: student\.candidates\[0\]: .standard. is not a mode auto can train",
        ),
        ("export: {quantize: int4}\n", r"export\.quantize: 'int4' is not one of"),
        ("teacher: 3\n", r"teacher: expected a mapping"),
        ("teacher: {scoring: logits}\n", r"teacher\.scoring: 'logits' is not one of letter, word, none"),
        ("teacher: {calibration: zhao}\n", r"teacher\.calibration: 'zhao' is not one of"),
        ("teacher: {votes: 0}\n", r"p\.yaml:3: teacher\.votes: 0 is out of range; give a value at least 1"),
        ("student: {min_steps: -5}\n", r"p\.yaml:3: student\.min_steps: -5 is out of range; give a value at least 0"),
    ],
)
def test_broken_pipeline_names_the_key(folder, extra, match):
    with pytest.raises(UserError, match=match):
        load(folder, extra)


def test_bad_data_row_fails_at_load(folder):
    (folder / "d.jsonl").write_text('{"text": "x", "label": "zzz"}\n')
    with pytest.raises(UserError, match=r"d.jsonl:1: label: unknown label"):
        load(folder, "")


def test_fingerprints_chain(folder):
    base = fingerprints(load(folder, ""))
    edited = fingerprints(load(folder, "export: {quantize: none}\n"))
    assert [s for s in base if base[s] != edited[s]] == ["export", "bench", "report"]
    (folder / "d.jsonl").write_text(json.dumps({"text": "changed", "label": "b"}) + "\n")
    assert all(base[s] != v for s, v in fingerprints(load(folder, "")).items())


def test_the_shipped_quickstart_pipeline_loads():
    from pathlib import Path

    pipe = load_pipeline(Path(__file__).resolve().parents[1] / "examples" / "quickstart" / "pipeline.yaml")
    assert pipe.student.base is None and pipe.teacher.price_in == 0.0
    assert pipe.run.name == "quickstart"


def test_base_is_not_a_yaml_key_but_student_base_is(folder):
    assert load(folder, "student: {base: ./task.yaml}\n").student.base == "./task.yaml"
    with pytest.raises(UserError, match=r"^.*p.yaml:3: base: unknown key"):
        load(folder, "base: /elsewhere\n")


def test_each_stage_config_carries_its_section(folder):
    from edgedistill.pipeline import stage_configs

    configs = stage_configs(load(folder, "student: {mode: label-only, compare: [standard], epochs: 2}\n"))
    train = configs["train"]
    assert [c.mode for c in train] == ["label-only", "standard"] and all(c.epochs == 2 for c in train)
    assert configs["annotate"][0].out == configs["export"][0].model.rsplit("/", 1)[0]


def test_a_compress_section_turns_the_stage_on_and_export_reads_its_output(folder):
    from edgedistill.pipeline import stage_configs

    off = stage_configs(load(folder, ""))
    assert off["compress"] == [] and off["export"][0].model.endswith("/stripped")
    on = stage_configs(load(folder, "compress: {layers: [3], latency_budget: 2.5}\n"))
    assert (
        on["compress"][0].layers == [3]
        and on["compress"][0].latency_budget == 2.5
        and on["compress"][0].eval_data is None
    )
    assert on["export"][0].model.endswith("/compressed") and on["compress"][0].out == on["export"][0].model
    with pytest.raises(UserError, match=r"compress\.layers\[0\]: expected int"):
        load(folder, "compress: {layers: [three]}\n")
    more = stage_configs(load(folder, "compress: {layers: [3], inputs: more.jsonl}\n"))["compress"][0]
    assert more.inputs == str(Path(folder) / "more.jsonl")  # relative to pipeline.yaml, as every path there
    assert on["compress"][0].inputs is None
    assert on["compress"][0].common_words == 2000
    assert stage_configs(load(folder, "compress: {common_words: 0}\n"))["compress"][0].common_words == 0
    with pytest.raises(UserError, match=r"compress\.common_words: -1 is out of range; give a value at least 0"):
        load(folder, "compress: {common_words: -1}\n")
    assert (
        stage_configs(load(folder, "compress: {into: [default], label_weight: 0.5}\n"))["compress"][0].label_weight
        == 0.5
    )
    assert on["compress"][0].ensemble is None
    assert stage_configs(load(folder, "compress: {into: [default], ensemble: [runs/b/stripped]}\n"))["compress"][
        0
    ].ensemble == [str(Path(folder) / "runs/b/stripped")]  # relative to pipeline.yaml
    with pytest.raises(UserError, match=r"compress\.label_weight: 1.0 is out of range; give a value in \[0, 1\)"):
        load(folder, "compress: {label_weight: 1}\n")


def test_student_pooling_reaches_train(folder):
    from edgedistill.pipeline import stage_configs

    assert stage_configs(load(folder, ""))["train"][0].pooling == "auto"
    assert stage_configs(load(folder, "student: {pooling: cls}\n"))["train"][0].pooling == "cls"


@pytest.mark.parametrize("value, expected", [("6", "6"), ("auto", "auto"), ("'0'", "0")])
def test_export_int8_fp32_takes_a_count_or_auto(folder, value, expected):
    """`int8_fp32: 6` is a YAML int, `auto` a string: both reach ExportConfig as the CLI's text."""
    from edgedistill.pipeline import stage_configs

    cfg = stage_configs(load(folder, f"export: {{int8_fp32: {value}}}\n"))["export"][0]
    assert str(cfg.int8_fp32) == expected


def test_export_smooth_reaches_export_and_is_checked(folder):
    from edgedistill.choices import SMOOTH_ALPHA
    from edgedistill.pipeline import stage_configs

    assert stage_configs(load(folder, ""))["export"][0].smooth == SMOOTH_ALPHA
    assert stage_configs(load(folder, "export: {smooth: 0}\n"))["export"][0].smooth == 0
    with pytest.raises(UserError, match=r"export\.smooth: 2.0 is out of range; give a value in \[0, 1\]"):
        load(folder, "export: {smooth: 2}\n")


def test_dry_run_prints_a_base_url_without_its_credentials(folder):
    from click.testing import CliRunner

    from edgedistill.cli import main

    (folder / "p.yaml").write_text(
        "task: task.yaml\ndata: d.jsonl\nteacher: {base_url: 'http://bob:s3cr3t@h:1/v1?api-key=k9'}\n"
    )
    r = CliRunner().invoke(main, ["run", str(folder / "p.yaml"), "--dry-run"])
    assert r.exit_code == 0 and "base_url='http://***@h:1/v1?api-key=***'" in r.output, r.output
    assert "s3cr3t" not in r.output and "k9" not in r.output


@pytest.mark.parametrize(
    "text, match",
    [
        (
            "teacher:\n  votes: 2\nteacher:\n  votes: 3\n",
            r"p\.yaml:5: teacher: the key appears twice \(first on line 3\)",
        ),
        ("teacher: {concurrency: 0}\n", r"p\.yaml:3: teacher\.concurrency: 0 is out of range; give a value at least 1"),
        ("bench:\n  threads:\n    - 1\n    - 0\n", r"p\.yaml:6: bench\.threads\[1\]: 0 is out of range"),
        ("student: {lr: .inf}\n", r"p\.yaml:3: student\.lr: inf is not a number in range"),
        ("teacher: [1, [2, [3]]]\n", r"p\.yaml:3: teacher: expected a mapping of keys, got list"),
        ("teacher: {model: x, max_cost: 1}\n", r"p\.yaml:3: teacher\.max_cost: no list price known for model 'x'"),
    ],
)
def test_a_value_out_of_range_names_its_line(folder, text, match):
    with pytest.raises(UserError, match=match):
        load(folder, text)


def test_a_deeply_nested_or_non_utf8_file_is_refused_by_name(folder):
    (folder / "p.yaml").write_bytes(b"task: task.yaml\ndata: d.jsonl\nteacher: {model: \xff}\n")
    with pytest.raises(UserError, match=r"p\.yaml:3: not valid UTF-8 \(byte 0xff\)"):
        load_pipeline(folder / "p.yaml")
    (folder / "p.yaml").write_text("task: task.yaml\nteacher: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(UserError, match=r"p\.yaml:2: (nested too deeply|not valid YAML)"):
        load_pipeline(folder / "p.yaml")


def test_every_number_of_every_stage_config_has_one_declared_range():
    """bounds.BOUNDS names only real fields, and every int or float field but a seed has a range: a new setting
    without one fails here instead of reaching the stage as -1."""
    import dataclasses
    import typing

    from edgedistill.bounds import BOUNDS
    from edgedistill.compress.compress import CompressConfig
    from edgedistill.deploy.export import ExportConfig
    from edgedistill.distill.train import TrainConfig
    from edgedistill.measure.bench import BenchConfig
    from edgedistill.teacher.annotate import AnnotateConfig

    def leaves(t) -> set:  # int | None -> {int, None}; list[int] -> {int}
        args = typing.get_args(t)
        return set().union(*map(leaves, args)) if args else {t}

    unbounded = {"seed"}
    for stage, cls in [
        ("annotate", AnnotateConfig),
        ("train", TrainConfig),
        ("compress", CompressConfig),
        ("export", ExportConfig),
        ("bench", BenchConfig),
    ]:
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        assert set(BOUNDS[stage]) <= names, f"{stage}: {set(BOUNDS[stage]) - names} are no fields of {cls.__name__}"
        numeric = {n for n in names if {int, float} & leaves(hints[n])}
        assert numeric - unbounded <= set(BOUNDS[stage]), (
            f"{stage}: no range for {numeric - unbounded - set(BOUNDS[stage])}"
        )


def test_max_failed_decides_pass_or_fail_and_redoes_nothing(folder):
    assert fingerprints(load(folder, "teacher: {max_failed: 0.5}\n")) == fingerprints(load(folder, ""))
    assert fingerprints(load(folder, "teacher: {votes: 2}\n"))["annotate"] != fingerprints(load(folder, ""))["annotate"]


@pytest.mark.parametrize("run_dir", ["afile", "afile/inner/run"])
def test_a_run_dir_that_is_or_lies_in_a_file_names_its_line(folder, run_dir):
    (folder / "afile").write_text("not a folder\n")
    with pytest.raises(UserError, match=r"p\.yaml:3: run_dir: .*afile is a file; give a folder"):
        load(folder, f"run_dir: {run_dir}\n")


def test_aliases_in_a_pipeline_file_are_refused_by_line(folder):
    """pipeline.yaml is read by the same reader as task.yaml: a few nested aliases could expand to billions of
    values."""
    (folder / "p.yaml").write_text("task: task.yaml\ndata: d.jsonl\nbench:\n  batch_sizes: &b [1, 8]\n  seq_lens: *b\n")
    with pytest.raises(UserError, match=r"p\.yaml:5: the alias \*b repeats an anchored value"):
        load_pipeline(folder / "p.yaml")


def test_a_flag_and_a_pipeline_key_are_built_from_the_config_dataclass():
    """options.py builds both from the dataclass: its default, type, choices and range, and nothing else."""
    import dataclasses

    import click
    from click.testing import CliRunner

    from edgedistill.choices import Pooling
    from edgedistill.options import field_option, section

    def built(epochs_default):
        @dataclasses.dataclass
        class Config:
            epochs: float = epochs_default
            pooling: Pooling = Pooling.MEAN
            batch_sizes: list[int] = dataclasses.field(default_factory=lambda: [1, 8])

        @click.command()
        @field_option("train", Config, "epochs")
        @field_option("train", Config, "pooling")
        @field_option("bench", Config, "batch_sizes")
        def cmd(**kw):
            click.echo(json.dumps(kw))

        return cmd, section(Config, "s", ("epochs", "pooling", "batch_sizes"))()

    for default in (3.0, 7.0):
        cmd, sect = built(default)
        got = json.loads(CliRunner().invoke(cmd, []).output)
        assert got == {"epochs": default, "pooling": "mean", "batch_sizes": [1, 8]}
        assert (sect.epochs, sect.pooling, sect.batch_sizes) == (default, Pooling.MEAN, [1, 8])
    result = CliRunner().invoke(cmd, ["--epochs", "0", "--pooling", "max", "--batch-sizes", "1,0"])
    assert result.exit_code == 2 and "x>0" in result.output  # the range is bounds.BOUNDS["train"]["epochs"]
    assert (
        "'max' is not one of 'auto', 'mean', 'cls', 'two-tower'" in CliRunner().invoke(cmd, ["--pooling", "max"]).output
    )
    assert "item 1: 0 is out of range" in CliRunner().invoke(cmd, ["--batch-sizes", "1,0"]).output


@pytest.mark.parametrize("stage", ["annotate", "train", "compress", "export", "bench"])
def test_every_flag_and_pipeline_key_of_a_stage_has_its_config_default(stage):
    """The shipped commands and sections: each flag and key that sets a config field shows that field's default."""
    import dataclasses

    import click

    from edgedistill.cli import main
    from edgedistill.options import base_type, default_of, hints
    from edgedistill.pipeline import Pipeline
    from edgedistill.stages import BY_NAME

    section_cls = base_type(hints(Pipeline)[BY_NAME[stage].section])  # CompressSection | None: CompressSection
    config = section_cls.stage_config
    names = {f.name for f in dataclasses.fields(config)}
    command = main.get_command(click.Context(main), stage)
    flags = [p for p in command.params if p.name in names and not p.required]
    assert len(flags) >= 4
    for p in flags:
        want = default_of(config, p.name)
        if isinstance(want, list) and not getattr(p, "multiple", False):
            want = ",".join(map(str, want))
        assert p.default == (None if p.multiple and want is None else want), p.name
    for f in dataclasses.fields(section_cls):
        name = section_cls.renamed.get(f.name, f.name)
        if name in names:
            assert default_of(section_cls, f.name) == default_of(config, name), f.name


def test_reading_a_pipeline_and_its_dry_run_load_no_torch(folder):
    """`run --help` and `run --dry-run` start at once: the stage configs are torch-free, the stages load it."""
    import subprocess
    import sys

    (folder / "p.yaml").write_text("task: task.yaml\ndata: d.jsonl\n")
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom edgedistill.cli import main\n"
        f"r = CliRunner().invoke(main, ['run', {str(folder / 'p.yaml')!r}, '--dry-run'])\n"
        "assert r.exit_code == 0, r.output\nassert '[train] TrainConfig(' in r.output and 'Mode.' not in r.output\n"
        "print(sorted(m for m in ('torch', 'transformers', 'optimum') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
