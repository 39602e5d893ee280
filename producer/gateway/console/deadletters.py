"""The Dead letters page's data: list, inspect, redrive, remove and purge dead-lettered jobs.

A letter belongs to the tenant recorded for its job id (jobs submitted through the gateway);
letters of jobs sent some other way are seen by admin keys only. Purge is admin-only.
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter
from pydantic import BaseModel

from qfleet.producer.gateway.auth import Caller, CallerDep, StateDep
from qfleet.producer.gateway.console.owners import job_owners, visible
from qfleet.producer.gateway.console.route import ConsoleRoute
from qfleet.producer.gateway.errors import ApiError
from qfleet.producer.gateway.state import GatewayState
from qfleet.tasks.deadletters import DeadLetter

LETTERS_SHOWN: Final = 500

router = APIRouter(route_class=ConsoleRoute)


class LetterView(DeadLetter):
    """A dead letter with the tenant that submitted its job (None: not through the gateway)."""

    owner: str | None = None


class Redriven(BaseModel):
    """What a redrive or a removal did."""

    job_id: str
    action: str


class Purged(BaseModel):
    """What a purge did."""

    purged: int


@router.get("/deadletters")
def list_letters(caller: CallerDep, state: StateDep) -> list[LetterView]:
    """The newest letters the caller may see, newest first."""
    letters = state.fleet.dead_letters.list(LETTERS_SHOWN)
    owners = job_owners(state.redis, state.settings.redis_key_prefix, [x.job_id for x in letters])
    return [
        LetterView(**letter.model_dump(), owner=owners[letter.job_id])
        for letter in letters
        if visible(caller, owners[letter.job_id])
    ]


@router.get("/deadletters/{job_id}")
def get_letter(job_id: str, caller: CallerDep, state: StateDep) -> LetterView:
    """One letter: payload, error, attempts, times."""
    return _letter(job_id, caller, state)


@router.post("/deadletters/{job_id}/redrive")
def redrive(job_id: str, caller: CallerDep, state: StateDep) -> Redriven:
    """Send the job again under its own id, with a fresh attempt budget."""
    _letter(job_id, caller, state)
    try:
        state.fleet.redrive(job_id)
    except KeyError as exc:  # redriven or purged by someone else meanwhile
        raise ApiError(404, f"no dead letter for {job_id}", code="letter_not_found") from exc
    return Redriven(job_id=job_id, action="redriven")


@router.delete("/deadletters/{job_id}")
def remove(job_id: str, caller: CallerDep, state: StateDep) -> Redriven:
    """Delete one letter for good."""
    _letter(job_id, caller, state)
    state.fleet.dead_letters.remove(job_id)
    return Redriven(job_id=job_id, action="removed")


@router.post("/deadletters/purge")
def purge(caller: CallerDep, state: StateDep) -> Purged:
    """Delete every letter (admin keys only: letters of every tenant go)."""
    if not caller.admin:
        raise ApiError(403, "purging every dead letter needs an admin key", code="admin_only")
    return Purged(purged=state.fleet.dead_letters.purge())


def _letter(job_id: str, caller: Caller, state: GatewayState) -> LetterView:
    letter = state.fleet.dead_letters.get(job_id)
    owner = job_owners(state.redis, state.settings.redis_key_prefix, [job_id])[job_id]
    if letter is None or not visible(caller, owner):
        raise ApiError(404, f"no dead letter for {job_id}", code="letter_not_found")
    return LetterView(**letter.model_dump(), owner=owner)
