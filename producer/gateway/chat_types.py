"""Request and response bodies of `POST /v1/chat/completions`, named as the OpenAI API names them.

Fields qfleet cannot honour are refused with a 400 naming them (`n` other than 1, tools, log
probabilities); fields that change nothing here are accepted and documented as ignored (`seed`,
`user`, `metadata`, `store`, penalties left at 0). Unknown fields are ignored, as newer SDKs send
fields older servers do not know.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from qfleet.tasks.retrieval import RetrievalSpec, SourceRef


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextContentPart(_Body):
    """One part of a message's content; only text parts are supported."""

    type: Literal["text"]
    text: str


class ChatCompletionMessage(_Body):
    """One message of the conversation (`developer` is read as `system`)."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text, its parts joined."""
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class JsonSchemaFormat(_Body):
    """`response_format.json_schema`: the schema the answer must validate against."""

    name: str = Field(max_length=64)
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Body):
    """`response_format`: plain text, any JSON object, or an object of a JSON Schema."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(_Body):
    """`stream_options`: `include_usage` adds a last chunk with the usage."""

    include_usage: bool = False


class QfleetOptions(_Body):
    """The qfleet extension field: `{"qfleet": {"retrieval": {"top_k": 4, "filters": {}}}}`."""

    model_config = ConfigDict(extra="forbid")

    retrieval: RetrievalSpec | None = None


class ChatCompletionRequest(_Body):
    """`POST /v1/chat/completions` body."""

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatCompletionMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, description="Accepted and ignored.")
    n: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | None = None
    tools: list[dict[str, Any]] | None = None
    functions: list[dict[str, Any]] | None = None
    user: str | None = None
    qfleet: QfleetOptions | None = None


class ChatMessageOut(BaseModel):
    """The assistant's message in a response."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None


class ChatChoice(BaseModel):
    """One choice of a `ChatCompletion` (always index 0: n is 1)."""

    index: int = 0
    message: ChatMessageOut
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class CompletionUsage(BaseModel):
    """Token counts of one completion."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class QfleetInfo(BaseModel):
    """qfleet's extension of a response: the job behind it and the sources it was given."""

    job_id: str
    worker: str | None = None
    cached: bool = False
    sources: list[SourceRef] = Field(default_factory=list)


class ChatCompletion(BaseModel):
    """A finished chat completion (`object: chat.completion`)."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: CompletionUsage
    system_fingerprint: str | None = None
    qfleet: QfleetInfo


class ChoiceDelta(BaseModel):
    """What one chunk adds to the message."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    """One choice of a chunk."""

    index: int = 0
    delta: ChoiceDelta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One Server-Sent Event of a streamed completion (`object: chat.completion.chunk`)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
    qfleet: QfleetInfo | None = None
