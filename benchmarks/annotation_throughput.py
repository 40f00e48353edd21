"""How close `edgedistill annotate` gets to the ideal request rate of a server with a fixed latency.

Runs the test suite's OpenAI-compatible HTTP server (tests/openai_stub.py, a real socket on 127.0.0.1)
with a fixed per-request latency and annotates synthetic examples (zero-shot, one request each) at
several --concurrency levels. The ideal rate is min(concurrency, examples) / latency requests/s; the
gap is our overhead: the openai SDK, the SQLite cache commit per response, parsing, and (since the
server shares the 2 cores) the machine. The stub runs in its own process. Each level starts from an empty cache and is repeated;
the median is reported.

    python benchmarks/annotation_throughput.py [--latency 0.2] [--examples 128] [--concurrency 1 8 32] [--repeats 3]

Writes benchmarks/results/annotation_throughput.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")

from edgedistill.annotate import AnnotateConfig, annotate  # noqa: E402
from edgedistill.atomic import write_json, write_text  # noqa: E402
from edgedistill.machine import machine_record  # noqa: E402

TASK = ('name: nli\ntype: classification\ninput: "{text}"\nlabels: [entailment, neutral, contradiction]\n'
        'gold: label\nid: id\n')


def load_stub():
    spec = importlib.util.spec_from_file_location("openai_stub", ROOT / "tests" / "openai_stub.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    class Server(module.ThreadingHTTPServer):
        # socketserver's default listen backlog is 5: at concurrency 32 the kernel drops connections
        # (the client sees ReadError), which real servers (uvicorn 2048, nginx 511) do not do.
        request_queue_size = 256

    class Handler(module.BaseHTTPRequestHandler):
        # Without TCP_NODELAY the stub's separate header and body writes meet the client's delayed ACK:
        # ~45 ms extra on every request, an artefact of the stub, not of the client.
        disable_nagle_algorithm = True

    module.ThreadingHTTPServer, module.BaseHTTPRequestHandler = Server, Handler
    return module.StubServer


class CommitClock:
    """Time spent in the cache's durable writes: they run on the event loop and hold up every request."""

    def __init__(self):
        from edgedistill.cache import Cache

        self.seconds = 0.0
        for name in ("put", "log"):
            original = getattr(Cache, name)

            def timed(*a, _original=original, **k):
                t = time.perf_counter()
                try:
                    return _original(*a, **k)
                finally:
                    self.seconds += time.perf_counter() - t

            setattr(Cache, name, timed)


CLOCK = None


