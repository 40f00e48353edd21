"""Which machine produced a benchmark: CPU, the SIMD features that decide the INT8 ranking, versions,
load and the exact command. Every results.json carries one, so numbers are never read without it.

Cheap by design: package versions come from installed metadata, so recording them imports neither
torch nor onnxruntime.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from importlib import metadata

# The features that change which INT8 kernels run (and so whether INT8 beats FP32 at all).
ISA_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "neon",
    "dotprod",
    "i8mm",
    "sve",
)
PACKAGES = (
    "edgedistill",
    "torch",
    "onnxruntime",
    "transformers",
    "optimum",
    "optimum-onnx",
    "onnx",
    "numpy",
    "tokenizers",
)


def _read_cpuinfo() -> tuple[str, set[str]]:
    """(CPU model name, set of feature flags) from /proc/cpuinfo; ('', set()) where there is none."""
    model, flags = "", set()
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        return platform.processor() or "", flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    if not model and "CPU implementer" in text:  # arm64 lists part numbers, not names
        model = "arm64 (implementer {})".format(text.split("CPU implementer")[1].split(":")[1].split()[0])
    return model, flags


def isa_features() -> dict:
    """{flag: bool} for ISA_FLAGS, plus the CPU model, from /proc/cpuinfo (the export stage reads the same)."""
    model, flags = _read_cpuinfo()
    arch = platform.machine().lower()
    if arch in ("aarch64", "arm64"):
        # arm64 Linux calls NEON "asimd" and dot-product "asimddp".
        flags |= {"neon"} if "asimd" in flags or arch == "arm64" else set()
        flags |= {"dotprod"} if "asimddp" in flags else set()
    out = {f: f in flags for f in ISA_FLAGS}
    out["avx_vnni"] = out["avx_vnni"] or "avxvnni" in flags
    return {"cpu_model": model or platform.processor() or "unknown", "isa": out}


def _is_arm() -> bool:
    return platform.machine().lower() in ("aarch64", "arm64")


def isa_preset(isa: dict) -> str:
    """The INT8 preset this CPU calls for: avx512_vnni, avx_vnni, avx512, avx2 or arm64.

    The one rule: the bundle's quantization (edgedistill/deploy/quantize.py), the optimum peer in bench and
    every results.json's `quantization_preset` all read it, so they never disagree."""
    if _is_arm():
        return "arm64"
    if isa.get("avx512_vnni"):
        return "avx512_vnni"
    if isa.get("avx_vnni"):  # VNNI's non-saturating dot product on 256-bit vectors (Alder Lake, Zen 4 ...)
        return "avx_vnni"
    if isa.get("avx512f"):
        return "avx512"
    return "avx2"


def cpu_preset(target: str = "auto", isa: dict | None = None) -> tuple[str, str, dict]:
    """(target arch, preset, isa flags) for --target auto|x86|arm64 on this machine."""
    isa = isa_features()["isa"] if isa is None else isa
    here = "arm64" if _is_arm() else "x86"
    if target == "auto":
        target = here
    if target == "arm64":
        return "arm64", "arm64", isa
    if here != "x86":  # exporting for x86 from an ARM machine: assume the common denominator
        return "x86", "avx2", isa
    return "x86", isa_preset(isa), isa


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def machine_record(threads=None, command: list[str] | None = None) -> dict:
    """Everything needed to interpret (and re-run) a benchmark on this machine."""
    cpu = isa_features()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu_model": cpu["cpu_model"],
        "arch": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "threads_used": list(threads) if isinstance(threads, (list, tuple)) else threads,
        "isa": cpu["isa"],
        "quantization_preset": isa_preset(cpu["isa"]),
        "memory_gb": _memory_gb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in PACKAGES},
        "loadavg_1_5_15": load,
        "command": shlex.join(command if command is not None else [os.path.basename(sys.argv[0])] + sys.argv[1:]),
    }


def describe(m: dict) -> str:
    """One line for a report: 'AMD EPYC, x86_64, 2 CPUs, avx512_vnni'."""
    isa = [k for k in ("avx512_vnni", "avx_vnni", "amx_int8", "avx2", "dotprod", "neon") if m.get("isa", {}).get(k)]
    simd = "/".join(isa[:2]) or "no SIMD int8"
    return f"{m.get('cpu_model', '?')}, {m.get('arch', '?')}, {m.get('usable_cpus', '?')} CPUs, {simd}"


def _busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (Linux /proc/stat), or None."""
    try:
        fields = open("/proc/stat", encoding="ascii").readline().split()[1:]
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in (fields + ["0"] * 8)[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    t = os.times()  # this process and its waited-for children (the fresh-process measurements)
    return t.user + t.system + t.children_user + t.children_system


class LoadMeter:
    """How busy the machine was with OTHER work while a benchmark ran: the figure that says whether
    its numbers were taken on a quiet machine. Start it before the run, `result()` after."""

    def __init__(self):
        self.t0, self.busy0, self.own0 = time_now(), _busy_cpu_seconds(), _own_cpu_seconds()
        try:
            self.load0 = [round(x, 2) for x in os.getloadavg()]
        except OSError:
            self.load0 = None

    def result(self) -> dict:
        elapsed = time_now() - self.t0
        busy = _busy_cpu_seconds()
        cpus = os.cpu_count() or 1
        other = None
        if busy is not None and self.busy0 is not None and elapsed > 0:
            other = max(0.0, (busy - self.busy0) - (_own_cpu_seconds() - self.own0)) / (elapsed * cpus)
        try:
            load1 = [round(x, 2) for x in os.getloadavg()]
        except OSError:
            load1 = None
        return {
            "seconds": round(elapsed, 1),
            "loadavg_start": self.load0,
            "loadavg_end": load1,
            "other_processes_cpu_share": None if other is None else round(other, 3),
        }


def time_now() -> float:
    return time.monotonic()
