"""Timing model calls: interleaved time slices, warm-up excluded, and percentiles of the ns timings.

One loaded model or many: `edgedistill bench` times its variants side by side, the device kit times
the bundle alone, with the same function.
"""

from __future__ import annotations

import gc
import time

import numpy as np

PAUSE_S = 0.03  # between time slices of different runners (see time_interleaved)


def time_interleaved(runners: dict, prepared: dict, settings, on_round=None) -> dict[str, dict]:
    """Time each runner's `call` on its prepared inputs, interleaved in time slices.

    `settings` has min_time (s), min_iters and warmup (s): each runner runs at least min_time seconds and
    min_iters timed calls (a very slow one stops at max(10 x min_time, 30 s) with 3 calls), after at
    least warmup seconds and 2 calls of untimed warm-up. Returns {name: {"times_ns": [...]} or {"error": str}}."""
    out = {n: {"times_ns": []} for n in runners}
    live = dict(runners)
    for n, r in list(live.items()):  # warm-up: caches, lazy allocations, thread pools; not counted
        try:
            t_end, k = time.perf_counter() + settings.warmup, 0
            while k < 2 or time.perf_counter() < t_end:
                r.call(prepared[n])
                k += 1
        except Exception as e:  # noqa: BLE001 - one variant failing a shape must not stop the others
            out[n] = {"error": f"{type(e).__name__}: {e}"}
            live.pop(n)
    slice_s = min(0.5, max(0.05, settings.min_time / 10))
    cap_s = max(10 * settings.min_time, 30.0)  # a very slow variant stops here even short of min_iters
    spent = {n: 0 for n in live}
    gc.collect()
    gc_was = gc.isenabled()
    gc.disable()
    try:
        rnd = 0
        while True:
            pending = [
                n
                for n in live
                if (spent[n] < settings.min_time * 1e9 or len(out[n]["times_ns"]) < settings.min_iters)
                and not (spent[n] > cap_s * 1e9 and len(out[n]["times_ns"]) >= 3)
            ]
            if not pending:
                break
            shift = rnd % len(pending)  # rotate who goes first, so no variant always follows the same one
            for n in pending[shift:] + pending[:shift]:
                _slice(live[n], prepared[n], out[n]["times_ns"], spent, n, slice_s)
            rnd += 1
            if on_round:
                on_round()
    finally:
        if gc_was:
            gc.enable()
    return out


def _slice(runner, x, times: list, spent: dict, name: str, slice_s: float) -> None:
    # Let the previous variant's thread pool stop spinning before this one's slice: in an app only
    # one model runs, so its idle workers must not steal cores from the next.
    time.sleep(PAUSE_S)
    t_end = time.perf_counter_ns() + int(slice_s * 1e9)
    while True:
        t0 = time.perf_counter_ns()
        runner.call(x)
        dt = time.perf_counter_ns() - t0
        times.append(dt)
        spent[name] += dt
        if t0 + dt >= t_end:
            break


def summarize(times_ns: list[int], batch: int) -> dict:
    """Percentiles, mean and minimum in ms of one runner's timed calls, and items per second."""
    ms = np.array(times_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "iterations": int(ms.size),
        "p50_ms": round(float(p50), 4),
        "p90_ms": round(float(p90), 4),
        "p99_ms": round(float(p99), 4),
        "mean_ms": round(float(ms.mean()), 4),
        "min_ms": round(float(ms.min()), 4),
        "throughput_items_s": round(batch * 1000.0 / float(ms.mean()), 3),
    }


class Calls:
    """Wraps a plain function as a runner for time_interleaved (e.g. EdgeModel.run)."""

    def __init__(self, fn):
        self.call = fn
