"""Schema grammars for guided decoding: llguidance's side of one model.

`SchemaGuide` holds the model's token table for llguidance and compiles a JSON Schema into a
grammar (cached per schema). The decoding loop that uses it is `guided.py`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import llguidance
import numpy as np
from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

from qfleet.tasks.errors import PermanentError
from qfleet.workers.engine.chat import ChatTokenizer

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

# Python's json.dumps separators: what models have seen most, so the fewest repairs.
JSON_STYLE: JsonCompileOptions = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
}
# Document-free scores of closed choices a guide keeps (one per field of each recent schema).
PRIORS_KEPT = 256
# A shared prefix shorter than this is not worth a static-prompt cache entry.
MIN_STATIC_PROMPT_TOKENS = 16
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
        # Closed choices' document-free scores by (prompt, option tokens): guided_choice.py.
        self.priors: dict[tuple[tuple[int, ...], tuple[int, ...]], np.ndarray] = {}

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

    def remember_prior(
        self, key: tuple[tuple[int, ...], tuple[int, ...]], prior: np.ndarray | None
    ) -> None:
        """Keep a choice's document-free scores (at most PRIORS_KEPT: then start afresh)."""
        if prior is None:
            return
        if len(self.priors) >= PRIORS_KEPT:
            self.priors.clear()
        self.priors[key] = prior

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


def grammar_schema(schema: Any) -> Any:
    """`schema` as llguidance takes it: exact date pattern, `uniqueItems` left to the decoder."""
    if isinstance(schema, list):
        return [grammar_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: grammar_schema(value) for key, value in schema.items()}
    # Not a grammar: the decoder ends such an array at its first repeated item (json_trail.py).
    if out.get("uniqueItems") is True:
        del out["uniqueItems"]
    if out.get("format") == "date":
        del out["format"]
        out["pattern"] = DATE_PATTERN
    return out


def _model_vocab_size(model_dir: Path, tokenizer: ChatTokenizer) -> int:
    vocabulary = model_dir / "vocabulary.json"
    if vocabulary.is_file():
        return len(json.loads(vocabulary.read_text(encoding="utf-8")))
    return int(tokenizer.tokenizer.get_vocab_size(with_added_tokens=True))
