"""The teacher client: the openai SDK against any OpenAI-compatible server, with retries and the cache.

Retries are our own (SDK max_retries=0) so that every attempt is counted and logged, Retry-After is
honoured exactly, and empty or unparseable bodies (which the SDK does not retry) are retried too.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import re
import time
import urllib.parse
from dataclasses import dataclass, field

import openai
from openai.types.chat import ChatCompletion

from .cache import Cache, request_key
from .cost import cost_usd, scaled

RETRY_STATUS = {408, 409, 429}  # plus every 5xx


@dataclass
class ClientConfig:
    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 120.0
    max_retries: int = 6
    backoff_base: float = 1.0  # seconds; doubles per attempt, with jitter
    backoff_max: float = 60.0
    temperature: float = 0.0
    max_tokens: int = 512
    price: tuple[float, float] | None = None  # list price, USD per 1M tokens in, out
    cached_price: float | None = None  # USD per 1M cached prompt tokens (None: billed as any prompt token)
    service_tier: str | None = None  # sent as `service_tier` ("flex"); None sends nothing
    tier_factor: float = 1.0  # the share of the list price that a reply served in `service_tier` bills


class TeacherError(Exception):
    """A request that failed for good (after retries); its text never contains the API key."""

    def __init__(self, message: str, attempts: int):
        super().__init__(message)
        self.attempts = attempts  # HTTP requests sent before giving up


@dataclass
class Completion:
    content: str
    usage: dict
    cost_usd: float | None
    cached: bool
    attempts: int = 0  # HTTP requests sent for this completion (0 on a cache hit)
    latency_s: float = 0.0  # the server's time for it, when it was paid for (a cache hit keeps the recorded one)
    extra: dict = field(default_factory=dict)  # "choices": every choice's text (n > 1); "logprobs": see token_logprobs
    recorded_cost: float | None = None  # what it cost when it was paid for (live, batch or flex), now or earlier

    @property
    def choices(self) -> list[str]:
        return self.extra.get("choices") or [self.content]

    @property
    def logprobs(self):
        """Per generated token {"token", "logprob", "top": {token: logprob}}; [] if the server sent none, None if
        malformed."""
        return self.extra.get("logprobs", [])


SECRET_QUERY = re.compile(r"key|token|secret|password|sig", re.IGNORECASE)  # query parameters redact_url hides
BEARER = re.compile(r"(bearer\s+)\S+", re.IGNORECASE)  # an Authorization header a careless server echoes


def redact_url(url: str | None) -> str | None:
    """`url` as it may be written or printed: credentials (`user:pass@`) and key-like query values as ***."""
    if not url:
        return url
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = urllib.parse.urlencode([(k, "***" if SECRET_QUERY.search(k) else v) for k, v in pairs], safe="*")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str | None) -> list[str]:
    """The parts of `url` that must never be shown: its password, its userinfo, key-like query values."""
    if not url:
        return []
    parts = urllib.parse.urlsplit(url)
    found = [parts.netloc.rsplit("@", 1)[0]] if "@" in parts.netloc else []
    found += [urllib.parse.unquote(p) for p in (parts.password,) if p]
    found += [v for k, v in urllib.parse.parse_qsl(parts.query) if SECRET_QUERY.search(k) and v]
    return found


LOGPROB_POSITIONS = 8  # the first tokens' alternatives are all scoring reads; keep the cache small


def _retry_after(headers) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class TeacherClient:
    def __init__(self, cfg: ClientConfig, cache: Cache):
        self.cfg, self.cache = cfg, cache
        self._key = os.environ.get(cfg.api_key_env) or ""
        base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL")
        # longest first, so a secret that contains another is hidden whole
        self._secrets = sorted({s for s in (self._key, *url_secrets(base_url)) if s}, key=len, reverse=True)
        # part of every cache key: the same model name elsewhere is another model (its credentials are not part of it)
        self.server = redact_url(base_url) if url_secrets(base_url) else base_url
        # Local servers (llama.cpp, vLLM, Ollama) need no key, but the SDK insists on a string.
        self.api = openai.AsyncOpenAI(
            api_key=self._key or "no-key", base_url=base_url, max_retries=0, timeout=cfg.timeout
        )
        self.params = {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens}

    def scrub(self, text: str) -> str:
        """Remove the API key and the base URL's credentials from any text that might reach a log, a file or the
        terminal: every occurrence, however short the key (a short key garbles the message, a leak is worse), and
        whatever follows "Bearer"."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return BEARER.sub(r"\1***", text)

    def sent_params(self, params: dict | None = None) -> dict:
        """The sampling params of a request: the run's, overridden by a request kind's (scoring, votes)."""
        return {**self.params, **(params or {})}

    def key_for(self, messages: list[dict], params: dict | None = None) -> str:
        return request_key(self.cfg.model, messages, self.sent_params(params), self.server)

    def cached(self, messages: list[dict], params: dict | None = None) -> Completion | None:
        hit = self.cache.get(self.key_for(messages, params))
        return (
            Completion(
                hit["content"],
                hit["usage"],
                0.0,
                cached=True,
                extra=hit["extra"],
                latency_s=hit["latency_s"] or 0.0,
                recorded_cost=hit["cost_usd"],
            )
            if hit
            else None
        )

    def cost_of(self, usage: dict, factor: float = 1.0) -> float | None:
        """What a reply with `usage` bills at `factor` of the list price (cached prompt tokens at the cached rate)."""
        cfg = self.cfg
        cached = None if cfg.cached_price is None else cfg.cached_price * factor
        tokens = [usage.get(k) or 0 for k in ("prompt_tokens", "completion_tokens", "cached_tokens")]
        return cost_usd(tokens[0], tokens[1], scaled(cfg.price, factor), tokens[2], cached)

    async def complete(self, messages: list[dict], params: dict | None = None) -> Completion:
        """One chat completion, from the cache or the server. `params` adds to or overrides the run's
        sampling params for this request kind (e.g. max_tokens=1 with logprobs, or a vote's seed)."""
        hit = self.cached(messages, params)
        if hit:
            return hit
        key, cfg, sent = self.key_for(messages, params), self.cfg, self.sent_params(params)
        last_error = "no attempt made"
        for attempt in range(1, cfg.max_retries + 2):
            start = time.perf_counter()
            wait = None
            try:
                resp = await self._send(messages, sent)
                content, usage, extra = read_completion(resp, sent)
            except openai.APIStatusError as e:
                last_error = f"HTTP {e.status_code}: {self.scrub(str(e))[:300]}"
                if e.status_code not in RETRY_STATUS and e.status_code < 500:
                    self.cache.log(key, cfg.model, "error", last_error, time.perf_counter() - start)
                    raise TeacherError(last_error + self._hint(e.status_code), attempt) from None
                wait = _retry_after(e.response.headers)
            except (openai.APITimeoutError, openai.APIConnectionError) as e:
                last_error = f"{type(e).__name__}: {self.scrub(str(e))[:200]}"
            except (ValueError, AttributeError, TypeError, IndexError, openai.APIResponseValidationError) as e:
                # invalid JSON, a body without choices, or empty content: retry, never cache
                last_error = f"bad response: {self.scrub(str(e))[:200]}"
            else:
                latency = time.perf_counter() - start
                # a reply served in the tier asked for bills that tier's price; one the server says it served in
                # another (e.g. "default" when flex capacity ran short) bills the list price
                served = getattr(resp, "service_tier", None) or cfg.service_tier
                cost = self.cost_of(usage, cfg.tier_factor if cfg.service_tier and served == cfg.service_tier else 1.0)
                request = {"messages": messages, **sent}
                # durable before anything else: until its group commit is on disk the request is still in flight
                await self.cache.store(key, cfg.model, request, content, usage, cost, latency, extra)
                return Completion(
                    content,
                    usage,
                    cost,
                    cached=False,
                    attempts=attempt,
                    extra=extra,
                    latency_s=latency,
                    recorded_cost=cost,
                )
            self.cache.log(key, cfg.model, "retry", last_error, time.perf_counter() - start)
            if attempt > cfg.max_retries:
                break
            if wait is None:
                wait = min(cfg.backoff_max, cfg.backoff_base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            await asyncio.sleep(wait)
        raise TeacherError(f"gave up after {cfg.max_retries + 1} attempts: {last_error}", cfg.max_retries + 1)

    async def _send(self, messages: list[dict], sent: dict):
        """One chat-completions request. The SDK's chat.completions.create walks every message through its
        TypedDict transform (~0.5-1 ms a request, a fifth of the client's CPU at concurrency 64) to change
        nothing in plain role/content dicts; post() sends the same body and parses the same ChatCompletion."""
        tier = {"service_tier": self.cfg.service_tier} if self.cfg.service_tier else {}
        return await self.api.post(
            "/chat/completions",
            body={"model": self.cfg.model, "messages": messages, **sent, **tier},
            cast_to=ChatCompletion,
        )

    @staticmethod
    def _hint(status: int) -> str:
        return {
            401: " (check the API key: --api-key-env names the variable that holds it)",
            404: " (check --model and --base-url)",
        }.get(status, "")

    def body(self, messages: list[dict], params: dict | None = None) -> dict:
        """The chat-completions body of a request as a batch file line carries it (no service tier: a batch has
        none); its cache key is key_for(messages, params), the same as the live request's."""
        return {"model": self.cfg.model, "messages": messages, **self.sent_params(params)}

    async def close(self):
        await self.api.close()


def read_completion(resp, sent: dict) -> tuple[str, dict, dict]:
    """(content, usage, extra) of a chat completion, live or from a batch's output file; ValueError when it holds
    no answer (an empty one is never cached: it is asked again)."""
    content = resp.choices[0].message.content if resp.choices else None
    extra = _extra(resp, sent)
    if not isinstance(content, str) or not (content.strip() or extra.get("logprobs")):
        raise ValueError("the server returned an empty answer")
    return content, _usage(resp), extra


def _extra(resp, sent: dict) -> dict:
    """What a response holds beyond its first text: every choice (n > 1) and the first tokens' logprobs."""
    extra = {}
    if (sent.get("n") or 1) > 1:
        extra["choices"] = [c.message.content or "" for c in resp.choices]
    if sent.get("logprobs"):
        extra["logprobs"] = token_logprobs(getattr(resp.choices[0], "logprobs", None))
    return extra


def token_logprobs(raw) -> list[dict] | None:
    """The OpenAI chat `logprobs` payload as [{"token", "logprob", "top": {token: logprob}}] per position.

    [] when the server sent none (it ignores the option), None when what it sent is malformed: never
    an exception, so one odd server can only cost the scoring, not the annotation run.
    """
    if raw is None:
        return []
    try:
        content = _field(raw, "content")
        if content is None:
            return []
        out = []
        for pos in list(content)[:LOGPROB_POSITIONS]:
            top = {str(_field(t, "token")): _finite(_field(t, "logprob")) for t in _field(pos, "top_logprobs") or []}
            out.append({"token": str(_field(pos, "token")), "logprob": _finite(_field(pos, "logprob")), "top": top})
        return out
    except (TypeError, ValueError, AttributeError):
        return None


def _field(obj, key):
    """A field of a payload part, parsed by the SDK (attributes) or left as JSON (dicts)."""
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def _finite(x) -> float:
    x = float(x)
    if x != x or x > 1e-6:  # NaN, or a "log probability" above 0
        raise ValueError(f"not a log probability: {x}")
    return max(x, -1e4)  # -inf (a token the server rules out) as a very small probability


def _usage(resp) -> dict:
    u = getattr(resp, "usage", None)
    details = getattr(u, "prompt_tokens_details", None)
    return {
        "prompt_tokens": getattr(u, "prompt_tokens", 0) or 0,
        "completion_tokens": getattr(u, "completion_tokens", 0) or 0,
        "cached_tokens": getattr(details, "cached_tokens", 0) or 0,
    }
