"""Closed choices (booleans, word enums) decided by calibrated scores, on the tiny model."""

from __future__ import annotations

from typing import Any

import numpy as np

from qfleet.tasks.schemas import ExtractJob
from qfleet.workers.engine.guided import GuidedDecoder, GuidedRow
from qfleet.workers.engine.guided_batch import Call, Interrupts, StepLogits
from qfleet.workers.engine.guided_choice import Choice, choice_here
from qfleet.workers.engine.json_trail import scan
from qfleet.workers.engine.model import LoadedModel
from qfleet.workers.extraction.choices import closed_choices
from qfleet.workers.extraction.fields import decode_schema


def _choice(prior: list[float]) -> Choice:
    choice = Choice([b'a"', b'b"', b'c"'], [0, 1, 2], True, [])
    choice.set_prior(np.log(np.array(prior + [1e-9] * 7)))
    return choice


def test_a_choice_weighs_the_model_against_its_document_free_prior() -> None:
    logits = np.log(np.array([0.6, 0.3, 0.1] + [1e-9] * 7))

    # The model's own first choice is `a`; so is its habit with no document at all.
    assert _choice([0.9, 0.05, 0.05]).pick(logits) == 1
    assert _choice([1 / 3, 1 / 3, 1 / 3]).pick(logits) == 0


def test_a_choice_is_made_where_its_value_starts_and_once() -> None:
    choices = {"kind": _choice([0.5, 0.25, 0.25]), "ok": Choice([b"true"], [0], False, [])}

    assert choice_here(scan(b'{"kind": "'), choices, set()) == "kind"
    assert choice_here(scan(b'{"kind": "'), choices, {"kind"}) is None
    assert choice_here(scan(b'{"kind": "a'), choices, set()) is None
    assert choice_here(scan(b'{"ok":'), choices, set()) == "ok"
    assert choice_here(scan(b'{"ok": '), choices, set()) is None  # the model wrote the space
    assert choice_here(scan(b'{"other": "'), choices, set()) is None
    assert choice_here(scan(b'{"x": {"kind": "'), choices, set()) is None


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "paid": {"type": "boolean"},
        "kind": {"type": "string", "enum": ["lease", "employment", "sale"]},
        "maybe": {"anyOf": [{"type": "string", "enum": ["red", "blue"]}, {"type": "null"}]},
        "currency": {"type": "string", "enum": ["USD", "CNY"]},
        "optional": {"type": ["boolean", "null"]},
        "note": {"type": "string"},
    },
    "required": ["paid", "kind", "maybe", "currency", "optional", "note"],
}


def test_closed_choices_are_booleans_and_word_enums_not_currencies(
    tiny_loaded: LoadedModel,
) -> None:
    job = ExtractJob(documents=[{"id": "a", "text": "x"}], json_schema=SCHEMA)

    found = closed_choices(job, tiny_loaded.tokenizer, "fields")

    assert set(found) == {"paid", "kind", "maybe"}
    assert found["paid"].options == [b" true", b" false"]
    assert not found["paid"].quoted
    assert found["kind"].options == [b'lease"', b'employment"', b'sale"']
    assert found["kind"].quoted
    assert len(set(found["kind"].first_tokens)) == 3


class _Recorder:
    """A row for `StepLogits`: records the logits it is handed, stops where told."""

    def __init__(self, stop_at: int) -> None:
        self.stop_at = stop_at
        self.logits: dict[int, np.ndarray] = {}

    def at_choice(self) -> bool:
        return True

    def on_token(self, step: Any, logits: np.ndarray | None = None) -> bool:
        assert logits is not None
        self.logits[int(step.step)] = logits.copy()
        return int(step.step) >= self.stop_at


def test_each_row_is_handed_its_own_logits_as_rows_leave(tiny_loaded: LoadedModel) -> None:
    # CTranslate2 gives the step's logits of all rows still decoding to the first one's
    # callback; split by row, they must be what each row alone gets, also after one leaves.
    tokenizer = tiny_loaded.tokenizer
    prompts = [[5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]
    rows = [_Recorder(1), _Recorder(3), _Recorder(3)]
    call = Call([], None, Interrupts(None, None), True, True)

    tiny_loaded.generator.generate_batch(
        [tokenizer.tokens(p) for p in prompts], max_length=4, include_prompt_in_result=False,
        end_token=[], sampling_topk=1, return_logits_vocab=True,
        callback=StepLogits(rows).callback(call),
    )  # fmt: skip

    for prompt, row in zip(prompts, rows, strict=True):
        alone = _Recorder(row.stop_at)
        tiny_loaded.generator.generate_batch(
            [tokenizer.tokens(prompt)], max_length=4, include_prompt_in_result=False,
            end_token=[], sampling_topk=1, return_logits_vocab=True,
            callback=StepLogits([alone]).callback(call),
        )  # fmt: skip
        assert sorted(row.logits) == sorted(alone.logits) == list(range(row.stop_at + 1))
        for step, logits in row.logits.items():
            assert np.allclose(logits, alone.logits[step], atol=1e-3)


def test_a_calibrated_choice_is_a_valid_option_and_says_so(tiny_decoder: GuidedDecoder) -> None:
    job = ExtractJob(documents=[{"id": "a", "text": "x"}], json_schema=SCHEMA)
    choices = closed_choices(job, tiny_decoder.tokenizer, "fields")
    schema = decode_schema(job.json_schema)
    rows = [GuidedRow(p, schema, 64, b'{"paid":', choices) for p in ([5, 6], [7, 8, 9])]

    outputs = tiny_decoder.decode(rows)
    again = closed_choices(job, tiny_decoder.tokenizer, "fields")
    tiny_decoder.decode([GuidedRow([5, 6], schema, 8, b'{"paid":', again)])

    for output in outputs:
        assert output.text.startswith(('{"paid": true, "kind": ', '{"paid": false, "kind": '))
        assert set(output.chosen) <= {"paid", "kind", "maybe"}
        # The random model's token after `"paid":` is neither ` true` nor ` false`: the
        # boolean was decided by its calibrated scores, where the model writes it (after `:`).
        assert "paid" in output.chosen
        for note in output.chosen.values():
            assert "calibrated" in note
    # A later job with the same schema reuses the document-free scores the first one asked for.
    for name, choice in again.items():
        key = (tuple(choice.prior_prompt), tuple(choice.first_tokens))
        assert key in tiny_decoder.guide.priors
        assert choice.prior is tiny_decoder.guide.priors[key]
        assert np.array_equal(choice.prior, choices[name].prior)
