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


def test_chunked_rows_come_back_in_their_own_order(
    two_replicas: LoadedModel, tiny_model: Path
) -> None:
    # Each row's schema forces its own key, so whichever way the engine's numbers fall, an
    # output shows which row it came from: chunks decoded at once on two replicas, sorted by
    # length, padded, must still answer row by row in the order given.
    decoder: GuidedDecoder = guided_decoder(two_replicas, tiny_model)
    rows = [
        GuidedRow(list(range(1, 40 - 7 * n)), _keyed(f"k{n}"), 24, b'{"k' + str(n).encode())
        for n in range(5)
    ]

    outputs = decoder.decode(rows, chunk_rows=2)

    assert [o.text[: len(f'{{"k{n}"')] for n, o in enumerate(outputs)] == [
        f'{{"k{n}"' for n in range(5)
    ]
    assert all(o.error is None for o in outputs)


def _keyed(key: str) -> dict[str, object]:
    return {
        "type": "object",
        "properties": {key: {"type": "integer"}},
        "required": [key],
        "additionalProperties": False,
    }
