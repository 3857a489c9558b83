"""Access control and limits: API keys, rate limits, body size, CORS and request ids."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from service.answer.qa import QA
from service.api.app import create_app
from service.api.middleware.paths import PathSet, route_path
from service.api.middleware.ratelimit import TokenBucket
from service.api.middleware.requestid import RequestIdFilter
from service.api.middleware.security import BodySizeMiddleware
from service.api.server import uvicorn_log_config
from service.config import Settings
from tests.conftest import free_port, running, wait_for

KEY = "k-0123456789abcdef"
OTHER_KEY = "k-fedcba9876543210"
ORIGIN = "https://zhengwu.example.gov.cn"
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
ASK = {"question": "算力券"}


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _settings(base: Settings, **overrides: Any) -> Settings:
    # Through the constructor, so the validators run as they do for environment values.
    return Settings(**(base.model_dump() | overrides))


@pytest.fixture
def make_client(fake_qa_settings: Settings, fake_qa: QA) -> Iterator[Any]:
    """Build in-process clients over the fake pipeline with settings overrides."""
    clients: list[TestClient] = []

    def make(clock: FakeClock | None = None, **overrides: Any) -> TestClient:
        settings = _settings(fake_qa_settings, **overrides)
        app = create_app(settings, qa=fake_qa, clock=clock or FakeClock())
        client = TestClient(app, raise_server_exceptions=False).__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _assert_error(response: Any, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "request_id"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    return dict(error)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- API keys ---------------------------------------------------------------------


def test_no_keys_means_open(make_client: Any) -> None:
    client = make_client()
    assert client.get("/documents").status_code == 200
    assert client.post("/ask", json=ASK).status_code == 200


def test_keys_required_when_set(make_client: Any) -> None:
    client = make_client(api_keys=f"{KEY},{OTHER_KEY}")
    missing = client.post("/ask", json=ASK)
    _assert_error(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = client.post("/ask", json=ASK, headers=_bearer(KEY + "x"))
    _assert_error(wrong, 401, "unauthorized")
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    assert client.post("/ask", json=ASK, headers=_bearer(KEY)).status_code == 200
    assert client.get("/documents", headers=_bearer(OTHER_KEY)).status_code == 200
    # The scheme is case-insensitive (RFC 7235); the key is not.
    assert client.get("/documents", headers={"Authorization": f"bearer {KEY}"}).status_code == 200
    assert client.get("/documents", headers=_bearer(KEY.upper())).status_code == 401


@pytest.mark.parametrize(
    "header", ["", "Bearer", "Bearer ", f"Basic {KEY}", KEY, f"Token {KEY}", "Bearer \x00"]
)
def test_malformed_authorization_is_401(make_client: Any, header: str) -> None:
    client = make_client(api_keys=KEY)
    _assert_error(client.get("/documents", headers={"Authorization": header}), 401, "unauthorized")


def test_only_health_and_readiness_are_public(make_client: Any) -> None:
    client = make_client(api_keys=KEY)
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    # The API schema and metrics stay behind the key; so do unknown paths (no probing).
    for path in ["/metrics", "/docs", "/openapi.json", "/documents", "/no-such-route"]:
        _assert_error(client.get(path), 401, "unauthorized")
    assert client.get("/openapi.json", headers=_bearer(KEY)).status_code == 200


def test_document_updates_need_a_key(make_client: Any) -> None:
    client = make_client(api_keys=KEY)
    upload = {"file": ("new.txt", "海口市提出培育50家大模型企业。".encode(), "text/plain")}
    _assert_error(client.post("/documents", files=upload), 401, "unauthorized")
    _assert_error(client.put("/documents/new.txt", files=upload), 401, "unauthorized")
    _assert_error(client.delete("/documents/new.txt"), 401, "unauthorized")
    _assert_error(client.get("/collections"), 401, "unauthorized")
    # With the key, the request reaches the route (here: no such document to delete).
    _assert_error(client.delete("/documents/new.txt", headers=_bearer(KEY)), 404, "not_found")


def test_keys_are_never_logged(make_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(api_keys=KEY)
    with caplog.at_level(logging.DEBUG):
        client.get("/documents", headers=_bearer(KEY))
        client.get("/documents", headers=_bearer(OTHER_KEY))
        client.get("/documents")
    assert "API key" in caplog.text  # rejections are logged …
    assert KEY not in caplog.text and OTHER_KEY not in caplog.text  # … without the key


# --- rate limiting ------------------------------------------------------------------


def test_rate_limit_429_with_retry_after(make_client: Any) -> None:
    clock = FakeClock()
    client = make_client(clock, rate_limit=30, rate_limit_burst=2)
    assert client.get("/documents").status_code == 200
    assert client.get("/documents").status_code == 200
    limited = client.get("/documents")
    _assert_error(limited, 429, "rate_limited")
    assert limited.headers["retry-after"] == "2"  # 30 a minute: one token every 2 s
    clock.advance(1.0)
    assert client.get("/documents").headers["retry-after"] == "1"
    clock.advance(1.0)
    assert client.get("/documents").status_code == 200
    assert client.get("/documents").status_code == 429


def test_health_readiness_and_metrics_are_not_limited(make_client: Any) -> None:
    client = make_client(rate_limit=1, rate_limit_burst=1)
    for _ in range(5):
        for path in ["/healthz", "/readyz", "/metrics"]:
            assert client.get(path).status_code == 200
    assert client.get("/documents").status_code == 200
    assert client.get("/documents").status_code == 429
    assert 'status="429"' in client.get("/metrics").text  # rejections are counted


def test_rate_limit_is_per_key(make_client: Any) -> None:
    client = make_client(api_keys=f"{KEY},{OTHER_KEY}", rate_limit=60, rate_limit_burst=1)
    assert client.get("/documents", headers=_bearer(KEY)).status_code == 200
    assert client.get("/documents", headers=_bearer(KEY)).status_code == 429
    assert client.get("/documents", headers=_bearer(OTHER_KEY)).status_code == 200


def test_rate_limit_is_per_ip_without_keys(fake_qa_settings: Settings, fake_qa: QA) -> None:
    settings = _settings(fake_qa_settings, rate_limit=60, rate_limit_burst=1)
    app = create_app(settings, qa=fake_qa, clock=FakeClock())
    with TestClient(app, client=("10.0.0.1", 1)) as first:
        assert first.get("/documents").status_code == 200
        assert first.get("/documents").status_code == 429
        with TestClient(app, client=("10.0.0.2", 1)) as second:
            assert second.get("/documents").status_code == 200


def test_token_bucket_refills_at_the_rate_up_to_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(per_minute=120, burst=3, clock=clock)  # a token every 0.5 s
    assert [bucket.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("a") == pytest.approx(0.5)
    clock.advance(0.25)
    assert bucket.take("a") == pytest.approx(0.25)
    clock.advance(3600)  # a long idle period saves up no more than the burst
    assert [bucket.take("a") for _ in range(4)][-1] == pytest.approx(0.5)
    assert bucket.take("b") == 0.0  # clients are independent


def test_token_bucket_survives_a_clock_stepping_back() -> None:
    clock = FakeClock()
    bucket = TokenBucket(per_minute=60, burst=1, clock=clock)
    assert bucket.take("a") == 0.0
    clock.advance(-100)
    assert bucket.take("a") == pytest.approx(1.0)
    clock.advance(1.0)
    assert bucket.take("a") == 0.0


def test_token_bucket_is_thread_safe() -> None:
    bucket = TokenBucket(per_minute=60, burst=50, clock=FakeClock())  # time stands still
    granted: list[bool] = []

    def hammer() -> None:
        for _ in range(100):
            granted.append(bucket.take("shared") == 0.0)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 50


def test_token_bucket_forgets_idle_clients() -> None:
    clock = FakeClock()
    bucket = TokenBucket(per_minute=60, burst=1, clock=clock)
    for n in range(10_001):
        bucket.take(f"ip:{n}")
    clock.advance(2.0)  # every bucket is full again
    bucket.take("new")
    bucket.take("new")  # an empty bucket over the threshold triggers the sweep
    assert len(bucket) == 1


@pytest.mark.parametrize(("per_minute", "burst"), [(0, 1), (1, 0), (-1, 5)])
def test_token_bucket_rejects_nonsense(per_minute: int, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket(per_minute, burst)


# --- body size ----------------------------------------------------------------------


def test_declared_oversize_body_is_413(make_client: Any) -> None:
    client = make_client(max_body_bytes=100)
    body = ('{"question": "' + "算" * 60 + '"}').encode()
    _assert_error(
        client.post("/ask", content=body, headers={"content-type": "application/json"}),
        413,
        "payload_too_large",
    )
    assert client.post("/ask", json=ASK).status_code == 200


def test_streamed_oversize_body_is_413(make_client: Any) -> None:
    client = make_client(max_body_bytes=100)

    def chunks() -> Iterator[bytes]:
        yield b'{"question": "'
        yield "算".encode() * 60
        yield b'"}'

    response = client.post("/ask", content=chunks(), headers={"content-type": "application/json"})
    _assert_error(response, 413, "payload_too_large")


def test_body_limit_stops_reading_at_the_limit() -> None:
    """The middleware does not read (or hold) the rest of an oversize streamed body."""
    pending = [{"type": "http.request", "body": b"x" * 100, "more_body": True}] * 100
    read = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal read
        read += 1
        return pending[read - 1]

    async def send(message: Message) -> None:
        sent.append(message)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass

    scope = {"type": "http", "method": "POST", "path": "/ask", "headers": []}
    asyncio.run(BodySizeMiddleware(app, limit=1000)(scope, receive, send))
    assert read == 11
    assert sent[0]["status"] == 413


# --- CORS ---------------------------------------------------------------------------


def _preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }


def test_cors_preflight_needs_no_key(make_client: Any) -> None:
    client = make_client(api_keys=KEY, cors_origins=f"{ORIGIN},http://localhost:8080")
    response = client.options("/ask", headers=_preflight(ORIGIN))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in response.headers["access-control-allow-headers"].lower()
    assert "POST" in response.headers["access-control-allow-methods"]


def test_cors_preflight_from_other_origin_is_refused(make_client: Any) -> None:
    client = make_client(api_keys=KEY, cors_origins=ORIGIN)
    response = client.options("/ask", headers=_preflight("https://evil.example.com"))
    _assert_error(response, 400, "cors_rejected")
    assert "access-control-allow-origin" not in response.headers


def test_cors_response_headers(make_client: Any) -> None:
    client = make_client(api_keys=KEY, cors_origins=ORIGIN)
    allowed = client.post("/ask", json=ASK, headers={"Origin": ORIGIN, **_bearer(KEY)})
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in allowed.headers["access-control-expose-headers"].lower()
    # A browser must be able to read a 401 too, to tell the user what went wrong.
    denied = client.post("/ask", json=ASK, headers={"Origin": ORIGIN})
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == ORIGIN
    other = client.post("/ask", json=ASK, headers={"Origin": "https://x.com", **_bearer(KEY)})
    assert other.status_code == 200
    assert "access-control-allow-origin" not in other.headers


def test_no_cors_headers_by_default(make_client: Any) -> None:
    client = make_client()
    response = client.get("/documents", headers={"Origin": ORIGIN})
    assert not [h for h in response.headers if h.startswith("access-control-")]


# --- request ids and error bodies ---------------------------------------------------


def test_request_id_is_echoed_or_generated(make_client: Any) -> None:
    client = make_client()
    echoed = client.get("/healthz", headers={"X-Request-ID": "trace-42:abc/DEF+=."})
    assert echoed.headers["x-request-id"] == "trace-42:abc/DEF+=."
    first = client.get("/healthz").headers["x-request-id"]
    second = client.get("/healthz").headers["x-request-id"]
    assert GENERATED_ID.fullmatch(first) and GENERATED_ID.fullmatch(second)
    assert first != second


@pytest.mark.parametrize("bad", ["", "a" * 129, "has space", "x\ty", "<script>", "中文", "a;b"])
def test_insane_request_ids_are_replaced(make_client: Any, bad: str) -> None:
    client = make_client()
    response = client.get("/healthz", headers={"X-Request-ID": bad.encode("utf-8")})
    assert GENERATED_ID.fullmatch(response.headers["x-request-id"])


def test_error_bodies_carry_the_request_id(make_client: Any) -> None:
    client = make_client(api_keys=KEY)
    error = _assert_error(
        client.get("/documents", headers={"X-Request-ID": "req-1"}), 401, "unauthorized"
    )
    assert error["request_id"] == "req-1"
    auth = _bearer(KEY)
    _assert_error(client.get("/documents/nope.txt", headers=auth), 404, "not_found")
    _assert_error(client.post("/ask", json={"question": ""}, headers=auth), 422, "validation_error")
    _assert_error(client.get("/ask", headers=auth), 405, "method_not_allowed")


def _boom() -> None:
    raise RuntimeError("secret internal detail /etc/zhice")


def test_500_has_no_stack_trace_and_logs_the_request_id(
    fake_qa_settings: Settings, fake_qa: QA, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(fake_qa_settings, qa=fake_qa)
    app.add_api_route("/boom", _boom)
    caplog.handler.addFilter(RequestIdFilter())
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"X-Request-ID": "boom-1"})
    error = _assert_error(response, 500, "internal_error")
    assert error["request_id"] == "boom-1"
    assert "Traceback" not in response.text and "secret" not in response.text
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert logged and all(getattr(r, "request_id", None) == "boom-1" for r in logged)


def test_not_ready_bodies_carry_the_request_id(fake_qa_settings: Settings, fake_qa: QA) -> None:
    app = create_app(fake_qa_settings, qa=fake_qa)
    with TestClient(app) as client:
        app.state.zhice.qa = None  # as while the model loads
        _assert_error(client.get("/readyz"), 503, "not_ready")
        _assert_error(client.post("/ask", json=ASK), 503, "not_ready")


# --- settings and paths -------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"rate_limit": -1},
        {"rate_limit_burst": 0},
        {"max_body_bytes": 0},
        {"max_body_bytes": -5},
        {"api_keys": "short"},
        {"api_keys": f"{KEY},has space in the key"},
        {"cors_origins": "https://example.gov.cn/"},
        {"cors_origins": "example.gov.cn"},
    ],
)
def test_settings_fail_fast(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as caught:
        Settings(**overrides)
    assert KEY not in str(caught.value) and "short" not in str(caught.value)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZHICE_API_KEYS", f" {KEY} ,,{OTHER_KEY}")
    monkeypatch.setenv("ZHICE_CORS_ORIGINS", f"{ORIGIN}, http://localhost:8080")
    monkeypatch.setenv("ZHICE_RATE_LIMIT", "120")
    settings = Settings()
    assert [k.get_secret_value() for k in settings.api_keys] == [KEY, OTHER_KEY]
    assert settings.cors_origins == (ORIGIN, "http://localhost:8080")
    assert settings.rate_limit == 120 and settings.max_body_bytes == 1024 * 1024
    assert KEY not in repr(settings)


def test_path_sets() -> None:
    public = PathSet(frozenset({"/healthz"})).with_paths("/", prefixes=("/static/",))
    assert "/healthz" in public and "/" in public and "/static/app.js" in public
    assert "/healthz/x" not in public and "/staticx" not in public
    assert "/static/../ask" not in public
    assert route_path({"path": "/zhice/ask", "root_path": "/zhice"}) == "/ask"
    assert route_path({"path": "/ask", "root_path": ""}) == "/ask"


# --- over real HTTP -----------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded_url(fake_qa_settings: Settings, fake_qa: QA) -> Iterator[str]:
    settings = _settings(
        fake_qa_settings,
        api_keys=KEY,
        rate_limit=60,
        rate_limit_burst=5,
        max_body_bytes=1000,
        cors_origins=ORIGIN,
    )
    with running(create_app(settings, qa=fake_qa, clock=FakeClock())) as url:
        yield url


def test_http_keys(guarded_url: str) -> None:
    with httpx.Client(base_url=guarded_url) as http:
        denied = http.get("/documents")
        _assert_error(denied, 401, "unauthorized")
        assert denied.headers["www-authenticate"] == "Bearer"
        assert http.get("/healthz").status_code == 200
        assert http.get("/documents", headers=_bearer(KEY)).status_code == 200


def test_http_body_limits(guarded_url: str) -> None:
    headers = {"content-type": "application/json", **_bearer(KEY)}

    def chunked() -> Iterator[bytes]:
        yield b'{"question": "'
        for _ in range(10):
            yield "算".encode() * 100
        yield b'"}'

    with httpx.Client(base_url=guarded_url, headers=headers) as http:
        body = ('{"question": "' + "算" * 400 + '"}').encode()
        _assert_error(http.post("/ask", content=body), 413, "payload_too_large")
        streamed = http.post("/ask", content=chunked())
        assert "content-length" not in streamed.request.headers
        assert streamed.request.headers["transfer-encoding"] == "chunked"
        _assert_error(streamed, 413, "payload_too_large")


def test_http_cors(guarded_url: str) -> None:
    with httpx.Client(base_url=guarded_url) as http:
        ok = http.options("/ask", headers=_preflight(ORIGIN))
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == ORIGIN
        refused = http.options("/ask", headers=_preflight("https://evil.example.com"))
        _assert_error(refused, 400, "cors_rejected")
        response = http.get("/documents", headers={"Origin": ORIGIN, **_bearer(KEY)})
        assert response.headers["access-control-allow-origin"] == ORIGIN
        other = http.get("/documents", headers={"Origin": "https://x.com", **_bearer(KEY)})
        assert "access-control-allow-origin" not in other.headers


def test_http_request_ids(guarded_url: str) -> None:
    with httpx.Client(base_url=guarded_url) as http:
        assert (
            http.get("/healthz", headers={"X-Request-ID": "abc-1"}).headers["x-request-id"]
            == "abc-1"
        )
        assert GENERATED_ID.fullmatch(http.get("/healthz").headers["x-request-id"])
        error = _assert_error(
            http.get("/documents", headers={"X-Request-ID": "abc-2"}), 401, "unauthorized"
        )
        assert error["request_id"] == "abc-2"


def test_http_rate_limit(fake_qa_settings: Settings, fake_qa: QA) -> None:
    settings = _settings(fake_qa_settings, api_keys=KEY, rate_limit=6, rate_limit_burst=3)
    clock = FakeClock()
    with running(create_app(settings, qa=fake_qa, clock=clock)) as url:
        with httpx.Client(base_url=url, headers=_bearer(KEY)) as http:
            assert [http.get("/documents").status_code for _ in range(3)] == [200] * 3
            limited = http.get("/documents")
            _assert_error(limited, 429, "rate_limited")
            assert limited.headers["retry-after"] == "10"  # 6 a minute: one every 10 s
            assert http.get("/healthz").status_code == 200
            clock.advance(10)
            assert http.get("/documents").status_code == 200


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """uvicorn's log config replaces the root logger's handlers; put them back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_access_and_app_logs_carry_the_request_id_but_no_query(
    fake_qa_settings: Settings, fake_qa: QA
) -> None:
    settings = _settings(fake_qa_settings, api_keys=KEY)
    config = uvicorn.Config(
        create_app(settings, qa=fake_qa),
        port=free_port(),
        log_config=uvicorn_log_config(),
        log_level="info",
    )
    streams = {name: io.StringIO() for name in ("uvicorn.access", "")}
    for name, stream in streams.items():
        for handler in logging.getLogger(name).handlers:
            assert isinstance(handler, logging.StreamHandler)
            handler.setStream(stream)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{config.port}"
    try:
        wait_for(url, "/healthz")
        httpx.get(f"{url}/documents", headers={"X-Request-ID": "log-me-1"})
        httpx.get(f"{url}/documents?collection=secret-7f3a&q=身份证", headers=_bearer(KEY))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    access = streams["uvicorn.access"].getvalue()
    assert re.search(r'"GET /documents HTTP/1.1" 401 Unauthorized \[log-me-1\]', access), access
    # Query strings may carry personal data or tokens: the path only, marked.
    assert '"GET /documents?… HTTP/1.1" 404' in access and "secret-7f3a" not in access
    app_log = streams[""].getvalue()
    assert "[log-me-1] no API key" in app_log and KEY not in app_log
