"""The gate: a model rotation or knowledge release is staged, evaluated, then promoted or rolled
back, and a promotion that scores below live by more than the margin is refused.

A release is a row of the record store (`qfleet_releases`), so its history survives restarts
and every operator sees the same state. The gate decides and records; the rotation itself is
a deployment change (point the live workers at the new model folder), which the runbook in
docs/operations.md shows. `qfleet gate status` tells deploy scripts what was decided.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from qfleet.producer.evaluate import EvalReport
from qfleet.tasks.errors import NotFoundError, PermanentError
from qfleet.tasks.records import GATE_TABLE, connect
from qfleet.tasks.settings import Settings

ReleaseKind = Literal["model", "kb"]
ReleaseState = Literal["staged", "evaluated", "promoted", "refused", "rolled_back"]


class GateRefusedError(PermanentError):
    """The candidate scored below live by more than the margin (or was never evaluated)."""

    code = "gate_refused"


class Decision(BaseModel):
    """One state change of a release, kept in its history."""

    state: ReleaseState
    at: datetime
    note: str | None = None


class Release(BaseModel):
    """A staged change and what the gate knows about it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    kind: ReleaseKind
    description: str | None = None
    state: ReleaseState = "staged"
    live: EvalReport | None = None
    candidate: EvalReport | None = None
    margin: float | None = None
    history: list[Decision] = Field(default_factory=list)

    def moved(self, state: ReleaseState, note: str | None = None) -> Release:
        """This release in `state`, with the change in its history."""
        decision = Decision(state=state, at=datetime.now(UTC), note=note)
        return self.model_copy(update={"state": state, "history": [*self.history, decision]})


class Gate:
    """This fleet's releases (fleet = the Redis key prefix), in the record store."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.fleet = self.settings.redis_key_prefix
        self.conn = connect(self.settings)

    def close(self) -> None:
        """Close the database connection."""
        self.conn.close()

    def stage(self, name: str, kind: ReleaseKind, description: str | None = None) -> Release:
        """Register a staged release (candidate workers on the canary queues, or a staged KB)."""
        release = Release(name=name, kind=kind, description=description).moved("staged")
        self._save(release)
        return release

    def get(self, name: str) -> Release:
        """The release called `name`.

        Raises:
            NotFoundError: no such release.
        """
        row = self.conn.execute(
            f"SELECT release FROM {GATE_TABLE} WHERE fleet = %s AND name = %s", (self.fleet, name)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no release called {name!r}: stage it first")
        return Release.model_validate(row[0])

    def releases(self) -> list[Release]:
        """Every release of this fleet, latest change first."""
        rows = self.conn.execute(
            f"SELECT release FROM {GATE_TABLE} WHERE fleet = %s ORDER BY updated_at DESC",
            (self.fleet,),
        ).fetchall()
        return [Release.model_validate(r[0]) for r in rows]

    def attach(self, name: str, live: EvalReport, candidate: EvalReport) -> Release:
        """Keep the scored runs of live and candidate on the same set with the release."""
        release = self.get(name).model_copy(update={"live": live, "candidate": candidate})
        release = release.moved(
            "evaluated", f"live {live.score:.3f} vs candidate {candidate.score:.3f}"
        )
        self._save(release)
        return release

    def promote(self, name: str, margin: float | None = None) -> Release:
        """Promote `name` unless its candidate scored below live by more than `margin`.

        Raises:
            GateRefusedError: not evaluated, or below live by more than the margin (the
                refusal is recorded in the release's history).
        """
        release = self.get(name)
        margin = self.settings.gate_margin if margin is None else margin
        if release.live is None or release.candidate is None:
            raise GateRefusedError(f"release {name!r} has not been evaluated: run gate evaluate")
        gap = release.live.score - release.candidate.score
        if gap > margin:
            note = (
                f"candidate {release.candidate.score:.3f} is {gap:.3f} below live "
                f"{release.live.score:.3f} (margin {margin:.3f})"
            )
            self._save(release.model_copy(update={"margin": margin}).moved("refused", note))
            raise GateRefusedError(f"promotion of {name!r} refused: {note}")
        note = f"candidate {release.candidate.score:.3f}, live {release.live.score:.3f}"
        promoted = release.model_copy(update={"margin": margin}).moved("promoted", note)
        self._save(promoted)
        return promoted

    def rollback(self, name: str, note: str | None = None) -> Release:
        """Mark `name` rolled back: its candidate leaves (or never takes) live traffic."""
        release = self.get(name).moved("rolled_back", note)
        self._save(release)
        return release

    def _save(self, release: Release) -> None:
        data: Any = release.model_dump_json()
        self.conn.execute(
            f"""INSERT INTO {GATE_TABLE} (fleet, name, release, updated_at)
                VALUES (%s, %s, %s, now())
                ON CONFLICT (fleet, name) DO UPDATE SET release = EXCLUDED.release,
                updated_at = EXCLUDED.updated_at""",
            (self.fleet, release.name, data),
        )
