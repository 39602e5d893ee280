"""Schema-guaranteed JSON decoding around CTranslate2: speculate, check, repair.

CTranslate2's Python API has no logits processor, so a token mask cannot be applied inside its
decoding loop. What it does offer is a per-token callback that can stop a row and, with
`return_logits_vocab=True`, that step's logits. So each row *speculates*: the model generates
freely while the callback advances an llguidance matcher (compiled from the JSON Schema) token by
token (~7 µs each). At the first token the grammar refuses, the row stops; the decoder masks that
step's logits with the grammar's allowed set, appends the best allowed token (a *repair*) plus any
tokens the grammar forces next (keys, separators), and generation resumes from prompt + accepted
tokens. A good model rarely needs a repair, so the cost stays close to plain generation of the
same tokens; a random model is repaired at almost every token and still produces valid JSON.

When a row's token budget runs out before its object is closed, the decoder finishes it alone:
it keeps choosing the allowed token that closes the most (quotes, brackets), so even a cut-off
object parses and validates (its item says `finish_reason="length"`).

Every document of a job decodes in the same `generate_batch` call; the prompt prefix all rows
share (system turn, schema, examples) goes in as `static_prompt`, which CTranslate2 encodes once
and caches across calls and repairs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ctranslate2
import llguidance
import numpy as np
from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

from qfleet.tasks.errors import PermanentError
from qfleet.tasks.schemas import FinishReason
from qfleet.workers.engine.chat import ChatTokenizer

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

# Python's json.dumps separators: what models have seen most, so the fewest repairs.
JSON_STYLE: JsonCompileOptions = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
}
# A shared prefix shorter than this is not worth a static-prompt cache entry.
MIN_STATIC_PROMPT_TOKENS = 16
# How much a byte moves JSON towards its end, outside strings, for finishing a row whose budget
# ran out: brackets close; separators, openers and more digits (a longer number) delay the end.
# A zero or a minus is the worse digit: "-0.000..." can stay below a bound forever.
_OUTSIDE_BYTE_WEIGHT = {
    **{ord(c): 3.0 for c in "}]"},
    **{ord(c): -1.0 for c in "{[,:"},
    **{ord(c): -1.5 for c in "123456789"},
    ord("0"): -1.55,
    ord("-"): -1.6,
    **{ord(c): -2.0 for c in ".eE"},
}

# `format: date` as the exact set of dates Python's `date.fromisoformat` (and so jsonschema's
# format checker) accepts: llguidance's own date format lets through 0000-01-01 and 2023-02-29.
_YEAR = "(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_LEAP_2 = "(0[48]|[2468][048]|[13579][26])"
_MONTH_DAY = (
    "((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
    "|02-(0[1-9]|1[0-9]|2[0-8]))"
)
DATE_PATTERN = f"^({_YEAR}-{_MONTH_DAY}|([0-9]{{2}}{_LEAP_2}|{_LEAP_2}00)-02-29)$"


class SchemaDecodingError(PermanentError):
    """The schema could not be compiled into a grammar."""

    code = "unsupported_schema"


@dataclass
class GuidedOutput:
    """One row's decoded object text and how it was obtained."""

    token_ids: list[int]
    text: str
    finish_reason: FinishReason
    repairs: int
    generate_seconds: float
    error: str | None = None


class SchemaGuide:
    """The llguidance side of one model: its token table and compiled grammars."""

    def __init__(self, model_dir: Path, tokenizer: ChatTokenizer) -> None:
        self.vocab_size = _model_vocab_size(model_dir, tokenizer)
        # Rows of the model's embedding beyond the tokenizer's vocabulary are padding: llguidance
        # sees them as empty tokens and never allows them, and `allowed` masks them again.
        self.known_tokens = tokenizer.tokenizer.get_vocab_size(with_added_tokens=True)
        self.ll_tokenizer = llguidance.LLTokenizer(
            str(model_dir / "tokenizer.json"),
            n_vocab=self.vocab_size,
            eos_token=tokenizer.end_token_ids,
        )
        self._closing_scores: tuple[np.ndarray, np.ndarray] | None = None

    @lru_cache(maxsize=64)  # noqa: B019 - one guide per model, living as long as the process
    def grammar(self, schema_json: str) -> str:
        """The llguidance grammar for a (normalised) JSON Schema given as JSON text."""
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(
                grammar_schema(json.loads(schema_json)), overrides=JSON_STYLE
            )
        except (ValueError, RuntimeError) as exc:
            raise SchemaDecodingError(f"the schema cannot be compiled: {exc}") from exc
        failed, problems = llguidance.LLMatcher.validate_grammar_with_warnings(
            grammar, self.ll_tokenizer
        )
        if failed:
            raise SchemaDecodingError(f"the schema cannot be compiled: {problems}")
        return grammar

    def matcher(self, grammar: str) -> llguidance.LLMatcher:
        """A fresh matcher at the start of `grammar`."""
        return llguidance.LLMatcher(self.ll_tokenizer, grammar)

    def allowed(self, matcher: llguidance.LLMatcher) -> np.ndarray:
        """Boolean mask over the model's vocabulary of the tokens `matcher` accepts next."""
        bitmask = allocate_token_bitmask(1, self.vocab_size)
        fill_next_token_bitmask(matcher, bitmask)
        bits = np.unpackbits(bitmask.view(np.uint8), bitorder="little")[: self.vocab_size]
        mask = bits.astype(bool)
        mask[self.known_tokens :] = False
        return mask

    def closing_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """Per token, how much it closes: outside a JSON string, and inside one (built once)."""
        if self._closing_scores is None:
            outside = np.zeros(self.vocab_size, dtype=np.float32)
            inside = np.zeros(self.vocab_size, dtype=np.float32)
            for token in range(min(self.known_tokens, self.vocab_size)):
                raw = self.ll_tokenizer.decode_bytes([token])
                # Shorter tokens first among equals: fewer bytes, fewer chances to open more.
                outside[token] = _closing_weight(raw, inside=False) - 0.001 * len(raw)
                inside[token] = _closing_weight(raw, inside=True) - 0.001 * len(raw)
            self._closing_scores = (outside, inside)
        return self._closing_scores


