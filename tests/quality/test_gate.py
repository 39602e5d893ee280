"""The gate's rule against the real record store: promote within the margin, refuse below it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from qfleet.producer.evaluate import EvalReport
from qfleet.producer.gate import Gate, GateRefusedError
from qfleet.tasks.settings import Settings


def report(name: str, score: float) -> EvalReport:
    return EvalReport(
        name=name, target="live", created_at=datetime.now(UTC), models=["m"], score=score,
        metrics={}, items=[],
    )  # fmt: skip


def test_gate_promotes_within_the_margin_and_refuses_below_it(
    records_url: str, clean_records: str
) -> None:
    gate = Gate(Settings(redis_key_prefix=clean_records, records_url=records_url, gate_margin=0.02))
    try:
        gate.stage("close", "model")
        gate.stage("worse", "kb")
        gate.stage("unscored", "model")
        gate.attach("close", report("live", 0.80), report("cand", 0.79))
        gate.attach("worse", report("live", 0.80), report("cand", 0.70))
        assert gate.promote("close").state == "promoted"
        with pytest.raises(GateRefusedError, match=r"0\.100 below live"):
            gate.promote("worse")
        with pytest.raises(GateRefusedError, match="not been evaluated"):
            gate.promote("unscored")
        # A wider margin, given for this promotion, lets it through
        assert gate.promote("worse", margin=0.15).state == "promoted"
        states = [d.state for d in gate.get("worse").history]
        assert states == ["staged", "evaluated", "refused", "promoted"]
        assert gate.rollback("worse", "users complained").state == "rolled_back"
    finally:
        gate.close()
