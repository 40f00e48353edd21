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
Setting `refuse_with` to an HTTP status answers every request with it (a server that is down, a bad key).
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StubServer:
    def __init__(self, log_path=None, latency: float = 0.0, port: int = 0):
        self.log_path, self.latency = log_path, latency
        self.refuse_with: int | None = None
        self.attempts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # keep test output clean
                pass

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                stub.handle(self, body)

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
        text = body["messages"][-1]["content"]
        first_user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        sampling = {k: body.get(k) for k in ("temperature", "seed", "n", "logprobs", "max_tokens")}
        key = hashlib.sha256(json.dumps([body["messages"], sampling], sort_keys=True).encode()).hexdigest()[:16]
        with self.lock:
            n = self.attempts[key] = self.attempts.get(key, 0) + 1
        outcome = "ok"
        if self.latency:
            time.sleep(self.latency)
        marker = lambda m: m in first_user  # noqa: E731
        if self.refuse_with:
            outcome = str(self.refuse_with)
            h._send(self.refuse_with, {"error": {"message": f"refused by the test ({self.refuse_with})"}})
        elif marker("ECHOAUTH"):
            outcome = "401"
            h._send(401, {"error": {"message": f"invalid key {h.headers.get('authorization')}", "type": "auth"}})
        elif marker("SCOREDEAD") and body.get("logprobs"):
            outcome = "503"
            h._send(503, {"error": {"message": "logprobs are down"}})
        elif marker("FAULTDEAD"):
            outcome = "503"
            h._send(503, {"error": {"message": "overloaded"}})
        elif marker("FAULT429") and n == 1:
            outcome = "429"
            h._send(429, {"error": {"message": "rate limited"}}, headers={"retry-after": "0.2"})
        elif marker("FAULT500") and n == 1:
            outcome = "500"
            h._send(500, {"error": {"message": "boom"}})
        elif marker("FAULTSLOW") and n == 1:
            outcome = "slow"
            time.sleep(2.0)
            try:  # the client has usually hung up by now
                h._send(200, self._completion(body, "Answer: neutral\nExplanation: too late for anyone to read this."))
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif marker("FAULTDROP") and n == 1:
            outcome = "drop"
            h.close_connection = True
            h.connection.close()
        elif marker("FAULTJSON") and n == 1:
            outcome = "badjson"
            h._send(200, raw=b'{"id": "x", "choices": [ this is not json')
        elif marker("FAULTEMPTY"):
            outcome = "empty"
            h._send(200, self._completion(body, ""))
        else:
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
                h._send(200, self._completion(body, texts))
                self._log(key, n_attempt=n, outcome=outcome)
                return
            if body.get("logprobs") and "correct option only" in text:
                h._send(200, self._scored(body, first_user, text, answer, marker))
                self._log(key, n_attempt=n, outcome=outcome)
                return
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
            h._send(200, self._completion(body, content))
        self._log(key, n_attempt=n, outcome=outcome)

    def _log(self, key, n_attempt, outcome):
        with self.lock:
            entry = {"key": key, "attempt": n_attempt, "outcome": outcome, "t": time.time()}
            self.requests.append(entry)
            if self.log_path:
                with open(self.log_path, "a") as f:
                    f.write(json.dumps(entry) + "\n")

    @staticmethod
    def _completion(body, content, logprobs=None):
        contents = content if isinstance(content, list) else [content]
        prompt = sum(len(m["content"].split()) for m in body["messages"])
        done = sum(len(c.split()) for c in contents)
        choices = [{"index": i, "message": {"role": "assistant", "content": c}, "finish_reason": "stop"} for i, c in enumerate(contents)]
        if logprobs is not None:
            choices[0]["logprobs"] = logprobs
        return {"id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
                "choices": choices,
                "usage": {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done,
                          "prompt_tokens_details": {"cached_tokens": 0}}}

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
        entry = {"token": best, "logprob": math.log(top[best]), "bytes": None,
                 "top_logprobs": [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in top.items()]}
        if marker("NOLOGPROBS"):
            return self._completion(body, best)
        if marker("BADLOGPROBS"):
            return self._completion(body, best, {"content": [{"token": best, "logprob": "high", "top_logprobs": "all of them"}]})
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
