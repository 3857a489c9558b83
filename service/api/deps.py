"""Request dependencies: the application state, as routes declare it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.api.state import AppState


async def get_state(request: Request) -> AppState:
    """The application's state object (async: a sync dependency costs a thread hop)."""
    state: AppState = request.app.state.zhice
    return state


StateDep = Annotated[AppState, Depends(get_state)]
