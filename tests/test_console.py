"""console.quiet: library chatter (Python warnings, logging, native writes to fd 2) goes to the stage's log
file; the tool's own lines (stdout) and progress bars (the real stderr) reach the terminal."""

import subprocess
import sys
import textwrap

CHATTY = textwrap.dedent("""
    import logging, os, sys, warnings
    from edgedistill.console import progress, quiet

    verbose = sys.argv[2] == "verbose"
    with quiet(sys.argv[1], verbose=verbose):
        warnings.warn("a library warning")
        logging.getLogger("transformers.modeling_utils").warning("Some weights were newly initialized")
        logging.warning("Please consider to run pre-processing before quantization")
        print("a stray print to stderr", file=sys.stderr)
        os.write(2, b"[W:onnxruntime] a native log line\\n")
        print("the tool's own line")
        bar = progress(3, "training", unit="step")
        bar.update(3)
        bar.close()
    print("after the stage", file=sys.stderr)
""")
CHATTER = ("a library warning", "newly initialized", "pre-processing", "a stray print", "native log line")


def run(tmp_path, verbose: bool):
    log = tmp_path / "logs" / "train.log"
    r = subprocess.run(
        [sys.executable, "-c", CHATTY, str(log), "verbose" if verbose else "quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return r, log.read_text()


def test_chatter_goes_to_the_log_and_the_tool_to_the_terminal(tmp_path):
    r, log = run(tmp_path, verbose=False)
    for line in CHATTER:
        assert line in log, line
        assert line not in r.stdout + r.stderr, line
    assert r.stdout == "the tool's own line\n"
    assert "training: 100%" in r.stderr and "training" not in log  # the bar is the user's, not the log's
    assert "after the stage" in r.stderr  # stderr is back once the stage ends


def test_verbose_prints_the_chatter_and_still_logs_it(tmp_path):
    r, log = run(tmp_path, verbose=True)
    for line in CHATTER:
        assert line in log, line
        assert line in r.stderr, line
    assert r.stdout == "the tool's own line\n"


def test_a_stage_that_said_nothing_leaves_no_log_behind(tmp_path):
    """A command refused before any library spoke (a bad flag) must not leave RUN/logs/ in a folder it never wrote."""
    from edgedistill.console import quiet

    log = tmp_path / "new-run" / "logs" / "train.log"
    with quiet(log):
        pass
    assert not (tmp_path / "new-run").exists()
    (tmp_path / "run" / "logs").mkdir(parents=True)
    (tmp_path / "run" / "logs" / "train.log").write_text("an earlier run's output\n")
    with quiet(tmp_path / "run" / "logs" / "train.log"):
        pass
    assert (tmp_path / "run" / "logs" / "train.log").read_text() == "an earlier run's output\n"