@contextlib.contextmanager
def server_process(latency: float):
    """The stub in its own process, as a real server would be: client and server do not share a GIL."""
    proc = subprocess.Popen([sys.executable, __file__, "--serve", "--latency", str(latency)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait()


def serve(latency: float) -> None:
    server = load_stub()(latency=latency)
    print(server.port, flush=True)
    server.server.serve_forever()


def one_run(base_url: str, work: Path, examples: int, concurrency: int) -> dict:
    out = work / f"run_c{concurrency}_{time.monotonic_ns()}"
    committed = CLOCK.seconds
    cfg = AnnotateConfig(task=str(work / "task.yaml"), data=str(work / "data.jsonl"), out=str(out), model="stub",
                         base_url=base_url, concurrency=concurrency, timeout=30, max_retries=0,
                         scoring="none")  # one request per input, as the results were measured
    start = time.perf_counter()
    summary = annotate(cfg, echo=lambda *_: None)
    wall = time.perf_counter() - start
    served = summary["requests_sent"]
    db = sqlite3.connect(out / "cache.sqlite")
    latencies = [r[0] for r in db.execute("SELECT latency_s FROM calls WHERE outcome = 'ok'")]
    db.close()
    errors = sorted({json.loads(line).get("error", "")[:160] for line in (out / "annotations.jsonl").read_text().splitlines()} - {""})
    if errors:
        print(f"  concurrency {concurrency}: {summary['failed']} failed, {summary['retries']} retries: {errors}", flush=True)
    return {"elapsed_s": summary["elapsed_s"], "wall_s": round(wall, 3), "requests": served, "ok": summary["ok"],
            "failed": summary["failed"], "retries": summary["retries"], "cache_write_s": round(CLOCK.seconds - committed, 3),
            "requests_per_s": round(served / summary["elapsed_s"], 2),
            "client_latency_mean_s": round(statistics.fmean(latencies), 4),
            "client_latency_p95_s": round(sorted(latencies)[int(0.95 * (len(latencies) - 1))], 4)}


def table(rows: list[dict]) -> list[str]:
    out = ["| concurrency | requests/s | ideal requests/s | fraction of ideal | elapsed s | of which cache writes s | client latency mean / p95 s | failed |",
           "|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        out.append(f"| {r['concurrency']} | {r['requests_per_s']:.1f} | {r['ideal_requests_per_s']:.1f} | "
                   f"{r['fraction_of_ideal']:.2f} | {r['elapsed_s']:.2f} | {r['cache_write_s']:.2f} | "
                   f"{r['client_latency_mean_s']:.3f} / {r['client_latency_p95_s']:.3f} | {r['failed']} |")
    return out


def markdown(res: dict) -> str:
    m = res["machine"]
    out = ["# Annotation throughput against a fixed-latency server", "",
           f"Command: `{m['command']}`  ",
           f"Machine: {m['cpu_model']}, {m['usable_cpus']} cores, load average {m['loadavg_1_5_15']} (shared with other work), "
           f"Python {m['python']}, openai {res['versions']['openai']}; {res['date']}  ",
           f"Server: tests/openai_stub.py (ThreadingHTTPServer on 127.0.0.1, its own process), {res['latency_s']} s per request; "
           f"{res['examples']} synthetic examples, zero-shot (one request each), empty cache, median of {res['repeats']} runs.", "",
           *table(res["results"]), "",
           "Ideal = min(concurrency, examples) / latency. Elapsed time covers the whole annotation loop "
           "(requests, the durable SQLite commit of each response, parsing), not loading the data or writing the outputs. "
           "'Cache writes' is the time spent in Cache.put/Cache.log (WAL, synchronous=FULL: an fsync'd transaction each); "
           "they run on the event loop, so at high concurrency they serialise with everything else. "
           "The client is one Python process (asyncio) on a shared 2-core machine.", ""]
    if res.get("ablation_synchronous_normal"):
        out += ["## Ablation: cache with PRAGMA synchronous=NORMAL", "",
                "Same runs with the cache's SQLite set to synchronous=NORMAL (patched in this process only). In WAL mode "
                "that still survives a crash or kill -9 of the process; only an OS crash or power loss can drop the last "
                "commits.", "", *table(res["ablation_synchronous_normal"]), ""]
    out += ["Two stub artefacts are removed for this benchmark: the listen backlog is raised from socketserver's default "
            "5 to 256 (with 5, concurrency 32 loses connections with ReadError, which a production server would accept), "
            "and TCP_NODELAY is set on the stub's sockets (without it Nagle + delayed ACK add ~45 ms to every request: "
            "0.251 s instead of 0.205 s at concurrency 1).", ""]
    return "\n".join(out)


def measure(base_url: str, work: Path, examples: int, levels: list[int], repeats: int, latency: float, label: str) -> list[dict]:
    rows = []
    for c in levels:
        runs = [one_run(base_url, work, examples, c) for _ in range(repeats)]
        median = sorted(runs, key=lambda r: r["requests_per_s"])[len(runs) // 2]
        ideal = min(c, examples) / latency
        rows.append({"concurrency": c, **median, "ideal_requests_per_s": round(ideal, 2),
                     "fraction_of_ideal": round(median["requests_per_s"] / ideal, 3),
                     "all_runs_requests_per_s": [r["requests_per_s"] for r in runs]})
        print(f"{label:<22} concurrency {c:3}: {rows[-1]['requests_per_s']:7.1f} req/s of ideal {ideal:6.1f} "
              f"({rows[-1]['fraction_of_ideal']:.2f}); runs {rows[-1]['all_runs_requests_per_s']}", flush=True)
    return rows


def synchronous_normal():
    from edgedistill.cache import Cache

    original = Cache.__init__

    def init(self, path):
        original(self, path)
        self.db.execute("PRAGMA synchronous=NORMAL")

    Cache.__init__ = init


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--examples", type=int, default=128)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-ablation", action="store_true", help="skip the synchronous=NORMAL cache runs")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "annotation_throughput"))
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # internal: run the stub server only
    args = ap.parse_args()
    from importlib import metadata

    if args.serve:
        return serve(args.latency)
    global CLOCK
    CLOCK = CommitClock()
    res = {"benchmark": "annotation_throughput", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": machine_record(command=["python", "benchmarks/annotation_throughput.py"] + sys.argv[1:]),
           "versions": {p: metadata.version(p) for p in ("openai",)},
           "latency_s": args.latency, "examples": args.examples, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp, server_process(args.latency) as base_url:
        work = Path(tmp)
        (work / "task.yaml").write_text(TASK)
        (work / "data.jsonl").write_text("".join(json.dumps({"id": f"e{i}", "text": f"example {i} ANSWER=entailment", "label": "entailment"}) + "\n"
                                                 for i in range(args.examples)))
        res["results"] = measure(base_url, work, args.examples, args.concurrency, args.repeats, args.latency, "cache as shipped")
        if not args.no_ablation:
            synchronous_normal()
            levels = [c for c in args.concurrency if c > 1]  # at concurrency 1 the cache is not the bottleneck
            res["ablation_synchronous_normal"] = measure(base_url, work, args.examples, levels, args.repeats, args.latency,
                                                         "synchronous=NORMAL")
    res["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    write_json(args.out + ".json", res)
    write_text(args.out + ".md", markdown(res))
    print(f"wrote {args.out}.json and .md")


if __name__ == "__main__":
    main()
