"""A real HTTP server on 127.0.0.1 that speaks the chat-completions shape and misbehaves on request.

The reply is steered by markers in the last user message, so one data file exercises every fault:
  FAULT429    first attempt: 429 with Retry-After        FAULT500     first attempt: 500
  FAULTSLOW   first attempt: slower than the timeout     FAULTDROP    first attempt: connection dropped
  FAULTJSON   first attempt: invalid JSON body           FAULTEMPTY   always: empty content
  FAULTDEAD   always: 503                                 GARBAGE      always: an unparseable answer
  ECHOAUTH    always: 401 whose body echoes the Authorization header (a careless server)
  ANSWER=<x>  answer x (default: "neutral")
  VOTES=x,y   sampled answers (temperature > 0): seed k answers the k-th; with n, choices k..k+n-1
  IGNOREN     the server ignores `n` (one choice, like llama.cpp)
  SCORE=a:0.6,b:0.4   the scoring reply's top logprobs (default: most mass on the option of ANSWER)
  SCOREDEAD   scoring requests (logprobs) always fail with 503
  BIASLAST    the scoring reply favours whichever option is listed last
  NOLOGPROBS  the server ignores `logprobs`       BADLOGPROBS  a malformed logprobs payload
  TERSE       the answer line alone, no explanation (what a small model often writes)
  BATCHERR    inside a batch only: an error line (HTTP 500) every time; live requests are answered
Setting `refuse_with` to an HTTP status answers every request with it (a server that is down, a bad key).
`cached_prefix` = N reports min(N, prompt tokens) as `usage.prompt_tokens_details.cached_tokens` (a provider's
prompt cache). A request with `service_tier` is answered with that tier.

The Batch API: POST /v1/files (multipart, purpose batch), GET /v1/files/{id}/content, POST /v1/batches, GET
/v1/batches/{id}, POST /v1/batches/{id}/cancel, GET /v1/batches (newest first, `limit`, `after`). A batch runs its
lines through the same replies as live requests (markers, attempt counts) when it is polled, after `batch_polls`
polls answered `in_progress`; `batch_hold` keeps every batch in progress. Injected faults: `fail_uploads` = N (the
next N uploads answer 500), `fail_batches` = N (the next N batches end `failed`), `expire_batches` = N (the next N
end `expired` with their first half answered, a `batch_expired` error line for every other one of the rest and no
line for the others), `batch_api = False` (no Batch endpoints: 404, like a local server). `batches` holds every
batch made, with `requests`: its custom_ids.

Every request is appended to the log file (one JSON line: key, outcome, time) as it finishes, which
is what the crash test reads. Run standalone: python tests/openai_stub.py --port 0 --log FILE.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int
    obj: object = None
    raw: bytes | None = None
    headers: dict | None = None
    outcome: str = "ok"
    action: str | None = None  # "drop": close the connection; "slow": answer after the client's timeout


class StubServer:
    def __init__(self, log_path=None, latency: float = 0.0, port: int = 0):
        self.log_path, self.latency = log_path, latency
        self.refuse_with: int | None = None
        self.cached_prefix = 0
        self.attempts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.service_tiers: list = []  # the service_tier of every chat request
        # the Batch API
        self.batch_api, self.batch_polls, self.batch_hold = True, 1, False
        self.fail_uploads = self.fail_batches = self.expire_batches = 0
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.cancels: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # keep test output clean
                pass

            def do_GET(self):
                path = urllib.parse.urlsplit(self.path)
                if path.path.startswith(("/v1/batches", "/v1/files")):
                    stub.batch_get(self, path.path, urllib.parse.parse_qs(path.query))
                else:
                    self._send(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})

            def do_POST(self):
                data = self.rfile.read(int(self.headers.get("content-length", 0)))
                path = urllib.parse.urlsplit(self.path).path
                if path.startswith(("/v1/batches", "/v1/files")):
                    stub.batch_post(self, path, data)
                else:
                    stub.handle(self, json.loads(data))

            def _send(self, status, obj=None, raw: bytes | None = None, headers=None):
                data = raw if raw is not None else json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def handle(self, h, body):
        key, n, r = self.respond(body, h.headers.get("authorization"))
        if r.action == "drop":
            h.close_connection = True
            h.connection.close()
        elif r.action == "slow":
            time.sleep(2.0)
            try:  # the client has usually hung up by now
                h._send(r.status, r.obj, r.raw, r.headers)
            except (BrokenPipeError, ConnectionResetError):
                pass
        else:
            h._send(r.status, r.obj, r.raw, r.headers)
        self._log(key, n_attempt=n, outcome=r.outcome)

    def respond(self, body, authorization=None, batch: bool = False) -> tuple[str, int, Reply]:
        """The reply to one chat request, live or a batch line: (its log key, its attempt, the Reply)."""
        text = body["messages"][-1]["content"]
        first_user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        sampling = {k: body.get(k) for k in ("temperature", "seed", "n", "logprobs", "max_tokens")}
        key = hashlib.sha256(json.dumps([body["messages"], sampling], sort_keys=True).encode()).hexdigest()[:16]
        with self.lock:
            n = self.attempts[key] = self.attempts.get(key, 0) + 1
            self.service_tiers.append(body.get("service_tier"))
        if self.latency and not batch:
            time.sleep(self.latency)
        marker = lambda m: m in first_user  # noqa: E731
        if self.refuse_with:
            return (
                key,
                n,
                Reply(
                    self.refuse_with,
                    {"error": {"message": f"refused by the test ({self.refuse_with})"}},
                    outcome=str(self.refuse_with),
                ),
            )
        if marker("BATCHERR") and batch:
            return key, n, Reply(500, {"error": {"message": "the batch worker failed on this line"}}, outcome="500")
        if marker("ECHOAUTH"):
            return (
                key,
                n,
                Reply(401, {"error": {"message": f"invalid key {authorization}", "type": "auth"}}, outcome="401"),
            )
        if marker("SCOREDEAD") and body.get("logprobs"):
            return key, n, Reply(503, {"error": {"message": "logprobs are down"}}, outcome="503")
        if marker("FAULTDEAD"):
            return key, n, Reply(503, {"error": {"message": "overloaded"}}, outcome="503")
        if marker("FAULT429") and n == 1:
            return (
                key,
                n,
                Reply(429, {"error": {"message": "rate limited"}}, headers={"retry-after": "0.2"}, outcome="429"),
            )
        if marker("FAULT500") and n == 1:
            return key, n, Reply(500, {"error": {"message": "boom"}}, outcome="500")
        if marker("FAULTSLOW") and n == 1:
            late = self._completion(body, "Answer: neutral\nExplanation: too late for anyone to read this.")
            return key, n, Reply(200, late, outcome="slow", action="slow")
        if marker("FAULTDROP") and n == 1:
            return key, n, Reply(0, outcome="drop", action="drop")
        if marker("FAULTJSON") and n == 1:
            return key, n, Reply(200, raw=b'{"id": "x", "choices": [ this is not json', outcome="badjson")
        if marker("FAULTEMPTY"):
            return key, n, Reply(200, self._completion(body, ""), outcome="empty")
        answer = re.search(r"ANSWER=(\S+)", first_user)
        answer = answer.group(1) if answer else "neutral"
        votes = re.search(r"VOTES=(\S+)", first_user)
        if votes and body.get("temperature", 0) > 0:
            seed, count = body.get("seed") or 1, 1 if marker("IGNOREN") else body.get("n") or 1
            options = votes.group(1).split(",")
            picks = [options[(seed - 1 + i) % len(options)] for i in range(count)]
            texts = [f"Answer: {a}\nExplanation: On reflection the answer is {a}, for this reason." for a in picks]
            for stop in body.get("stop") or []:  # generation ends where a stop string would begin
                texts = [t.split(stop)[0].rstrip() for t in texts]
            return key, n, Reply(200, self._completion(body, texts))
        if body.get("logprobs") and "correct option only" in text:
            return key, n, Reply(200, self._scored(body, first_user, text, answer, marker))
        if marker("GARBAGE"):
            content = "I would rather not say."
        elif "step by step" in text:
            content = f"First, we read the premise carefully. Then we compare it with the hypothesis. It is {answer}."
        elif "Therefore" in text:
            content = answer
        elif "Explain in one sentence why" in text:
            given = re.search(r"The correct answer is: (.+)", text).group(1)
            content = f"Because the text clearly points to {given} and nothing else."
        elif marker("TERSE"):
            content = f"Answer: {answer}"
        else:
            content = f"Answer: {answer}\nExplanation: The premise and hypothesis together show that it is {answer}."
        return key, n, Reply(200, self._completion(body, content))

    def _log(self, key, n_attempt, outcome):
        with self.lock:
            entry = {"key": key, "attempt": n_attempt, "outcome": outcome, "t": time.time()}
            self.requests.append(entry)
            if self.log_path:
                with open(self.log_path, "a") as f:
                    f.write(json.dumps(entry) + "\n")

    def _completion(self, body, content, logprobs=None):
        contents = content if isinstance(content, list) else [content]
        prompt = sum(len(m["content"].split()) for m in body["messages"])
        done = sum(len(c.split()) for c in contents)
        choices = [
            {"index": i, "message": {"role": "assistant", "content": c}, "finish_reason": "stop"}
            for i, c in enumerate(contents)
        ]
        if logprobs is not None:
            choices[0]["logprobs"] = logprobs
        reply = {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": done,
                "total_tokens": prompt + done,
                "prompt_tokens_details": {"cached_tokens": min(prompt, self.cached_prefix)},
            },
        }
        if body.get("service_tier"):
            reply["service_tier"] = body["service_tier"]
        return reply

    # --- the Batch API ----------------------------------------------------------------------------------

    def batch_post(self, h, path, data):
        if not self.batch_api:
            return h._send(404, {"error": {"message": f"Not Found: {path}"}})
        if path == "/v1/files":
            form = BytesParser(policy=policy.HTTP).parsebytes(
                b"Content-Type: " + h.headers["content-type"].encode() + b"\r\n\r\n" + data
            )
            fields = {
                p.get_param("name", header="content-disposition"): p.get_payload(decode=True) for p in form.iter_parts()
            }
            with self.lock:
                if self.fail_uploads:
                    self.fail_uploads -= 1
                    return h._send(500, {"error": {"message": "upload failed (injected)"}})
                return h._send(200, self._file(fields["file"], fields["purpose"].decode()))
        if path == "/v1/batches":
            body = json.loads(data)
            if body["input_file_id"] not in self.files:
                return h._send(400, {"error": {"message": f"no file {body['input_file_id']}"}})
            lines = [
                json.loads(x) for x in self.files[body["input_file_id"]]["bytes"].decode().splitlines() if x.strip()
            ]
            with self.lock:
                batch_id = f"batch_{len(self.batches) + 1:04d}"
                self.batches[batch_id] = {
                    "id": batch_id,
                    "object": "batch",
                    "endpoint": body["endpoint"],
                    "errors": None,
                    "input_file_id": body["input_file_id"],
                    "completion_window": body["completion_window"],
                    "status": "validating",
                    "output_file_id": None,
                    "error_file_id": None,
                    "created_at": int(time.time()),
                    "metadata": body.get("metadata"),
                    "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                    "requests": [x["custom_id"] for x in lines],
                    "_polls": 0,
                    "_order": len(self.batches),
                }
                return h._send(200, self._public(self.batches[batch_id]))
        match = re.fullmatch(r"/v1/batches/([^/]+)/cancel", path)
        if match and match.group(1) in self.batches:
            with self.lock:
                b = self.batches[match.group(1)]
                self.cancels.append(b["id"])
                if b["status"] not in ("completed", "expired", "failed", "cancelled"):
                    b["status"] = "cancelling"
                return h._send(200, self._public(b))
        h._send(404, {"error": {"message": f"Not Found: {path}"}})

    def batch_get(self, h, path, query):
        if not self.batch_api:
            return h._send(404, {"error": {"message": f"Not Found: {path}"}})
        if path == "/v1/batches":
            with self.lock:
                newest = sorted(self.batches.values(), key=lambda b: -b["_order"])
            after = query.get("after", [None])[0]
            if after:
                newest = newest[[b["id"] for b in newest].index(after) + 1 :]
            limit = int(query.get("limit", ["20"])[0])
            page = [self._public(b) for b in newest[:limit]]
            return h._send(
                200,
                {
                    "object": "list",
                    "data": page,
                    "has_more": len(newest) > limit,
                    "first_id": page[0]["id"] if page else None,
                    "last_id": page[-1]["id"] if page else None,
                },
            )
        match = re.fullmatch(r"/v1/files/([^/]+)/content", path)
        if match and match.group(1) in self.files:
            return h._send(200, raw=self.files[match.group(1)]["bytes"])
        match = re.fullmatch(r"/v1/batches/([^/]+)", path)
        if match and match.group(1) in self.batches:
            return h._send(
                200, self._public(self._advance(self.batches[match.group(1)], h.headers.get("authorization")))
            )
        h._send(404, {"error": {"message": f"Not Found: {path}"}})

    def _file(self, data: bytes, purpose: str) -> dict:
        file_id = f"file-{len(self.files) + 1:04d}"
        self.files[file_id] = {"id": file_id, "object": "file", "bytes": data, "purpose": purpose}
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": f"{file_id}.jsonl",
            "purpose": purpose,
            "status": "processed",
        }

    @staticmethod
    def _public(b: dict) -> dict:
        return {k: v for k, v in b.items() if not k.startswith("_") and k != "requests"}

    def _advance(self, b: dict, authorization) -> dict:
        """A poll: the batch moves on (validating, in_progress, then run to its end), unless held."""
        with self.lock:
            if b["status"] in ("completed", "expired", "failed", "cancelled"):
                return b
            if b["status"] == "cancelling":
                b["status"] = "cancelled"
                return b
            b["_polls"] += 1
            if self.batch_hold or b["_polls"] <= self.batch_polls:
                b["status"] = "in_progress"
                return b
            if self.fail_batches:
                self.fail_batches -= 1
                b["status"] = "failed"
                b["errors"] = {
                    "object": "list",
                    "data": [{"code": "invalid_request", "message": "failed by the test", "line": 1, "param": None}],
                }
                return b
            expire = self.expire_batches > 0
            self.expire_batches -= expire
        lines = [json.loads(x) for x in self.files[b["input_file_id"]]["bytes"].decode().splitlines() if x.strip()]
        run = lines[: len(lines) // 2] if expire else lines
        out, errors = [], []
        for i, line in enumerate(run):
            key, n, r = self.respond(line["body"], authorization, batch=True)
            self._log(key, n_attempt=n, outcome=r.outcome)
            if r.status == 200 and r.obj is not None:
                out.append(
                    {
                        "id": f"req_{i}",
                        "custom_id": line["custom_id"],
                        "error": None,
                        "response": {"status_code": 200, "request_id": f"r{i}", "body": r.obj},
                    }
                )
            else:
                obj = r.obj or {"error": {"message": f"the worker failed ({r.outcome})"}}
                status = r.status if r.status and r.status != 200 else 500  # a dropped or unreadable reply: 500
                errors.append(
                    {
                        "id": f"req_{i}",
                        "custom_id": line["custom_id"],
                        "error": None,
                        "response": {"status_code": status, "request_id": f"r{i}", "body": obj},
                    }
                )
        if expire:
            for line in lines[len(lines) // 2 :][::2]:
                errors.append(
                    {
                        "id": "expired",
                        "custom_id": line["custom_id"],
                        "response": None,
                        "error": {
                            "code": "batch_expired",
                            "message": "This request could not be executed before the completion window expired.",
                        },
                    }
                )
        with self.lock:
            if out:
                b["output_file_id"] = self._file("".join(json.dumps(x) + "\n" for x in out).encode(), "batch_output")[
                    "id"
                ]
            if errors:
                b["error_file_id"] = self._file("".join(json.dumps(x) + "\n" for x in errors).encode(), "batch_output")[
                    "id"
                ]
            b["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(lines) - len(out)}
            b["status"] = "expired" if expire else "completed"
        return b

    def _scored(self, body, first_user, text, answer, marker):
        """A one-token scoring reply with top logprobs, as OpenAI / llama.cpp / vLLM send them."""
        score = re.search(r"SCORE=(\S+)", first_user)
        if score:
            top = {tok: float(p) for tok, p in (kv.split(":") for kv in score.group(1).split(","))}
        else:  # most mass on the token that names ANSWER: its letter in the options list, else its first word
            letter = re.search(rf"\(([a-z])\) {re.escape(answer)}\n", text + "\n")
            top = {(letter.group(1) if letter else answer): 0.8, "(": 0.1, "Answer": 0.1}
            if marker("BIASLAST"):  # a small model's favourite: the last option listed, whatever it says
                last = re.findall(r"^\(([a-z])\) ", text, flags=re.MULTILINE)[-1]
                top = {last: 0.7, "(" + letter.group(1): 0.3} if last != letter.group(1) else {last: 1.0}
        best = max(top, key=top.get)
        entry = {
            "token": best,
            "logprob": math.log(top[best]),
            "bytes": None,
            "top_logprobs": [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in top.items()],
        }
        if marker("NOLOGPROBS"):
            return self._completion(body, best)
        if marker("BADLOGPROBS"):
            return self._completion(
                body, best, {"content": [{"token": best, "logprob": "high", "top_logprobs": "all of them"}]}
            )
        return self._completion(body, best, {"content": [entry]})

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log")
    ap.add_argument("--latency", type=float, default=0.0)
    args = ap.parse_args()
    s = StubServer(args.log, args.latency, args.port)
    print(s.port, flush=True)
    s.server.serve_forever()
