"""Embedding jobs (`qfleet.embed`): texts in, unit vectors of the knowledge base's embedder out."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from qfleet.tasks.schemas import JobId, new_job_id

# One request's worth: OpenAI accepts 2048 inputs; a deployment may allow fewer (settings).
MAX_EMBED_INPUTS = 2048
# The embedder truncates to its own window (256 tokens for MiniLM); this bounds the payload.
MAX_EMBED_CHARS = 32_000
EmbedText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_EMBED_CHARS)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmbedJob(_Model):
    """Embed `input` texts, in order."""

    kind: Literal["embed"] = "embed"
    job_id: JobId = Field(default_factory=new_job_id)
    input: list[EmbedText] = Field(min_length=1, max_length=MAX_EMBED_INPUTS)


class EmbedResult(_Model):
    """One L2-normalised vector per input text, in order, and what made them."""

    status: Literal["succeeded"] = "succeeded"
    kind: Literal["embed"] = "embed"
    job_id: str
    model: str
    dim: int
    vectors: list[list[float]]
    prompt_tokens: int
    worker: str
