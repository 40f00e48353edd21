"""How close `edgedistill annotate` gets to the ideal request rate of a server with a fixed latency.

Runs the test suite's OpenAI-compatible HTTP server (tests/openai_stub.py, a real socket on 127.0.0.1)
with a fixed per-request latency and annotates synthetic examples (zero-shot, one request each) at
several --concurrency levels. The ideal rate is min(concurrency, examples) / latency requests/s; the
gap is our overhead: the openai SDK, the SQLite cache commits, parsing, and (since the server shares
the 2 cores) the machine. The stub runs in its own process. Each level annotates
max(--examples, --rounds x concurrency) examples, so the rate is measured over at least --rounds
round trips, not dominated by the first and last; it starts from an empty cache, is repeated, and
the median is reported.

Variants, interleaved level by level so that a change in the machine's load hits them alike:
  group commit      the cache as shipped: one writer thread commits every response that arrived
                    during its previous commit in one fsync'd transaction (edgedistill/teacher/cache.py)
  before (per response)  the code before: each response and each log line its own fsync'd transaction,
                    run on the event loop, and the SDK's chat.completions.create (patched in this process only)
  synchronous=NORMAL  group commit without the fsync of each commit (survives kill -9, not power loss)

    python benchmarks/annotation_throughput.py [--latency 0.2] [--examples 128] [--rounds 8]
        [--concurrency 1 8 32 64] [--repeats 3] [--no-ablation]

Writes benchmarks/results/annotation_throughput.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, tests_module

os.environ.setdefault("TQDM_DISABLE", "1")  # before edgedistill (and tqdm) are imported: no progress bars

TASK = (
    'name: nli\ntype: classification\ninput: "{text}"\nlabels: [entailment, neutral, contradiction]\n'
    "gold: label\nid: id\n"
)


def load_stub():
    """The test suite's stub server (tests/openai_stub.py), without two artefacts of a test stub."""
    module = tests_module("openai_stub")

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
    """Cache commits and the time they take: on the writer thread (group commit) or on the event loop (per response)."""

    def __init__(self):
        from edgedistill.teacher.cache import _GroupWriter

        self.seconds, self.commits, self.writes = 0.0, 0, 0
        original = _GroupWriter._transaction

        def timed(db, statements, _original=original):
            t = time.perf_counter()
            try:
                return _original(db, statements)
            finally:
                self.seconds += time.perf_counter() - t
                self.commits += 1
                self.writes += sum(sql.startswith("INSERT OR REPLACE") for sql, _ in statements)

        _GroupWriter._transaction = staticmethod(timed)

    def snapshot(self) -> tuple[float, int, int]:
        return self.seconds, self.commits, self.writes


CLOCK = None


@contextlib.contextmanager
def before_group_commits():
    """The code before group commits: Cache.store as a put and a log line, each its own fsync'd transaction in
    autocommit mode, executed on the event loop, and requests sent through the SDK's chat.completions.create."""
    from edgedistill.teacher.cache import LOG_SQL, Cache
    from edgedistill.teacher.client import TeacherClient

    saved = Cache.store, Cache.log, TeacherClient._send

    def execute(self, sql, args):
        t = time.perf_counter()
        try:
            self.db.execute(sql, args)
        finally:
            CLOCK.seconds += time.perf_counter() - t
            CLOCK.commits += 1
            CLOCK.writes += sql.startswith("INSERT OR REPLACE")

    async def store(self, key, model, request, content, usage, cost_usd, latency_s, extra=None):
        execute(self, *Cache._put_row(key, model, request, content, usage, cost_usd, latency_s, extra))
        execute(self, LOG_SQL, (key, model, "ok", None, latency_s, time.time()))

    def log(self, key, model, outcome, detail=None, latency_s=None):
        execute(self, LOG_SQL, (key, model, outcome, detail, latency_s, time.time()))

    async def send(self, messages, sent):
        return await self.api.chat.completions.create(model=self.cfg.model, messages=messages, **sent)

    Cache.store, Cache.log, TeacherClient._send = store, log, send
    try:
        yield
    finally:
        Cache.store, Cache.log, TeacherClient._send = saved


@contextlib.contextmanager
def synchronous_normal():
    from edgedistill.teacher.cache import Cache

    Cache.SYNCHRONOUS = "NORMAL"
    try:
        yield
    finally:
        Cache.SYNCHRONOUS = "FULL"


VARIANTS = {
    "group commit": contextlib.nullcontext,
    "before (per response)": before_group_commits,
    "synchronous=NORMAL": synchronous_normal,
}


