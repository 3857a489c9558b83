"""Path sets for the middleware: which paths skip auth or rate limiting, which are writes."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import Scope


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
