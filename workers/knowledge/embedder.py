"""Sentence embeddings through a CTranslate2 encoder: tokenize, encode, mean-pool, L2-normalise.

Serving needs ctranslate2, tokenizers and numpy only. The pooled vector matches what
sentence-transformers returns: the attention-masked mean of `last_hidden_state` (not BERT's
`pooler_output`, which is the CLS token through a tanh layer), divided by its L2 norm.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import ctranslate2
import numpy as np
from tokenizers import Tokenizer

from qfleet.tasks.errors import ModelUnavailableError
from qfleet.workers.engine.model import resolve_compute_type, resolve_device

EMBEDDER_MANIFEST = "qfleet-embedder.json"


class TextEmbedder(Protocol):
    """Anything that turns texts into unit-length vectors (swap in a multilingual model here)."""

    model_id: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised float32 row per text."""

    def count_tokens(self, text: str) -> int:
        """How many tokens `text` takes in this model (without special tokens)."""

    def unknown_ratio(self, text: str) -> float:
        """Share of `text`'s tokens the model cannot read (weights the dense signal)."""


@dataclass(frozen=True)
class EmbedderManifest:
    """`qfleet-embedder.json`: what a converted embedder folder holds."""

    model_id: str
    dim: int
    max_seq_length: int
    raw: dict[str, Any]

    @classmethod
    def read(cls, model_dir: Path) -> EmbedderManifest:
        """The manifest of `model_dir`; raises `ModelUnavailableError` when there is none."""
        path = model_dir / EMBEDDER_MANIFEST
        if not path.is_file():
            raise ModelUnavailableError(
                f"{model_dir} is not a converted embedder (no {EMBEDDER_MANIFEST}); build one "
                "with `qfleet model embedder`"
            )
        raw = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            model_id=str(raw["model_id"]),
            dim=int(raw["dim"]),
            max_seq_length=int(raw["max_seq_length"]),
            raw=raw,
        )


class Embedder:
    """A CTranslate2 encoder with its tokenizer; thread-safe (CTranslate2 queues the calls)."""

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "auto",
        compute_type: str = "auto",
        cpu_threads: int = 0,
        batch_size: int = 32,
    ) -> None:
        self.manifest = EmbedderManifest.read(model_dir)
        self.model_id = self.manifest.model_id
        self.dim = self.manifest.dim
        self.device = resolve_device(device)
        self.compute_type = resolve_compute_type(compute_type, self.device)
        self.batch_size = batch_size
        self._encoder = ctranslate2.Encoder(
            str(model_dir),
            device=self.device,
            compute_type=self.compute_type,
            intra_threads=cpu_threads,
        )
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(self.manifest.max_seq_length)
        self._tokenizer.no_padding()
        self._bare = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._bare.no_truncation()
        self._bare.no_padding()
        self._unk_id = _unknown_token_id(self._bare)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised float32 row per text, computed in batches of similar length."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        # Length-sorted batches waste less compute on padding.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = self._embed_batch([encodings[i].ids for i in rows])
        return out

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` without special tokens (for token-aware chunking)."""
        return len(self._bare.encode(text, add_special_tokens=False).ids)

    def unknown_ratio(self, text: str) -> float:
        """Share of `text`'s tokens the model does not know ([UNK]): 0 for text it can read."""
        encoding = self._bare.encode(text, add_special_tokens=False)
        if not encoding.ids or self._unk_id is None:
            return 0.0
        return sum(i == self._unk_id for i in encoding.ids) / len(encoding.ids)

    def tokenize_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each token of `text` (without special tokens)."""
        return list(self._bare.encode(text, add_special_tokens=False).offsets)

    def _embed_batch(self, ids: list[list[int]]) -> np.ndarray:
        # Ragged rows: CTranslate2 pads them itself and masks the padding in attention.
        lengths = [len(row) for row in ids]
        output = self._encoder.forward_batch(ids)
        hidden = _to_numpy(output.last_hidden_state)
        return mean_pool_normalise(hidden, np.asarray(lengths))


def mean_pool_normalise(hidden: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Attention-masked mean over time, then L2 normalisation (as sentence-transformers does).

    Args:
        hidden: `[batch, time, dim]` last hidden states.
        lengths: real (unpadded) length of each row.
    """
    mask = (np.arange(hidden.shape[1])[None, :] < lengths[:, None]).astype(np.float32)
    summed = (hidden * mask[:, :, None]).sum(axis=1)
    mean = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
    norms = np.linalg.norm(mean, axis=1, keepdims=True)
    result: np.ndarray = (mean / np.maximum(norms, 1e-12)).astype(np.float32)
    return result


def _unknown_token_id(tokenizer: Tokenizer) -> int | None:
    model = json.loads(tokenizer.to_str()).get("model", {})
    unk = model.get("unk_token")
    return tokenizer.token_to_id(unk) if isinstance(unk, str) else None


def _to_numpy(view: Any) -> np.ndarray:
    # A StorageView on CUDA must come to the host first; on CPU it exposes the array interface.
    if getattr(view, "device", "cpu") != "cpu":
        view = view.to_device(ctranslate2.Device.cpu)
    return np.array(view, dtype=np.float32)