@contextlib.contextmanager
def server_process(latency: float):
    """The stub in its own process, as a real server would be: client and server do not share a GIL."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--latency", str(latency)], stdout=subprocess.PIPE, text=True
    )
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
    from edgedistill.teacher.annotate import AnnotateConfig, annotate

    out = work / f"run_c{concurrency}_{time.monotonic_ns()}"
    seconds, commits, writes = CLOCK.snapshot()
    data = work / f"data_{examples}.jsonl"
    if not data.exists():
        data.write_text(
            "".join(
                json.dumps({"id": f"e{i}", "text": f"example {i} ANSWER=entailment", "label": "entailment"}) + "\n"
                for i in range(examples)
            )
        )
    cfg = AnnotateConfig(
        task=str(work / "task.yaml"),
        data=str(data),
        out=str(out),
        model="stub",
        base_url=base_url,
        concurrency=concurrency,
        timeout=30,
        max_retries=0,
        scoring="none",
    )  # one request per input, as the results were measured
    start = time.perf_counter()
    summary = annotate(cfg, echo=lambda *_: None)
    wall = time.perf_counter() - start
    served = summary["requests_sent"]
    db = sqlite3.connect(out / "cache.sqlite")
    latencies = [r[0] for r in db.execute("SELECT latency_s FROM calls WHERE outcome = 'ok'")]
    db.close()
    errors = sorted(
        {json.loads(line).get("error", "")[:160] for line in (out / "annotations.jsonl").read_text().splitlines()}
        - {""}
    )
    if errors:
        print(
            f"  concurrency {concurrency}: {summary['failed']} failed, {summary['retries']} retries: {errors}",
            flush=True,
        )
    commits = CLOCK.commits - commits
    return {
        "examples": examples,
        "elapsed_s": summary["elapsed_s"],
        "wall_s": round(wall, 3),
        "requests": served,
        "ok": summary["ok"],
        "failed": summary["failed"],
        "retries": summary["retries"],
        "cache_write_s": round(CLOCK.seconds - seconds, 3),
        "commits": commits,
        "responses_per_commit": round((CLOCK.writes - writes) / commits, 2) if commits else None,
        "requests_per_s": round(served / summary["elapsed_s"], 2),
        "client_latency_mean_s": round(statistics.fmean(latencies), 4),
        "client_latency_p95_s": round(sorted(latencies)[int(0.95 * (len(latencies) - 1))], 4),
    }


def table(rows: list[dict]) -> list[str]:
    out = [
        "| concurrency | examples | requests/s | ideal requests/s | fraction of "
        "ideal | elapsed s | commits (responses each) | "
        "of which commits s | client latency mean / p95 s | failed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['concurrency']} | {r['examples']} | {r['requests_per_s']:.1f} | {r['ideal_requests_per_s']:.1f} | "
            f"{r['fraction_of_ideal']:.2f} | {r['elapsed_s']:.2f} | {r['commits']} ({r['responses_per_commit']}) | "
            f"{r['cache_write_s']:.2f} | {r['client_latency_mean_s']:.3f} / "
            f"{r['client_latency_p95_s']:.3f} | {r['failed']} |"
        )
    return out


def markdown(res: dict) -> str:
    m = res["machine"]
    runs = {name: {r["concurrency"]: r for r in rows} for name, rows in res["variants"].items()}
    levels = [r["concurrency"] for r in res["variants"]["group commit"]]
    out = [
        "# Annotation throughput against a fixed-latency server",
        "",
        f"Command: `{m['command']}`  ",
        f"Machine: {m['cpu_model']}, {m['usable_cpus']} cores, load average {m['loadavg_1_5_15']} before and "
        f"{m['loadavg_after']} after (shared with other work), Python "
        f"{m['python']}, openai {res['versions']['openai']}; "
        f"{res['date']}; wall time {res['wall_s']:.0f} s  ",
        "Server: tests/openai_stub.py (ThreadingHTTPServer on 127.0.0.1, its "
        f"own process), {res['latency_s']} s per request; "
        f"max({res['examples']}, {res['rounds']} x concurrency) synthetic "
        "examples per level, zero-shot (one request each), "
        f"empty cache, median of {res['repeats']} runs.",
        "",
        "## Fraction of the ideal rate",
        "",
        "| concurrency | " + " | ".join(runs) + " |",
        "|---:|" + "---:|" * len(runs),
    ]
    for c in levels:
        out.append(
            f"| {c} | "
            + " | ".join(f"{runs[v][c]['fraction_of_ideal']:.2f}" if c in runs[v] else "–" for v in runs)
            + " |"
        )
    out += [
        "",
        "group commit is the cache as shipped: a writer thread commits, in "
        "one fsync'd transaction, every response that "
        "arrived while its previous commit ran, and a request counts as done "
        "only once its commit is on disk (so a kill "
        "loses only requests in flight, which a re-run sends again), and the client sends through AsyncOpenAI.post. "
        "before (per response) is the code before that change: each response and each log line its own fsync'd "
        "transaction on the event loop (WAL, synchronous=FULL), sent through the SDK's chat.completions.create (whose "
        "request transform costs ~0.5-1 ms of CPU a request). synchronous=NORMAL is group commit without the fsync "
        "(survives kill -9, not an OS crash or power loss): what the fsync still costs.",
        "",
    ]
    top = max(levels)
    if "synchronous=NORMAL" in runs and top in runs["synchronous=NORMAL"]:
        g, n = runs["group commit"][top]["fraction_of_ideal"], runs["synchronous=NORMAL"][top]["fraction_of_ideal"]
        out += [
            f"At concurrency {top} the fsync of group commit costs "
            f"{max(n - g, 0):.2f} of the ideal (synchronous=NORMAL: "
            f"{n:.2f}); the rest of the gap to 1.0 is not the cache but the "
            "client's CPU (the openai SDK and httpx, about "
            "2 ms a request) on 2 cores shared with whatever else runs (see the load average).",
            "",
        ]
    for name, rows in res["variants"].items():
        out += [f"## {name}", "", *table(rows), ""]
    out += [
        "Ideal = min(concurrency, examples) / latency. Elapsed time covers the whole annotation loop "
        "(requests, the cache commits, parsing), not loading the data or writing the outputs. 'Commits' counts SQLite "
        "write transactions and the responses they held (a log line of a response is in the same one for group commit, "
        "its own for before); their time runs on the writer thread for group commit (the event loop goes on meanwhile) "
        "and on the event loop for before. The client is one Python process "
        "(asyncio) on a shared 2-core machine; at concurrency 64 its remaining cost is the openai SDK and httpx "
        "(about 2 ms of CPU a request).",
        "",
        "Two stub artefacts are removed for this benchmark: the listen backlog is raised from socketserver's default "
        "5 to 256 (with 5, concurrency 32 loses connections with ReadError, which a production server would accept), "
        "and TCP_NODELAY is set on the stub's sockets (without it Nagle + delayed ACK add ~45 ms to every request: "
        "0.251 s instead of 0.205 s at concurrency 1).",
        "",
    ]
    return "\n".join(out)


def run_level(base_url: str, work: Path, examples: int, c: int, repeats: int, latency: float, label: str) -> dict:
    runs = [one_run(base_url, work, examples, c) for _ in range(repeats)]
    median = sorted(runs, key=lambda r: r["requests_per_s"])[len(runs) // 2]
    ideal = min(c, examples) / latency
    row = {
        "concurrency": c,
        **median,
        "ideal_requests_per_s": round(ideal, 2),
        "fraction_of_ideal": round(median["requests_per_s"] / ideal, 3),
        "all_runs_requests_per_s": [r["requests_per_s"] for r in runs],
    }
    print(
        f"{label:<20} concurrency {c:3} ({examples} examples): "
        f"{row['requests_per_s']:7.1f} req/s of ideal {ideal:6.1f} "
        f"({row['fraction_of_ideal']:.2f}); runs {row['all_runs_requests_per_s']}; {row['commits']} commits",
        flush=True,
    )
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--examples", type=int, default=128, help="examples per level, at least (see --rounds)")
    ap.add_argument(
        "--rounds", type=int, default=8, help="examples per level are at least this many times the concurrency"
    )
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--no-ablation",
        action="store_true",
        help="group commit only: skip the per-response and synchronous=NORMAL runs",
    )
    ap.add_argument("--out", default=str(RESULTS / "annotation_throughput"))
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # internal: run the stub server only
    args = ap.parse_args()
    from importlib import metadata

    from edgedistill.atomic import write_json, write_text
    from edgedistill.edge.machine import machine_record

    if args.serve:
        return serve(args.latency)
    global CLOCK
    CLOCK = CommitClock()
    began = time.perf_counter()
    res = {
        "benchmark": "annotation_throughput",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_record(command=["python", "benchmarks/annotation_throughput.py"] + sys.argv[1:]),
        "versions": {p: metadata.version(p) for p in ("openai",)},
        "latency_s": args.latency,
        "examples": args.examples,
        "rounds": args.rounds,
        "repeats": args.repeats,
    }
    variants = ["group commit"] if args.no_ablation else list(VARIANTS)
    res["variants"] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp, server_process(args.latency) as base_url:
        work = Path(tmp)
        (work / "task.yaml").write_text(TASK)
        for c in args.concurrency:
            for v in variants:
                if v == "synchronous=NORMAL" and c == 1:  # at concurrency 1 the fsync is not the bottleneck
                    continue
                with VARIANTS[v]():
                    res["variants"][v].append(
                        run_level(base_url, work, max(args.examples, args.rounds * c), c, args.repeats, args.latency, v)
                    )
    res["results"] = res["variants"][
        "group commit"
    ]  # the cache as shipped, where earlier versions of this file kept it
    res["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    res["wall_s"] = round(time.perf_counter() - began, 1)
    write_json(args.out + ".json", res)
    write_text(args.out + ".md", markdown(res))
    print(f"wrote {args.out}.json and .md in {res['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