def _closing_weight(raw: bytes, *, inside: bool) -> float:
    """How far `raw` moves JSON towards its end, starting inside a string or not."""
    weight = 0.0
    for byte in raw:
        if byte == 0x22:  # a quote closes the string it is in, or opens one
            weight += 3.0 if inside else -1.0
            inside = not inside
        elif not inside:
            weight += _OUTSIDE_BYTE_WEIGHT.get(byte, 0.0)
    return weight


def _inside_string(text: bytes) -> bool:
    """Whether JSON `text` ends inside a string literal."""
    inside = escaped = False
    for byte in text:
        if escaped:
            escaped = False
        elif inside and byte == 0x5C:  # backslash
            escaped = True
        elif byte == 0x22:  # quote
            inside = not inside
    return inside


def grammar_schema(schema: Any) -> Any:
    """`schema` with every `format: date` replaced by the exact date pattern."""
    if isinstance(schema, list):
        return [grammar_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: grammar_schema(value) for key, value in schema.items()}
    if out.get("format") == "date":
        del out["format"]
        out["pattern"] = DATE_PATTERN
    return out


def _model_vocab_size(model_dir: Path, tokenizer: ChatTokenizer) -> int:
    vocabulary = model_dir / "vocabulary.json"
    if vocabulary.is_file():
        return len(json.loads(vocabulary.read_text(encoding="utf-8")))
    return int(tokenizer.tokenizer.get_vocab_size(with_added_tokens=True))


@dataclass
class _GuidedRow:
    """Decoding state of one document."""

    prompt_ids: list[int]
    matcher: llguidance.LLMatcher
    budget: int
    ids: list[int] = field(default_factory=list)
    repairs: int = 0
    refused: bool = False
    complete: bool = False
    finish_reason: FinishReason = "stop"
    error: str | None = None

    @property
    def active(self) -> bool:
        return not self.complete and self.error is None

    @property
    def remaining(self) -> int:
        return self.budget - len(self.ids)

    def accept(self, tokens: Sequence[int]) -> None:
        """Append tokens the matcher already consumed; mark the row complete when it is."""
        self.ids.extend(tokens)
        if self.matcher.is_accepting():
            self.complete = True

    def on_token(self, step: ctranslate2.GenerationStepResult) -> bool:
        """The speculation callback; True stops this row in the current call."""
        if not self.active:
            return True
        if self.matcher.try_consume_tokens([step.token_id]) != 1:
            self.refused = True
            return True
        self.accept([step.token_id])
        return self.complete or self.remaining <= 0


def _to_numpy(logits: Any) -> np.ndarray:
    # Results hold logits per hypothesis, per step; one hypothesis, one step here.
    while isinstance(logits, list):
        logits = logits[-1]
    if logits.device != "cpu":
        logits = logits.to_device(ctranslate2.Device.cpu)
    return np.array(logits, dtype=np.float32).reshape(-1)


