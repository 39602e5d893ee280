"""Closed choices decided by the model's calibrated scores, not its first-listed habit.

Asked for one of a schema's options (`"category": one of "business", "technology", ...`) or a
boolean, a small model tends to write the option the prompt lists first, or `true`, whatever
the document says: its prior, not its reading. Where a row starts such a value, the decoder
compares the model's scores of the options' first tokens with the scores the same prompt gets
with no document at all (one short call per field and schema, kept per model by
`SchemaGuide`), and takes the option the document raised most (contextual calibration: Zhao
et al., "Calibrate Before Use", 2021). The logits come from the speculating call itself
(`return_logits_vocab`): CTranslate2 hands the step's logits for every row still decoding, in
batch order, to the first such row's callback, and they are exact when the call's inputs are
equally long (padded), so no extra call is made per document.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qfleet.workers.engine.json_trail import JsonTrail


@dataclass
class Choice:
    """One root field whose value is one of a few options."""

    options: list[bytes]  # each option as written after the value's start (`health"`, ` false`)
    first_tokens: list[int]  # the token each option starts with; distinct
    quoted: bool  # a string option (decided after the opening quote) or a bare literal
    prior_prompt: list[int]  # the prompt with no document, up to where the value starts
    prior: np.ndarray | None = None  # log-probabilities of the options given `prior_prompt`

    def pick(self, logits: np.ndarray) -> int:
        """The option the document raised most over the document-free prior."""
        scores = _log_softmax(logits[self.first_tokens])
        prior = self.prior if self.prior is not None else np.zeros_like(scores)
        return int(np.argmax(scores - prior))

    def set_prior(self, logits: np.ndarray) -> None:
        self.prior = _log_softmax(logits[self.first_tokens])


def choice_here(trail: JsonTrail, choices: dict[str, Choice], decided: set[str]) -> str | None:
    """The field whose choice the next token makes, if the row is at such a value's start."""
    name = trail.field
    if name is None or name not in choices or name in decided or len(trail.stack) != 1:
        return None
    text = bytes(trail.text[-3:])
    if choices[name].quoted:
        return name if trail.in_string and text.endswith(b': "') else None
    return name if not trail.in_string and not trail.in_key and text.endswith(b'":') else None


def _log_softmax(values: np.ndarray) -> np.ndarray:
    shifted = values.astype(np.float64) - float(np.max(values))
    result: np.ndarray = shifted - np.log(np.exp(shifted).sum())
    return result
