"""The chat page and embed script are served, self-contained, and reachable without a key."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from service.answer.qa import QA
from service.api.app import create_app
from service.api.routes.widget import STATIC_DIR
from service.config import Settings

KEY = "k" * 32


@pytest.fixture
def client(fake_qa_settings: Settings, fake_qa: QA) -> Iterator[TestClient]:
    with TestClient(create_app(fake_qa_settings, qa=fake_qa)) as c:
        yield c


def test_page_and_assets_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "知策" in page.text and "政策问答" in page.text
    for asset, kind in [
        ("/static/app.js", "javascript"),
        ("/static/style.css", "text/css"),
        ("/widget.js", "javascript"),
        ("/static/widget.js", "javascript"),
    ]:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert kind in response.headers["content-type"], asset


def test_missing_static_file_is_a_json_404(client: TestClient) -> None:
    response = client.get("/static/nope.js")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert client.get("/static/../pyproject.toml").status_code == 404


def test_page_loads_nothing_from_elsewhere() -> None:
    # No CDN: every src/href is relative (or a data: URL), so the page works offline
    # and under a path prefix.
    for name in ("index.html", "app.js", "style.css"):
        text = (STATIC_DIR / name).read_text(encoding="utf-8")
        assert not re.search(r"(src|href)=\"(https?:)?//", text), name
        assert "@import" not in text and "url(http" not in text, name
    for ref in re.findall(r"(?:src|href)=\"([^\"]+)\"", (STATIC_DIR / "index.html").read_text()):
        assert ref.startswith(("static/", "data:")), ref
        if ref.startswith("static/"):
            assert (STATIC_DIR / ref.removeprefix("static/")).is_file(), ref


def test_page_is_public_when_keys_are_required(fake_qa_settings: Settings, fake_qa: QA) -> None:
    settings = fake_qa_settings.model_copy(update={"api_keys": (SecretStr(KEY),)})
    with TestClient(create_app(settings, qa=fake_qa)) as client:
        for path in ("/", "/widget.js", "/static/app.js", "/static/style.css"):
            assert client.get(path).status_code == 200, path
        assert client.post("/ask", json={"question": "算力券"}).status_code == 401
        assert client.post("/feedback", json={"question": "问", "answer": "答"}).status_code == 401
        assert client.get("/documents").status_code == 401
        # A path that walks out of /static/ is not public.
        assert client.get("/static/../documents").status_code in (401, 404)
        authorised = {"Authorization": f"Bearer {KEY}"}
        assert client.get("/documents", headers=authorised).status_code == 200
