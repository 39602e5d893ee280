"""From an OpenAI chat request to a qfleet `GenerateJob`, and from its result to the response.

Every refusal is an `ApiError` naming the request field, raised before anything is enqueued.
"""

from __future__ import annotations

from typing import Any

from qfleet.producer.gateway.chat_types import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessageOut,
    CompletionUsage,
    QfleetInfo,
)
from qfleet.producer.gateway.errors import ApiError
from qfleet.tasks.errors import InvalidJobError, JobFailedError
from qfleet.tasks.extract_schema import UnsupportedSchemaError
from qfleet.tasks.limits import parse_generate_job
from qfleet.tasks.schemas import GenerateJob, JobResult
from qfleet.tasks.settings import Settings

# OpenAI's own default when a request names no temperature.
DEFAULT_TEMPERATURE = 1.0
# A request that names no token limit gets this many (OpenAI's is the model's whole context).
DEFAULT_MAX_TOKENS = 256
SCHEMA_PARAM = "response_format.json_schema.schema"
# Job error codes → HTTP status of the gateway's answer.
JOB_ERROR_STATUS = {
    "invalid_job": 400,
    "prompt_too_long": 400,
    "unsupported_schema": 400,
    "cancelled": 409,
    "timeout": 504,
    "model_unavailable": 503,
    "store_unavailable": 503,
    "not_found": 404,
}


def refuse_unsupported(body: ChatCompletionRequest) -> None:
    """400 for a field qfleet cannot honour, naming it."""
    if body.n not in (None, 1):
        raise ApiError(400, "only n=1 is supported", param="n", code="unsupported_value")
    for name in ("tools", "functions"):
        if getattr(body, name):
            raise ApiError(400, f"`{name}` is not supported", param=name, code="unsupported_value")
    if body.logprobs:
        raise ApiError(
            400, "logprobs are not supported", param="logprobs", code="unsupported_value"
        )
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(body, name) not in (None, 0, 0.0):
            raise ApiError(400, f"`{name}` is not supported", param=name, code="unsupported_value")
    format_ = body.response_format
    if format_ is not None and format_.type == "json_schema" and format_.json_schema is None:
        raise ApiError(
            400, "response_format json_schema needs `json_schema`",
            param="response_format.json_schema", code="invalid_value",
        )  # fmt: skip


def generate_job(body: ChatCompletionRequest, settings: Settings) -> GenerateJob:
    """The job that answers `body` (validated against the job schema and this fleet's limits)."""
    refuse_unsupported(body)
    fields = _job_fields(body)
    try:
        return parse_generate_job(fields, settings)
    except UnsupportedSchemaError as exc:
        raise ApiError(400, str(exc), param=SCHEMA_PARAM, code="unsupported_schema") from exc
    except InvalidJobError as exc:
        raise ApiError(400, str(exc), param=_param_of(str(exc)), code="invalid_value") from exc


def _job_fields(body: ChatCompletionRequest) -> dict[str, Any]:
    messages = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        for m in body.messages
    ]
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    fields: dict[str, Any] = {
        "messages": messages,
        "max_tokens": body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS,
        "temperature": DEFAULT_TEMPERATURE if body.temperature is None else body.temperature,
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "stop": stop,
        "stream": bool(body.stream),
        "priority": "interactive",
    }
    if body.qfleet is not None and body.qfleet.retrieval is not None:
        fields["retrieval"] = body.qfleet.retrieval.model_dump(mode="json")
    format_ = body.response_format
    if format_ is not None and format_.type == "json_object":
        fields["json_object"] = True
    elif format_ is not None and format_.json_schema is not None:
        fields["json_schema"] = format_.json_schema.schema_
    return fields


def _param_of(message: str) -> str | None:
    """The request field an `invalid generate job: <field>: ...` message is about."""
    text = message.removeprefix("invalid generate job: ")
    field = text.split(":", 1)[0].split(".", 1)[0].strip()
    known = {"messages", "max_tokens", "temperature", "top_p", "stop"}
    if field in known:
        return field
    return "max_tokens" if "max_tokens" in message else None


def completion(job: GenerateJob, result: JobResult, model: str) -> ChatCompletion:
    """The `ChatCompletion` for a finished job."""
    usage = result.usage
    return ChatCompletion(
        id=completion_id(job.job_id),
        model=model,
        choices=[
            ChatChoice(
                message=ChatMessageOut(content=result.text), finish_reason=result.finish_reason
            )
        ],
        usage=CompletionUsage(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.prompt_tokens + usage.completion_tokens,
        ),
        qfleet=QfleetInfo(
            job_id=job.job_id, worker=result.worker, cached=result.cached, sources=result.sources
        ),
    )


def completion_id(job_id: str) -> str:
    """The OpenAI-style id of the completion a job answers."""
    return f"chatcmpl-{job_id}"


def job_failure(exc: JobFailedError) -> ApiError:
    """The HTTP error for a job that ended with a `JobError`."""
    error = exc.error
    status = JOB_ERROR_STATUS.get(error.code, 500)
    return ApiError(status, error.message, code=error.code)
