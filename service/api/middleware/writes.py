"""Document updates: allowed at all, and a place in the ingestion queue before the body is read."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import error_body
from service.api.jobs import Admission, IngestQueue
from service.api.middleware.paths import is_write
from service.errors import BusyError, WritesDisabledError, ZhiceError

# Scope key under which a write request's admission travels to its route.
ADMISSION_SCOPE_KEY = "zhice.admission"
DISABLED = (
    "document updates are disabled: this service listens beyond loopback (ZHICE_HOST) "
    "without API keys; set ZHICE_API_KEYS to enable them"
)


class WritesMiddleware:
    """Refuses a document update at once when it cannot be run (pure ASGI).

    403 `writes_disabled` when updates are off (`allowed` false: a service reachable
    beyond loopback without API keys); 503 `busy` with Retry-After when the queue is
    full. Both are answered before the body is read, so a flood of large uploads costs
    neither memory nor request threads; an admitted request that never queues a job (a
    bad name, a client gone mid-body) gives its place back when it ends.
    """

    def __init__(self, app: ASGIApp, queue: IngestQueue, allowed: bool = True) -> None:
        self.app = app
        self.queue = queue
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_write(scope):
            await self.app(scope, receive, send)
            return
        try:
            if not self.allowed:
                raise WritesDisabledError(DISABLED)
            admission = self.queue.admit()
        except ZhiceError as exc:
            retry = {"Retry-After": str(exc.retry_after)} if isinstance(exc, BusyError) else {}
            response = JSONResponse(
                error_body(exc.code, exc.message), status_code=exc.status, headers=retry
            )
            await response(scope, receive, send)
            return
        scope[ADMISSION_SCOPE_KEY] = admission
        try:
            await self.app(scope, receive, send)
        finally:
            if not admission.submitted:
                admission.release()


def admission_of(scope: Scope) -> Admission:
    """The admission WritesMiddleware gave this request."""
    admission = scope.get(ADMISSION_SCOPE_KEY)
    if not isinstance(admission, Admission):
        raise RuntimeError("document updates must pass through WritesMiddleware")
    return admission
