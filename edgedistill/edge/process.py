"""Cold start and memory from a fresh process: the child protocol `bench` and the device kit share.

The parent writes a JSON spec, spawns `COMMAND SPEC.json` and reads the last line of its stdout; the
child (`child_measure`) loads the model, predicts once from text, runs the largest shape and prints
its clock readings and peak RSS. Cold start is spawn -> first prediction, as the parent's clock saw it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time


def peak_rss_mb() -> float | None:
    """This process's peak resident memory. On Linux VmHWM, because ru_maxrss also counts the
    parent's memory image the child was forked from (it survives exec)."""
    try:
        for line in open("/proc/self/status", encoding="ascii"):
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    try:
        # deferred: Unix only
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)  # bytes on macOS, KiB elsewhere
    except ImportError:  # Windows
        try:
            # deferred: optional; without it no figure
            import psutil
        except ImportError:
            return None
        return round(psutil.Process().memory_info().peak_wset / 2**20, 1)


def rss_mb() -> float | None:
    """Current resident memory (needs psutil; None without it)."""
    try:
        # deferred: optional; without it no figure
        import psutil
    except ImportError:
        return None
    return round(psutil.Process().memory_info().rss / 2**20, 1)


def child_measure(load, first_predict, run_largest) -> dict:
    """The child's half: load() -> model; first_predict(model); run_largest(model). Clock and memory readings."""
    t_started = time.time()
    model = load()
    t_loaded = time.time()
    first_predict(model)
    t_first = time.time()
    rss_loaded = rss_mb()
    run_largest(model)
    return {
        "t_started": t_started,
        "t_loaded": t_loaded,
        "t_first": t_first,
        "rss_after_first_mb": rss_loaded,
        "peak_rss_mb": peak_rss_mb(),
    }


def child_entry(argv, measure) -> int | None:
    """For a script's main(): with argv == ["--child", SPEC.json], print measure(spec) as JSON and return 0."""
    if len(argv) == 2 and argv[0] == "--child":
        with open(argv[1], encoding="utf-8") as f:
            spec = json.load(f)
        print(json.dumps(measure(spec)), flush=True)
        return 0
    return None


def fresh_process(command: list[str], spec: dict, threads: int, shape, env=None) -> dict:
    """Run `command + ["--child", SPEC.json]` in a new process; its cold start and memory figures."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f, default=str)
    try:
        t_spawn = time.time()
        proc = subprocess.run([*command, "--child", f.name], capture_output=True, text=True, env=env)
        t_exit = time.time()
    finally:
        os.unlink(f.name)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"threads": threads, "error": f"child exited {proc.returncode}: " + " | ".join(tail)}
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "threads": threads,
        "shape": list(shape),
        "cold_start_s": round(r["t_first"] - t_spawn, 3),
        "startup_s": round(r["t_started"] - t_spawn, 3),
        "load_s": round(r["t_loaded"] - r["t_started"], 3),
        "first_predict_s": round(r["t_first"] - r["t_loaded"], 3),
        "rss_after_first_mb": r["rss_after_first_mb"],
        "peak_rss_mb": r["peak_rss_mb"],
        "process_s": round(t_exit - t_spawn, 3),
    }


def fresh_for_threads(entries: list[dict], threads: int) -> dict:
    """The successful fresh-process entry for a thread count, or {}."""
    return next((f for f in entries or [] if f.get("threads") == threads and "error" not in f), {})


def measured_fields(info: dict, threads: int) -> dict:
    """What a results.json row holds of its variant beside its timings: size, accuracy, and the peak memory and
    cold start of its fresh-process run at `threads` (bench and the device kit write the same fields)."""
    fresh = fresh_for_threads(info.get("fresh_process"), threads)
    return {
        "size_bytes": info.get("size_bytes"),
        "accuracy": info.get("accuracy"),
        "peak_rss_mb": fresh.get("peak_rss_mb"),
        "cold_start_s": fresh.get("cold_start_s"),
    }
