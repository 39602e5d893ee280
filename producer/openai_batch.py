"""OpenAI Batch API files: read its input lines, write its output and error lines.

An input line is `{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": {...}}`.
A body with `response_format: {"type": "json_schema", "json_schema": {"schema": ...}}` becomes a
schema-guaranteed extraction (system turns → instructions, user turns → the document); any other
body becomes a generate job. Output lines carry `response: {status_code, request_id, body}` with a
`chat.completion` body; failed requests go to the error file with `error: {code, message}`.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from qfleet.tasks.errors import InvalidJobError

CHAT_COMPLETIONS_URL = "/v1/chat/completions"


class _Loose(BaseModel):
    # OpenAI bodies carry many fields qfleet does not use (n, seed, logprobs...): kept, ignored.
    model_config = ConfigDict(extra="allow")


class OpenAIMessage(_Loose):
    """A chat message; content as a string or a list of text parts."""

    role: str
    content: str | list[dict[str, Any]]

    def text(self) -> str:
        """The message's text, text parts joined."""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(part.get("text", "")) for part in self.content)


class OpenAIBody(_Loose):
    """The part of a chat-completions request body qfleet reads."""

    model: str | None = None
    messages: list[OpenAIMessage] = Field(min_length=1)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    response_format: dict[str, Any] | None = None

    def json_schema(self) -> dict[str, Any] | None:
        """The schema of a `json_schema` response format, else None."""
        fmt = self.response_format or {}
        if fmt.get("type") != "json_schema":
            return None
        schema = (fmt.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise InvalidJobError("response_format.json_schema.schema must be a JSON object")
        return schema


class OpenAIRequest(_Loose):
    """One line of an OpenAI batch input file."""

    custom_id: str = Field(min_length=1, max_length=512)
    method: str = "POST"
    url: str
    body: OpenAIBody


def parse_request(line: dict[str, Any]) -> OpenAIRequest:
    """Validate one input line; only chat completions are accepted."""
    request = OpenAIRequest.model_validate(line)
    if request.url != CHAT_COMPLETIONS_URL or request.method.upper() != "POST":
        raise InvalidJobError(
            f"{request.custom_id}: only POST {CHAT_COMPLETIONS_URL} is supported, "
            f"got {request.method} {request.url}"
        )
    return request


def _request_id(custom_id: str) -> str:
    return "batch_req_" + hashlib.sha256(custom_id.encode()).hexdigest()[:24]


def output_line(
    custom_id: str,
    *,
    job_id: str,
    model: str,
    content: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    """A successful request, as OpenAI writes it to a batch output file."""
    return {
        "id": _request_id(custom_id),
        "custom_id": custom_id,
        "response": {
            "status_code": 200,
            "request_id": job_id,
            "body": {
                "id": f"chatcmpl-{job_id}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        },
        "error": None,
    }


def error_line(custom_id: str, *, code: str, message: str) -> dict[str, Any]:
    """A failed request, as OpenAI writes it to a batch error file."""
    return {
        "id": _request_id(custom_id),
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }
