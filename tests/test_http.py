"""etl.http.HttpClient against a local server: retries, backoff, Retry-After,
no retry on 4xx, timeouts, redaction, the shared rate limiter, secrets."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from etl.core.errors import ConfigError, VendorAuthError, VendorError, VendorNotFoundError, VendorUnavailableError
from etl.core.http import HttpClient, RateLimiter, redact, require_secret, secret
from tests.vendor_server import ReplayServer, Reply

KEY = "sekret-123"
OK = Reply(200, b'{"ok": true}')


class Stamped(list):
    """A request log that also keeps when each request arrived."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def append(self, item) -> None:
        self.times.append(time.monotonic())
        super().append(item)


@pytest.fixture(scope="module")
def _replay():
    with ReplayServer(api_key=KEY) as srv:
        yield srv


@pytest.fixture
def server(_replay):
    _replay.reset(Stamped())
    return _replay


@pytest.fixture
def slept():
    return []


def client(server, slept, **kw) -> HttpClient:
    opts = {"source": "test", "base_url": server.url, "api_key": KEY, "key_param": "apiKey", "backoff": 0.5,
            "max_retries": 3, "sleep": slept.append, "timeout": 5.0}
    return HttpClient(**(opts | kw))


def test_429_twice_then_ok_honours_retry_after(server, slept):
    server.add("/v1/x", [Reply(429, b"slow down", headers={"Retry-After": "3"}), Reply(429, b"slow down", headers={"Retry-After": "1.5"}), OK])
    fetched, obj = client(server, slept).get_json("/v1/x", {"q": "1"})
    assert obj == {"ok": True}
    assert fetched.attempts == 3 and len(server.requests) == 3
    assert slept == [3.0, 1.5]  # the server's Retry-After, not our backoff
    assert server.requests[0] == ("/v1/x", {"q": "1"})


def test_503_is_retried_with_backoff(server, slept):
    server.add("/v1/x", [Reply(503, b"busy"), OK])
    fetched = client(server, slept).get("/v1/x")
    assert fetched.status == 200 and fetched.attempts == 2
    [delay] = slept
    assert 0.5 * 0.8 <= delay <= 0.5 * 1.2  # backoff with jitter


def test_exhausted_retries_raise_unavailable(server, slept):
    server.add("/v1/x", Reply(502, b"bad gateway"))
    with pytest.raises(VendorUnavailableError, match=r"still failing after 4 attempts \(HTTP 502\)"):
        client(server, slept, max_retries=3).get("/v1/x")
    assert len(server.requests) == 4
    assert len(slept) == 3
    for i, delay in enumerate(slept):  # 0.5, 1, 2 s, each +-20 %
        assert 0.5 * 2**i * 0.8 <= delay <= 0.5 * 2**i * 1.2


@pytest.mark.parametrize(
    ("status", "error", "text"),
    [(401, VendorAuthError, "refused (HTTP 401)"), (403, VendorAuthError, "refused (HTTP 403)"),
     (404, VendorNotFoundError, "does not exist (HTTP 404)"), (400, VendorError, "failed with HTTP 400")],
)
def test_client_errors_are_not_retried(server, slept, status, error, text):
    server.add("/v1/x", Reply(status, b'{"status": "ERROR"}'))
    with pytest.raises(error) as info:
        client(server, slept).get("/v1/x")
    assert type(info.value) is error and text in str(info.value)
    if status != 404:
        assert "not retried" in str(info.value)
    assert len(server.requests) == 1 and slept == []


def test_a_wrong_key_gets_one_request(server, slept):
    server.add("/v1/x", OK)
    with pytest.raises(VendorAuthError):
        client(server, slept, api_key="not-the-key").get("/v1/x")
    assert len(server.requests) == 1


def test_timeouts_are_retried_then_unavailable(server, slept):
    server.add("/v1/slow", Reply(200, b"{}", delay=0.6))
    with pytest.raises(VendorUnavailableError, match=r"after 2 attempts \(ReadTimeout"):
        client(server, slept, timeout=0.2, max_retries=1).get("/v1/slow")
    assert len(server.requests) == 2 and len(slept) == 1


def test_a_timeout_then_an_answer_succeeds(server, slept):
    server.add("/v1/slow", [Reply(200, b"{}", delay=0.6), OK])
    fetched = client(server, slept, timeout=0.2).get("/v1/slow")
    assert fetched.attempts == 2 and fetched.body == OK.body


def test_the_key_is_redacted_everywhere(server, slept):
    server.add("/v1/echo", Reply(403, f'{{"error": "key {KEY} is not entitled"}}'.encode()))
    with pytest.raises(VendorAuthError) as info:
        client(server, slept).get("/v1/echo")
    message = str(info.value)
    assert KEY not in message and "apiKey=***" in message and "key *** is not entitled" in message

    server.add("/v1/down", Reply(503, KEY.encode()))
    with pytest.raises(VendorUnavailableError) as info:
        client(server, slept, max_retries=1).get("/v1/down")
    assert KEY not in str(info.value)

    landed = []
    server.add("/v1/ok", OK)
    fetched = client(server, slept, on_response=landed.append).get("/v1/ok", {"a": "b"})
    assert landed == [fetched]  # handed over (to land in bronze) before the caller sees it
    assert KEY not in fetched.url and fetched.url.endswith("/v1/ok?a=b&apiKey=***")
    assert fetched.params == {"a": "b", "apiKey": "***"}
    assert redact(f"https://x/y?token=t1&api_key=a1&b=2&z={KEY}", (KEY,)) == "https://x/y?token=***&api_key=***&b=2&z=***"


def test_paginate_keeps_the_cursor_of_next_url(server, slept):
    server.add("/v3/items", Reply(200, f'{{"results": [1], "next_url": "{server.url}/v3/items?cursor=abc"}}'.encode()), {"limit": "1"})
    server.add("/v3/items", Reply(200, b'{"results": [2]}'), {"cursor": "abc"})
    pages = [page["results"] for _, page in client(server, slept).paginate("/v3/items", {"limit": "1"})]
    assert pages == [[1], [2]]
    assert list(server.requests) == [("/v3/items", {"limit": "1"}), ("/v3/items", {"cursor": "abc"})]


def test_rate_limiter_spacing_with_a_fake_clock():
    now = [0.0]
    limiter = RateLimiter(20, burst=3, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    grants = []
    for _ in range(8):
        limiter.acquire()
        grants.append(round(now[0], 9))
    assert grants == [0.0, 0.0, 0.0, 0.05, 0.1, 0.15, 0.2, 0.25]  # a burst of 3, then 1/20 s apart
    assert limiter.waited == pytest.approx(0.25)
    with pytest.raises(ConfigError, match="rate limit must be > 0"):
        RateLimiter(0)


def test_one_rate_limiter_shared_by_four_threads_never_exceeds_its_rate(server, slept):
    rate, n = 20.0, 30
    server.add("/v1/x", OK)
    limiter = RateLimiter(rate, record=True)
    shared = client(server, slept, limiter=limiter)
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(lambda _: shared.get("/v1/x").status, range(n)))
    assert statuses == [200] * n
    assert len(server.requests.times) == n
    # the bucket's own decisions (taken under its lock, so thread scheduling cannot bunch them):
    # no window holds more grants than the bucket allows, 1 + rate * width
    grants = limiter.grants
    assert len(grants) == n and grants == sorted(grants)
    for i in range(n):
        for j in range(i + 1, n):
            assert j - i <= 1 + rate * (grants[j] - grants[i]) + 1e-6, (i, j, grants[j] - grants[i])
    # and the requests themselves cannot arrive before they were granted (one clock: monotonic);
    # the span is measured from the first grant, since a loaded machine may deliver the first
    # request late and so shorten the span between arrivals without any request being early
    times = sorted(server.requests.times)
    assert times[0] >= grants[0]
    assert times[-1] - grants[0] >= (n - 2) / rate
    assert limiter.waited > 0


def test_secret_reads_dotenv_in_the_home_without_touching_the_environment(tmp_path, monkeypatch):
    name = "ALPHA_TEST_HTTP_SECRET_9F3"
    monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    assert secret(name, home) is None
    with pytest.raises(ConfigError, match=name):
        require_secret(name, "testvendor", home)
    (home / ".env").write_text(f"# keys\n{name}=from-dotenv\n{name}_OTHER=1\n")
    assert secret(name, home) == "from-dotenv"
    assert require_secret(name, "testvendor", home) == "from-dotenv"
    assert name not in os.environ and f"{name}_OTHER" not in os.environ
    monkeypatch.setenv(name, "from-env")
    assert secret(name, home) == "from-env"  # the environment wins
