"""Schema-guided JSON decoding around CTranslate2: speculate, check, repair, guard.

CTranslate2's Python API has no logits processor, so a token mask cannot be applied inside its
decoding loop. What it does offer is a per-token callback that can stop a row and, with
`return_logits_vocab=True`, that step's logits. So each row *speculates*: the model generates
freely while the callback advances an llguidance matcher token by token (~7 µs each). At the
first token the grammar refuses, the row stops; the decoder masks that step's logits with the
grammar's allowed set, appends the best allowed token (a *repair*) plus any tokens the grammar
forces next (keys, separators), and generation resumes from prompt + accepted tokens.

The same callback feeds a `JsonTrail` (json_trail.py): an array item that repeats an earlier one
(or says "null" as text) ends the array there, and a string that cycles ends after its first
turn. A repair that would start another array item ends the array instead.

`max_tokens` is a hard cap on every token a row holds (generated, repaired, forced). A row that
reaches it stops where it is, with `finish_reason="length"` and its partial text: nothing is
closed or filled in by rule. Which fields a repair or a cut touched is reported per row, so the
caller can say where each value came from.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import ctranslate2
import numpy as np

from qfleet.workers.engine.chat import ChatTokenizer
from qfleet.workers.engine.guided_batch import (
    CHUNK_ROWS,
    Call,
    Interrupts,
    StepLogits,
    blank_token,
    chunks,
    pad_inputs,
    to_numpy,
)
from qfleet.workers.engine.guided_rows import GuidedOutput, GuidedRow, RowState
from qfleet.workers.engine.json_trail import Cut, scan
from qfleet.workers.engine.structured import MIN_STATIC_PROMPT_TOKENS, SchemaGuide

# A bare number just written as an object member's value, maybe ended by a comma.
_BARE_NUMBER = re.compile(rb": (-?[0-9][0-9.]*,?)$")
# Bytes a repair may choose without choosing a value: the value's text still came from the model.
_STRUCTURAL = frozenset(b' "{}[],:\n')


class GuidedDecoder:
    """Decodes a batch of prompts into objects their schema's grammar accepts."""

    def __init__(
        self,
        generator: ctranslate2.Generator,
        tokenizer: ChatTokenizer,
        guide: SchemaGuide,
        parallel: int | None = None,
    ) -> None:
        self.generator = generator
        self.tokenizer = tokenizer
        self.guide = guide
        # Engine calls one `decode` may run at once: the replicas bulk work may use (a worker
        # keeps its interactive replica out), else every replica the model has.
        self.parallel = max(1, parallel or generator.num_generators)
        self.pad_id = blank_token(tokenizer)

    def decode(
        self,
        rows: Sequence[GuidedRow],
        *,
        sampling: dict[str, float | int] | None = None,
        static_length: int = 0,
        deadline: float | None = None,
        cancelled: Callable[[], bool] | None = None,
        cache_static: bool = True,
        chunk_rows: int | None = None,
        pad: bool = True,
        parallel: int | None = None,
    ) -> list[GuidedOutput]:
        """One object per row; outputs are in the order of `rows`.

        `static_length` leading tokens, the same in every prompt (system turn, schema, examples;
        never the document), go to CTranslate2 as a static prompt, cached unless `cache_static`
        is false (CTranslate2 never evicts one: a prefix that holds a document must not be
        cached). Rows are decoded `chunk_rows` at a time, rows of similar prompt length
        together, as many chunks at once as the model has replicas; with `pad`, each call's
        inputs are made equally long by blank tokens after the static prompt (`parallel`:
        calls at once, default the decoder's). Past `deadline`
        (`time.monotonic()`) or once `cancelled()` is true, every unfinished row stops with
        `timeout` / `cancelled`.
        """
        state = [self._start(spec) for spec in rows]
        prompts = [spec.prompt_ids for spec in rows]
        static = prompts[0][:static_length] if static_length >= MIN_STATIC_PROMPT_TOKENS else []
        if any(len(p) <= len(static) or p[: len(static)] != static for p in prompts):
            static = []
        call = Call(static, sampling, Interrupts(deadline, cancelled), cache_static, pad)
        self._priors(rows, call)
        parallel = parallel or self.parallel
        # The step-cost cliff past 8 rows is a CPU one: a GPU takes the job's rows in one call.
        if chunk_rows is None:
            chunk_rows = CHUNK_ROWS if self.generator.device == "cpu" else 0
        groups = chunks(state, chunk_rows, parallel)
        started = time.perf_counter()
        if len(groups) <= 1 or parallel <= 1:
            for group in groups:
                self._decode_rows(group, call)
        else:
            with ThreadPoolExecutor(min(len(groups), parallel), "guided") as pool:
                list(pool.map(lambda group: self._decode_rows(group, call), groups))
        elapsed = time.perf_counter() - started
        return [self._output(row, elapsed) for row in state]

    def _priors(self, rows: Sequence[GuidedRow], call: Call) -> None:
        """Each choice's document-free scores: one one-row call per distinct prompt and model.

        The guide keeps them, so the jobs of a bulk run with one schema ask once.
        """
        for choice in (c for row in rows for c in row.choices.values()):
            if choice.prior is None:
                key = (tuple(choice.prior_prompt), tuple(choice.first_tokens))
                prior = self.guide.priors.get(key)
                if prior is None:
                    choice.set_prior(self._logits_of(choice.prior_prompt, call))
                    self.guide.remember_prior(key, choice.prior)
                else:
                    choice.prior = prior

    def _decode_rows(self, rows: list[RowState], call: Call) -> None:
        """Speculate, cut and repair until every row of one chunk is done."""
        while live := [r for r in rows if r.active]:
            if (reason := call.interrupted()) is not None:
                for row in live:
                    row.finish_reason = reason
                return
            self._speculate(live, call)
            for row in live:
                if row.forced is not None:
                    forced, row.forced = row.forced, None
                    if not self._force(row, forced):
                        row.error = "the grammar refused a schema option"
                    self._fast_forward(row)
                elif row.cut is not None:
                    self._apply_cut(row, row.cut)
                elif row.refused:
                    self._repair(row, call)

    def _start(self, spec: GuidedRow) -> RowState:
        # Not sort_keys: the grammar emits properties in the schema's order.
        grammar = self.guide.grammar(json.dumps(spec.schema))
        row = RowState(spec=spec, matcher=self.guide.matcher(grammar), ll=self.guide.ll_tokenizer)
        if spec.prefix and not self._force(row, spec.prefix):
            row.error = "the grammar refused the decided prefix"
        self._fast_forward(row)
        return row

    def _speculate(self, rows: list[RowState], call: Call) -> None:
        """Let the model generate for `rows` until each is refused, cut, complete or spent."""
        for row in rows:
            row.refused, row.refused_token, row.cut = False, None, None

        inputs = [row.spec.prompt_ids + row.ids for row in rows]
        if call.pad:
            inputs = pad_inputs(inputs, len(call.static), self.pad_id)
        # Step logits line up with rows only when the inputs are equally long.
        choosing = any(r.spec.choices for r in rows) and len({len(i) for i in inputs}) == 1
        self.generator.generate_batch(
            [self.tokenizer.tokens(ids[len(call.static) :]) for ids in inputs],
            static_prompt=self.tokenizer.tokens(call.static) if call.static else None,
            cache_static_prompt=call.cache_static,
            max_length=max(1, max(row.remaining for row in rows)),
            include_prompt_in_result=False,
            end_token=self.tokenizer.end_token_ids,
            callback=StepLogits(rows).callback(call),
            return_logits_vocab=choosing,
            **(call.sampling or {"sampling_topk": 1}),
        )
        for row in rows:
            # The engine can stop a row on an end token the grammar did not allow yet.
            if row.active and not (row.refused or row.cut) and row.remaining > 0:
                row.refused = True
            if row.active and row.remaining <= 0:
                row.finish_reason = "length"

    def _logits_of(self, inputs: list[int], call: Call) -> np.ndarray:
        """The model's logits for the token after `inputs`.

        One row per call: exact whatever the row's length. A refusal is rare, so a repair pays
        for this call rather than every speculating call for logits (those are read only at
        closed choices, where padding makes them line up: guided_batch.StepLogits).
        """
        static = call.static if inputs[: len(call.static)] == call.static else []
        [result] = self.generator.generate_batch(
            [self.tokenizer.tokens(inputs[len(static) :])],
            static_prompt=self.tokenizer.tokens(static) if static else None,
            cache_static_prompt=call.cache_static,
            max_length=1,
            include_prompt_in_result=False,
            end_token=[],
            return_logits_vocab=True,
            sampling_topk=1,
        )
        return to_numpy(result.logits[-1])

    def _repair(self, row: RowState, call: Call) -> None:
        """Replace the refused token with the best token the grammar allows."""
        row.refused = False
        if self._requote(row) or self._structural_fix(row) or self._structural_intent(row):
            return
        if row.trail.after_separator:
            # The model did not want another item here (it wanted null, or to stop): end the
            # array instead of making one up.
            frame = row.trail.stack[-1]
            if self._apply_cut(row, Cut(frame.cut, b"]", "repeated_item", row.trail.field)):
                return
        logits = self._logits_of(row.spec.prompt_ids + row.ids, call)
        allowed = self.guide.allowed(row.matcher)
        if not allowed.any():
            row.error = "the grammar allows no next token"
            return
        best = int(np.argmax(np.where(allowed[: logits.size], logits[: allowed.size], -np.inf)))
        if not row.matcher.consume_token(best):
            row.error = f"the grammar refused its own allowed token {best}"
            return
        row.repairs += 1
        chosen = self.guide.ll_tokenizer.decode_bytes([best])
        field_name = row.trail.field
        if field_name is not None and not row.trail.in_key and not set(chosen) <= _STRUCTURAL:
            row.repaired_fields.add(field_name)
        self._take(row, [best])
        self._fast_forward(row)
        if row.active and row.remaining <= 0:
            row.finish_reason = "length"

    def _requote(self, row: RowState) -> bool:
        """A bare number the model goes on writing as text becomes that text, quoted.

        `"total": 2,943.50` ends the number at its comma and `"total": 1.2万` at `万` as JSON;
        where the field takes text too, the value is cut back to the number's start and the
        model's own bytes are quoted (`"2,943.50`, `"1.2万`), for the reader to read.
        """
        token = row.refused_token
        frame = row.trail.stack[-1] if row.trail.stack else None
        if token is None or row.trail.in_string or frame is None or frame.kind != "object":
            return False
        match = _BARE_NUMBER.search(bytes(row.trail.text))
        word = self.guide.ll_tokenizer.decode_bytes([token])
        head = word.lstrip()[:1]
        if match is None or not word or (head and head in b'"{}[]:,'):
            return False
        value = match.group(1) + word
        return self._apply_cut(row, Cut(match.start(1), b'"' + value, "requote", None))

    def _structural_fix(self, row: RowState) -> bool:
        """Mend a refusal without choosing any of the value: True when that was enough.

        The bytes the grammar forces next (a string's opening quote a multi-byte token could not
        express) go in as they are; a bare value where text is asked for (`3,492.56` for a
        string the code reads later) is quoted, and the model's own token kept.
        """
        forced = bytes(row.matcher.compute_ff_bytes())
        if forced:
            return self._force(row, forced)
        if row.trail.in_string or row.refused_token is None:
            return False
        trial = row.matcher.deep_copy()
        quote = self.guide.ll_tokenizer.tokenize_bytes(b'"')
        if trial.try_consume_tokens(quote) != len(quote):
            return False
        if trial.try_consume_tokens([row.refused_token]) != 1:
            return False
        tokens = [*quote, row.refused_token][: row.remaining]
        if len(tokens) < len(quote) + 1:
            return False
        row.matcher = trial
        self._take(row, tokens)
        return True

    def _structural_intent(self, row: RowState) -> bool:
        """A refused token of punctuation the model meant: the part of it the grammar allows.

        After an object's last field the model often goes on as if another came: `",` closes
        the string and adds a comma the schema has no field for; a bare `,` ends a number the
        same way. The quote is kept (`",` → `"`), and a separator where the grammar takes no
        further item closes what is open (`}` or `]`): the model's own structure, with no
        engine call (a repair by logits re-encodes the row's whole prompt).
        """
        token = row.refused_token
        if token is None:
            return False
        word = self.guide.ll_tokenizer.decode_bytes([token])
        if not word or not set(word) <= _STRUCTURAL:
            return False
        for end in range(len(word) - 1, 0, -1):
            head = word[:end]
            if head.strip() and self._force_exactly(row, head):
                return True
        if word.strip() == b",":
            return any(self._force_exactly(row, close) for close in (b"}", b"]"))
        return False

    def _force_exactly(self, row: RowState, text: bytes) -> bool:
        """Force `text` when the grammar takes all of it and the row has room; else nothing."""
        if len(self.guide.ll_tokenizer.tokenize_bytes(text)) > row.remaining:
            return False
        if not self._force(row, text):
            return False
        self._fast_forward(row)
        return True

    def _take(self, row: RowState, tokens: Sequence[int]) -> None:
        """Accept tokens the matcher consumed, and act on a repeat or loop they complete."""
        cut = row.accept(tokens)
        if cut is not None and row.active:
            self._apply_cut(row, cut)

    def _apply_cut(self, row: RowState, cut: Cut) -> bool:
        """Cut the row back to `cut.offset` bytes and force `cut.then`; False if not allowed."""
        keep = sum(1 for end in row.ends if end <= cut.offset)
        start = row.ends[keep - 1] if keep else 0
        if cut.offset >= len(row.trail.text):
            return False
        trial = row.matcher.deep_copy()
        if not trial.rollback(len(row.ids) - keep):
            return False
        tail = bytes(row.trail.text[start : cut.offset]) + cut.then
        tokens = self.guide.ll_tokenizer.tokenize_bytes(tail)
        if len(tokens) > row.spec.max_new_tokens - keep:
            return False
        if trial.try_consume_tokens(tokens) != len(tokens):
            return False
        row.matcher = trial
        del row.ids[keep:], row.ends[keep:]
        row.trail = scan(bytes(row.trail.text[:start]))
        row.cut = None
        row.accept(tokens)
        if cut.field is not None:
            target = row.repaired_fields if cut.reason == "string_loop" else row.trimmed_fields
            target.add(cut.field)
        self._fast_forward(row)
        return True

    def _force(self, row: RowState, text: bytes) -> bool:
        tokens = self.guide.ll_tokenizer.tokenize_bytes(text)[: row.remaining]
        trial = row.matcher.deep_copy()
        if not tokens or trial.try_consume_tokens(tokens) != len(tokens):
            return False
        row.matcher = trial
        self._take(row, tokens)
        return True

    def _fast_forward(self, row: RowState) -> None:
        """Append the tokens the grammar forces next (keys, separators): no model call needed."""
        if not row.active:
            return
        forced = row.matcher.compute_ff_tokens()[: max(row.remaining, 0)]
        if forced and row.matcher.consume_tokens(forced):
            self._take(row, forced)

    def _output(self, row: RowState, elapsed: float) -> GuidedOutput:
        # Decode bytes, not skip-special text: the grammar allows only JSON bytes anyway.
        text = bytes(row.trail.text).decode("utf-8", errors="replace")
        finish = row.finish_reason
        if finish == "stop" and not row.complete and row.error is None:
            finish = "length"
        return GuidedOutput(
            token_ids=row.ids,
            text=text,
            finish_reason=finish,
            repairs=row.repairs,
            generate_seconds=elapsed,
            repaired_fields=sorted(row.repaired_fields),
            trimmed_fields=sorted(row.trimmed_fields),
            error=row.error,
            chosen=dict(row.chosen),
        )


__all__ = ["GuidedDecoder", "GuidedOutput", "GuidedRow"]