class GuidedDecoder:
    """Decodes a batch of prompts into objects their schema's grammar accepts."""

    def __init__(
        self, generator: ctranslate2.Generator, tokenizer: ChatTokenizer, guide: SchemaGuide
    ) -> None:
        self.generator = generator
        self.tokenizer = tokenizer
        self.guide = guide

    def decode(
        self,
        prompts: Sequence[list[int]],
        schema: dict[str, Any],
        *,
        max_new_tokens: int,
        sampling: dict[str, float | int] | None = None,
        static_length: int = 0,
    ) -> list[GuidedOutput]:
        """One object per prompt; outputs are in the order of `prompts`.

        `static_length` leading tokens, the same in every prompt (system turn, schema, examples;
        never the document), go to CTranslate2 as a cached static prompt.
        """
        # Not sort_keys: the grammar emits properties in the schema's order.
        grammar = self.guide.grammar(json.dumps(schema))
        rows = [
            _GuidedRow(
                prompt_ids=list(p), matcher=self.guide.matcher(grammar), budget=max_new_tokens
            )
            for p in prompts
        ]
        static = prompts[0][:static_length] if static_length >= MIN_STATIC_PROMPT_TOKENS else []
        if any(len(p) <= len(static) or p[: len(static)] != static for p in prompts):
            static = []
        started = time.perf_counter()
        for row in rows:
            self._fast_forward(row)
        while any(row.active and row.remaining > 0 for row in rows):
            self._speculate([r for r in rows if r.active and r.remaining > 0], static, sampling)
            for row in rows:
                if row.refused:
                    self._repair(row, static)
        for row in rows:
            if row.active:
                self._close(row)
        elapsed = time.perf_counter() - started
        return [self._output(row, elapsed) for row in rows]

    def _speculate(
        self, rows: list[_GuidedRow], static: list[int], sampling: dict[str, float | int] | None
    ) -> None:
        """Let the model generate for `rows` until each is refused, complete or out of budget."""
        inputs = [row.prompt_ids + row.ids for row in rows]
        self.generator.generate_batch(
            [self.tokenizer.tokens(ids[len(static) :]) for ids in inputs],
            static_prompt=self.tokenizer.tokens(static) if static else None,
            max_length=max(row.remaining for row in rows),
            include_prompt_in_result=False,
            end_token=self.tokenizer.end_token_ids,
            callback=lambda step: rows[step.batch_id].on_token(step),
            **(sampling or {"sampling_topk": 1}),
        )

    def _next_logits(self, row: _GuidedRow, static: list[int]) -> np.ndarray:
        """The model's logits for the row's next token.

        One row per call on purpose: in a batched call (CTranslate2 4.8) the logits handed to
        the callback and returned in results do not line up with their rows once prompts differ
        in length, while a single row's are exact. Speculation runs without logits, so only a
        repair pays for this call.
        """
        inputs = row.prompt_ids + row.ids
        [result] = self.generator.generate_batch(
            [self.tokenizer.tokens(inputs[len(static) :])],
            static_prompt=self.tokenizer.tokens(static) if static else None,
            max_length=1,
            include_prompt_in_result=False,
            end_token=[],
            return_logits_vocab=True,
            sampling_topk=1,
        )
        return _to_numpy(result.logits[-1])

    def _repair(self, row: _GuidedRow, static: list[int]) -> None:
        """Replace the refused token with the best token the grammar allows."""
        row.refused = False
        logits = self._next_logits(row, static)
        allowed = self.guide.allowed(row.matcher)
        if not allowed.any():
            row.error = "the grammar allows no next token"
            return
        best = int(np.argmax(np.where(allowed[: logits.size], logits[: allowed.size], -np.inf)))
        if not row.matcher.consume_token(best):
            row.error = f"the grammar refused its own allowed token {best}"
            return
        row.repairs += 1
        row.accept([best])
        self._fast_forward(row)

    def _fast_forward(self, row: _GuidedRow) -> None:
        """Append the tokens the grammar forces next (keys, separators): no model call needed."""
        if not row.active:
            return
        forced = row.matcher.compute_ff_tokens()
        if forced and row.matcher.consume_tokens(forced):
            row.accept(forced)

    def _close(self, row: _GuidedRow) -> None:
        """Finish an object whose budget ran out, by the most closing allowed token each step."""
        row.finish_reason = "length"
        outside, inside = self.guide.closing_scores()
        for _ in range(4 * row.budget + 512):
            if not row.active:
                return
            allowed = self.guide.allowed(row.matcher)
            if not allowed.any():
                break
            text = self.guide.ll_tokenizer.decode_bytes(row.ids)
            score = inside if _inside_string(text) else outside
            token = int(np.argmax(np.where(allowed, score, -np.inf)))
            if not row.matcher.consume_token(token):
                break
            row.accept([token])
        if row.active:
            row.error = f"the object could not be closed within {row.budget} tokens"

    def _output(self, row: _GuidedRow, elapsed: float) -> GuidedOutput:
        # Decode bytes, not skip-special text: the grammar allows only JSON bytes anyway.
        text = self.guide.ll_tokenizer.decode_bytes(row.ids).decode("utf-8", errors="replace")
        return GuidedOutput(
            token_ids=row.ids,
            text=text,
            finish_reason=row.finish_reason,
            repairs=row.repairs,
            generate_seconds=elapsed,
            error=row.error,
        )
