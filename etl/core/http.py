"""Vendor HTTP: one client for every market-data vendor.

- Retries with exponential backoff (and the server's ``Retry-After``) on 429,
  5xx, timeouts and dropped connections; never on 401/403 (fix the key) or
  404 (no such resource) or any other 4xx.
- One :class:`RateLimiter` per vendor, shared by every thread of a run, so
  ``--parallel N`` never exceeds the vendor's quota.
- API keys come from the environment or ``.env`` (:func:`secret`) and are
  redacted from every URL this module returns, logs or puts in an error, and
  from the lines ``httpx`` logs (each request's URL, key included, at INFO).
- Every response body is handed back as received, with the request and fetch
  time, so the caller can land it in bronze before parsing it; the one change:
  the secrets this process knows (the client's key, every secret-looking
  environment variable: ``*_API_KEY``, ``*_TOKEN``, ``*_PASSWORD``, ...) are
  masked in it (:func:`scrub`), so a vendor that echoes the request URL (an
  error page, a ``request_url`` field) never puts a key in bronze, a quarantine
  row or a report. The body's sha256 (its name in bronze, the rows' lineage)
  is that of the masked body.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urljoin, urlsplit, urlunsplit

import httpx
import pandas as pd

from etl.core.errors import (
    ConfigError,
    VendorAuthError,
    VendorError,
    VendorNotFoundError,
    VendorPayloadError,
    VendorUnavailableError,
)

log = logging.getLogger("alpha.http")

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
SECRET_PARAMS = frozenset({"apikey", "api_key", "apiKey", "token", "key", "access_token"})
_REDACTED = "***"


def secret(name: str, home: Path | None = None) -> str | None:
    """An API key from the environment, else from ``.env`` in ``home`` or the
    project root. Returns None when it is not set anywhere."""
    value = os.environ.get(name)
    if value:
        return value
    from dotenv import dotenv_values

    from etl.core.config import PROJECT_ROOT

    for folder in [p for p in (home, PROJECT_ROOT) if p is not None]:
        env_file = Path(folder) / ".env"
        if env_file.exists():
            value = dotenv_values(env_file).get(name)
            if value:
                return value
    return None


def require_secret(name: str, vendor: str, home: Path | None = None) -> str:
    value = secret(name, home)
    if not value:
        raise ConfigError(f"{vendor} needs an API key: set {name} in the environment or in a .env file (see .env.example)")
    return value


def redact(url: str, secrets: tuple[str, ...] = ()) -> str:
    """``url`` with key-like query parameters and any known secret value masked."""
    parts = urlsplit(url)
    query = [(k, _REDACTED if k in SECRET_PARAMS or k.lower() in SECRET_PARAMS else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    out = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query, safe="*,:"), parts.fragment))
    for s in secrets:
        if s:
            out = out.replace(s, _REDACTED)
    return out


#: secrets shorter than this are not masked in bodies (masking "1" would corrupt any body)
MIN_SECRET_LENGTH = 6
#: environment variables whose values are secrets (``POLYGON_API_KEY``, ``GITHUB_TOKEN``, ``ALPHA_REDIS_PASSWORD``)
_SECRET_ENV = re.compile(r"(?:API_?KEY|(?:^|_)KEY(?:$|_)|TOKEN|SECRET|PASSW(?:OR)?D|CREDENTIAL)", re.IGNORECASE)


def env_secrets() -> tuple[str, ...]:
    """The values of the secret-looking environment variables (``_SECRET_ENV``)."""
    return tuple(sorted({v for k, v in os.environ.items() if v and len(v) >= MIN_SECRET_LENGTH and _SECRET_ENV.search(k)}))


def settings_secrets(settings) -> tuple[str, ...]:
    """The secrets of a warehouse's settings: secret-looking values of the ``[vendors.<name>]``
    tables (``api_key``, ``token``, ``password``), the Redis password and the passwords of the
    configured URLs (redis_url, state_url, registry_url)."""
    out: set[str] = set()
    name = re.compile(r"key|secret|token|passw(?:or)?d|pwd|credential", re.IGNORECASE)

    def walk(value, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and value:
            if name.search(key):
                out.add(value)
            password = urlsplit(value).password if "://" in value else None
            if password:
                out.add(password)

    walk(getattr(settings, "vendors", {}) or {})
    for field_name in ("redis_url", "state_url", "registry_url", "redis_password"):
        walk(getattr(settings, field_name, None), field_name)
    return tuple(sorted(v for v in out if len(v) >= MIN_SECRET_LENGTH))


def scrub(body: bytes, secrets) -> bytes:
    """``body`` with every secret of ``secrets`` (as written, URL-encoded once or twice, JSON-escaped)
    masked as ``***``."""
    for value in secrets:
        if not value or len(value) < MIN_SECRET_LENGTH:
            continue
        encoded = {value, quote(value, safe=""), quote_plus(value), quote(quote(value, safe=""), safe="")}
        for form in sorted(encoded | {json.dumps(f)[1:-1] for f in encoded}, key=len, reverse=True):
            raw = form.encode()
            if raw in body:
                body = body.replace(raw, _REDACTED.encode())
    return body


class _RedactLog(logging.Filter):
    """Masks key-like query parameters and known secrets in the records of a logger (httpx
    logs every request's full URL at INFO)."""

    _param = re.compile(r"([?&](?:" + "|".join(sorted(SECRET_PARAMS)) + r")=)[^&\s\"']*", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 -- a malformed record: leave it to logging
            return True
        masked = self._param.sub(r"\1" + _REDACTED, text)
        for value in env_secrets():
            masked = masked.replace(value, _REDACTED)
        if masked != text:
            record.msg, record.args = masked, ()
        return True


for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).addFilter(_RedactLog())


class RateLimiter:
    """A token bucket: at most ``rate`` requests per second on average, bursts of
    ``burst``. Thread-safe; share one instance between all workers of a vendor."""

    def __init__(self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 record: bool = False):
        if rate <= 0:
            raise ConfigError(f"rate limit must be > 0 requests per second, got {rate}")
        self.rate = float(rate)
        self.burst = max(1, int(burst))
        self._tokens = float(self.burst)
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()
        self.waited = 0.0
        #: with ``record``: the clock time of every grant, taken under the lock (what the bucket decided)
        self.grants: list[float] | None = [] if record else None

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    if self.grants is not None:
                        self.grants.append(now)
                    return
                wait = (1 - self._tokens) / self.rate
                self.waited += wait
            self._sleep(wait)


@dataclass(frozen=True)
class Fetched:
    """One HTTP response as received."""

    source: str
    url: str                  # redacted
    params: dict              # redacted
    status: int
    content_type: str
    body: bytes
    fetched_at: pd.Timestamp  # UTC, microseconds
    attempts: int = 1

    def json(self):
        """The body parsed as JSON, or :class:`VendorPayloadError` saying why not."""
        ctype = self.content_type.split(";")[0].strip().lower()
        head = self.body.lstrip()[:200].lower()
        if ctype in ("text/html", "application/xhtml+xml") or head.startswith((b"<!doctype html", b"<html")):
            raise VendorPayloadError(
                f"{self.source}: {self.url} answered HTTP {self.status} with an HTML page, not JSON "
                f"(an error or login page?): {self.body[:120]!r}"
            )
        try:
            return json.loads(self.body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise VendorPayloadError(
                f"{self.source}: {self.url} returned a body that is not valid JSON ({exc}; {len(self.body)} bytes, "
                f"ends with {self.body[-40:]!r}): truncated or corrupt"
            ) from None


@dataclass
class HttpClient:
    """A vendor's HTTP client. ``key_param`` puts the key in the query string
    (Polygon ``apiKey``, FRED ``api_key``); ``headers`` carry anything else
    (EDGAR's required User-Agent)."""

    source: str
    base_url: str
    api_key: str | None = None
    key_param: str | None = None
    headers: dict = field(default_factory=dict)
    limiter: RateLimiter | None = None   # or anything with acquire(), e.g. pipeline.Limiters
    max_retries: int = 4
    backoff: float = 0.5
    max_backoff: float = 30.0
    timeout: float = 20.0
    sleep: Callable[[float], None] = time.sleep
    on_response: Callable[[Fetched], None] | None = None   # e.g. land in bronze
    redact_values: tuple[str, ...] = ()   # more secrets to mask (keys sent in headers)
    _client: httpx.Client | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self.timeout, headers=self.headers, follow_redirects=True)
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return urljoin(self.base_url.rstrip("/") + "/", path_or_url.lstrip("/"))

    def get(self, path_or_url: str, params: dict | None = None) -> Fetched:
        """GET with retries; returns the response as received (status 2xx only)."""
        return self.request("GET", path_or_url, params)

    def post_json(self, path_or_url: str, body: object, params: dict | None = None,
                  accept: tuple[int, ...] = ()) -> tuple[Fetched, object]:
        """POST ``body`` as JSON, with the same retries as :meth:`get`; the answer parsed.
        Retrying a POST can repeat it: use it where the vendor deduplicates
        (Alpaca's ``client_order_id``)."""
        fetched = self.request("POST", path_or_url, params, json_body=body, accept=accept)
        return fetched, fetched.json()

    def request(self, method: str, path_or_url: str, params: dict | None = None, *, json_body: object = None,
                accept: tuple[int, ...] = ()) -> Fetched:
        """One request with retries on 429/5xx/timeouts. A 2xx, or a status in
        ``accept`` (e.g. 404 or 422 the caller interprets), is returned as
        received; any other status raises."""
        url = self._url(path_or_url)
        # httpx replaces a URL's own query when given params: keep it (a next_url's cursor) by merging
        url, _, inline = url.partition("?")
        query = {**dict(parse_qsl(inline, keep_blank_values=True)), **(params or {})}
        if self.api_key and self.key_param and self.key_param not in query:
            query[self.key_param] = self.api_key
        secrets = tuple(v for v in (self.api_key, *self.redact_values, *env_secrets()) if v)
        shown_params = {k: (_REDACTED if k == self.key_param or k in SECRET_PARAMS else v) for k, v in query.items()}
        attempt = 0
        while True:
            attempt += 1
            if self.limiter is not None:
                self.limiter.acquire()
            retry_after: float | None = None
            try:
                resp = self._http().request(method, url, params=query, json=json_body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                problem = f"{type(exc).__name__}: {redact(str(exc), secrets)}"
                shown = redact(str(httpx.URL(url, params=query)), secrets)
            else:
                shown = redact(str(resp.request.url), secrets)
                status = resp.status_code
                if 200 <= status < 300:
                    fetched = Fetched(
                        source=self.source,
                        url=shown,
                        params=shown_params,
                        status=status,
                        content_type=resp.headers.get("content-type", ""),
                        body=scrub(resp.content, secrets),
                        fetched_at=pd.Timestamp.now(tz="UTC").floor("us"),
                        attempts=attempt,
                    )
                    if self.on_response is not None:
                        self.on_response(fetched)
                    return fetched
                if status in accept:
                    return Fetched(self.source, shown, shown_params, status, resp.headers.get("content-type", ""),
                                   scrub(resp.content, secrets),
                                   pd.Timestamp.now(tz="UTC").floor("us"), attempt)
                snippet = redact(scrub(resp.content, secrets)[:200].decode(errors="replace"), secrets).replace("\n", " ")
                if status in (401, 403):
                    raise VendorAuthError(f"{self.source}: {shown} was refused (HTTP {status}): {snippet}. Check the API key; not retried.")
                if status == 404:
                    raise VendorNotFoundError(f"{self.source}: {shown} does not exist (HTTP 404): {snippet}")
                if status not in RETRY_STATUS:
                    raise VendorError(f"{self.source}: {shown} failed with HTTP {status}: {snippet}; not retried")
                problem = f"HTTP {status}"
                retry_after = _retry_after(resp.headers.get("retry-after"))
            if attempt > self.max_retries:
                raise VendorUnavailableError(f"{self.source}: {shown} still failing after {attempt} attempts ({problem})")
            delay = retry_after if retry_after is not None else min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
            delay *= 1 if retry_after is not None else random.uniform(0.8, 1.2)
            log.warning("%s: %s (%s); retry %d/%d in %.2f s", self.source, shown, problem, attempt, self.max_retries, delay)
            self.sleep(delay)

    def get_json(self, path_or_url: str, params: dict | None = None) -> tuple[Fetched, object]:
        fetched = self.get(path_or_url, params)
        return fetched, fetched.json()

    def paginate(self, path: str, params: dict | None = None, next_key: str = "next_url", max_pages: int = 10_000) -> Iterator[tuple[Fetched, dict]]:
        """Follow ``next_key`` links (Polygon's ``next_url``) until the last page."""
        fetched, page = self.get_json(path, params)
        yield fetched, page
        pages = 1
        while isinstance(page, dict) and page.get(next_key):
            if pages >= max_pages:
                raise VendorError(f"{self.source}: more than {max_pages} pages from {fetched.url}; stopping")
            fetched, page = self.get_json(page[next_key])
            pages += 1
            yield fetched, page


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = pd.Timestamp(value)
            if when.tzinfo is None:
                when = when.tz_localize("UTC")
            return max(0.0, (when - pd.Timestamp.now(tz="UTC")).total_seconds())
        except ValueError:
            return None
