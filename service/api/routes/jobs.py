"""GET /jobs/{id}: how a queued document update is going."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import StateDep
from service.api.schemas.core import JobPublic
from service.api.schemas.errors import documented
from service.errors import NotFoundError

router = APIRouter(tags=["documents"])


@router.get("/jobs/{job_id}", response_model=JobPublic, responses=documented(404, 422))
async def get_job(job_id: str, state: StateDep) -> JobPublic:
    """A document update: queued, running, done (with its result) or failed (with why)."""
    job = state.jobs.get(job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id!r} (finished jobs are kept for a while only)")
    return job.public()
