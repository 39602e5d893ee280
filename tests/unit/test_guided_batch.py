"""How guided rows are grouped into engine calls: similar lengths together, padded, in order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qfleet.workers.engine.guided import GuidedDecoder, GuidedRow
from qfleet.workers.engine.guided_batch import chunks, pad_inputs
from qfleet.workers.engine.model import EngineOptions, LoadedModel, load_model
from qfleet.workers.extraction import guided_decoder


@dataclass
class _Sized:
    prompt_length: int


def test_chunks_group_similar_lengths_evenly() -> None:
    rows = [_Sized(n) for n in (50, 10, 40, 20, 30, 60, 70)]

    groups = chunks(rows, 3)

    assert [[r.prompt_length for r in g] for g in groups] == [[10, 20], [30, 40, 50], [60, 70]]


def test_chunks_give_every_replica_work_and_keep_small_batches_whole() -> None:
    rows = [_Sized(n) for n in (5, 1, 3, 2)]

    assert len(chunks(rows, 8, parallel=2)) == 2
    assert chunks(rows, 8) == [rows]
    assert chunks(rows[:1], 8, parallel=4) == [rows[:1]]
    assert chunks([], 8) == []


def test_pad_inputs_makes_inputs_equally_long_after_the_shared_start() -> None:
    padded = pad_inputs([[1, 2, 3], [1, 2, 3, 4, 5]], 2, 0)

    assert padded == [[1, 2, 0, 0, 3], [1, 2, 3, 4, 5]]


@pytest.fixture(scope="module")
def two_replicas(tiny_model: Path) -> Iterator[LoadedModel]:
    loaded = load_model(tiny_model, EngineOptions(device="cpu", cpu_threads=1, replicas=2))
    yield loaded
    loaded.close()


def test_chunked_rows_decode_as_each_row_alone(two_replicas: LoadedModel, tiny_model: Path) -> None:
    decoder: GuidedDecoder = guided_decoder(two_replicas, tiny_model)
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 12}, "n": {"type": "integer"}},
        "required": ["name", "n"],
        "additionalProperties": False,
    }
    prompts = [list(range(1, 6 + 7 * n)) for n in range(5)]

    together = decoder.decode([GuidedRow(p, schema, 24) for p in prompts], chunk_rows=2, pad=False)
    alone = [decoder.decode([GuidedRow(p, schema, 24)])[0] for p in prompts]

    assert [o.text for o in together] == [o.text for o in alone]
    assert [o.token_ids for o in together] == [o.token_ids for o in alone]
