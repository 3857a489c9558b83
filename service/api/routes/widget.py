"""The chat page at `/`, the embed script at `/widget.js`, and their files under /static/."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

# Everything served here is public even when API keys are set (`PUBLIC` in
# service/security.py); the page sends the key with its API calls (README, "Chat widget").
STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    """The chat page (知策 政策问答)."""
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/widget.js")
def widget_js() -> FileResponse:
    """The script an integrator embeds; it opens the chat page in an iframe."""
    return FileResponse(
        STATIC_DIR / "widget.js",
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache"},
    )


def mount_static(app: FastAPI) -> None:
    """Serve the page's scripts and styles under /static/."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
