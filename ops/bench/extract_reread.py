"""Decoded text saved once, read again without the model (`--save` / `--reread`).

Reading is code: `read_output`, `check_evidence`, `check_fields` and `build_item` turn a decoded
row into an item. So a rule in `evidence.py` or `values.py` can be measured on all 64 documents
in seconds, from the text one model run decoded:

    python -m ops.bench.extract --ablation --variants kept --save /tmp/kept.json   # model run
    python -m ops.bench.extract --reread /tmp/kept.json                             # seconds

`--save` records, per document, the final decoded row (after the repair pass, if any) and the
fields pass 1 could not read (decoded again under the caller's constraint: `repaired`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ops.bench.extract_schemas import SCHEMAS
from qfleet.tasks.schemas import ExtractJob
from qfleet.workers.engine.guided import GuidedOutput
from qfleet.workers.extraction import run as extraction_run
from qfleet.workers.extraction.items import Reading, build_item
from qfleet.workers.extraction.run import _validator, read_row


@contextmanager
def recording(store: dict[str, dict[str, Any]]) -> Iterator[None]:
    """While open, every row `run_extract` reads is kept in `store` by document text."""
    original = extraction_run._Decoding._read

    def _read(
        self: Any, output: GuidedOutput, document: str, constrained: Collection[str] = ()
    ) -> Reading:
        reading = original(self, output, document, constrained)
        store[document] = {
            "text": output.text,
            "finish_reason": output.finish_reason,
            "repairs": output.repairs,
            "token_ids": len(output.token_ids),
            "repaired_fields": list(output.repaired_fields),
            "trimmed_fields": list(output.trimmed_fields),
            "chosen": dict(output.chosen),
            "error": output.error,
            "constrained": sorted(constrained),
        }
        return reading

    extraction_run._Decoding._read = _read  # type: ignore[method-assign]
    try:
        yield
    finally:
        extraction_run._Decoding._read = original  # type: ignore[method-assign]


def save(path: Path, records: list[dict[str, Any]], store: dict[str, dict[str, Any]]) -> None:
    """The recorded rows of `records`, by document id."""
    rows = {r["id"]: store[r["text"]] for r in records if r["text"] in store}
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1))


def reread(
    path: Path, records: list[dict[str, Any]], evidence: bool = True
) -> dict[str, dict[str, Any]]:
    """Items (as dicts) for `records`, read again from the saved rows."""
    rows = json.loads(path.read_text())
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        row = rows.get(record["id"])
        if row is None:
            continue
        schema = SCHEMAS[record["schema"]]
        output = GuidedOutput(
            token_ids=[0] * row["token_ids"], text=row["text"],
            finish_reason=row["finish_reason"], repairs=row["repairs"], generate_seconds=0.0,
            repaired_fields=row["repaired_fields"], trimmed_fields=row["trimmed_fields"],
            error=row["error"], chosen=row.get("chosen", {}),
        )  # fmt: skip
        job = ExtractJob(documents=[{"id": "x", "text": "x"}], json_schema=schema)
        reading = read_row(
            output, schema, record["text"], _validator(job),
            evidence=evidence, constrained=row["constrained"],
        )  # fmt: skip
        out[record["id"]] = build_item(record["id"], output, reading, schema).model_dump()
    return out
