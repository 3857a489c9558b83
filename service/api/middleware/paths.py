"""Paths for the middleware: which skip auth or rate limiting, which are writes, and their
one Unicode normalisation."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from ingest.names import normalize_name


@dataclass(frozen=True)
class PathSet:
    """Exact paths plus path prefixes; a prefix should end with "/" ("/static/")."""

    exact: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str):
            return False
        if path in self.exact:
            return True
        # A ".." segment could walk out of an allowed prefix into a guarded route.
        return path.startswith(self.prefixes) and ".." not in path.split("/")

    def with_paths(self, *exact: str, prefixes: tuple[str, ...] = ()) -> PathSet:
        """A copy that also allows these paths and prefixes."""
        return PathSet(self.exact | frozenset(exact), self.prefixes + prefixes)


def route_path(scope: Scope) -> str:
    """The request path as the router sees it (without a proxy's `root_path`)."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


# Where documents are uploaded, replaced and removed (POST /documents, PUT and DELETE
# /documents/{source}).
UPLOADS = PathSet(frozenset({"/documents"}), ("/documents/",))
WRITE_METHODS = frozenset({"POST", "PUT", "DELETE"})


def is_write(scope: Scope) -> bool:
    """Whether a request changes the knowledge base (a document update)."""
    return scope["method"] in WRITE_METHODS and route_path(scope) in UPLOADS


class NormalizedPathMiddleware:
    """Normalises every request path to NFC before anything routes on it (pure ASGI).

    A document name may arrive decomposed (é as e + U+0301) from one client and
    precomposed from another; the upload's file name is normalised too, so GET, PUT and
    DELETE of either spelling reach the same document.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = normalize_name(scope["path"])
            if path != scope["path"]:
                scope = {**scope, "path": path}
        await self.app(scope, receive, send)
