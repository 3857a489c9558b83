"""The one mapping of every error to `{"error": {code, message}}` responses."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service.api.middleware.paths import route_path
from service.api.middleware.requestid import HEADER, current_request_id
from service.errors import ZhiceError

log = logging.getLogger(__name__)


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """The error shape every non-2xx response carries (plus the request id, when known)."""
    error = {"code": code, "message": message}
    request_id = current_request_id()
    if request_id is not None:
        error["request_id"] = request_id
    return {"error": error}


def _respond(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    # The 500 response is sent outside the request-id middleware, so it sets the header.
    request_id = current_request_id()
    headers = {**(headers or {}), **({HEADER: request_id} if request_id else {})}
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


async def _zhice_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ZhiceError)
    return _respond(exc.status, exc.code, exc.message)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return _invalid_json()
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        problems.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return _respond(422, "validation_error", "; ".join(problems) or "invalid request")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    # FastAPI turns any failure to decode a JSON body — invalid UTF-8 (a ValueError),
    # nesting past the recursion limit (a RecursionError) — into a bare 400 "from" it.
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError | RecursionError):
        return _invalid_json()
    codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
    code = codes.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed(request) or headers.get("Allow", "")
    return _respond(exc.status_code, code, str(exc.detail), headers)


def _allowed(request: Request) -> str:
    """Every method the request's path answers, from the OpenAPI document.

    Starlette's 405 names the methods of the first route matching the path only — `GET`
    for `DELETE /documents`, though `POST` works too.
    """
    path = route_path(request.scope)
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            methods.update(m.upper() for m in operations)
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def _invalid_json() -> JSONResponse:
    return _respond(400, "invalid_json", "request body is not valid JSON (UTF-8)")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _respond(500, "internal_error", "internal error; the request was logged")


def install_error_handlers(app: FastAPI) -> None:
    """Route every error path to the one JSON error shape, never a traceback."""
    app.add_exception_handler(ZhiceError, _zhice_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
