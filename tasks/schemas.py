"""Job payloads and results: the single source of truth for validation on both sides.

Everything here is plain data and travels as JSON. The producer validates before sending; the
worker validates again, because a queue accepts messages from anyone who can reach it.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from qfleet.tasks.errors import InvalidJobError
from qfleet.tasks.extract_schema import check_extract_schema
from qfleet.tasks.retrieval import Citation, RetrievalSpec, SourceRef

# Hard caps, independent of any deployment's settings: nothing larger is ever valid.
MAX_TEXT_CHARS = 200_000
MAX_MESSAGES = 256
MAX_NEW_TOKENS = 32_768
MAX_STOP_SEQUENCES = 8
# Default token budgets, used by the schemas, the CLI and bulk runs alike: one place to change.
DEFAULT_MAX_TOKENS = 256
DEFAULT_EXTRACT_MAX_TOKENS = 512  # per document; also a bulk run's default for every item
# Validation context key: the deployment's schema limits (`tasks.limits` passes them), so the
# schema is walked once, against the tighter of the hard caps and this fleet's settings.
SCHEMA_LIMITS = "qfleet_schema_limits"

JobId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"),
]
Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length"]
Priority = Literal["interactive", "bulk"]


def new_job_id() -> str:
    """A fresh job id (uuid4 hex)."""
    return uuid.uuid4().hex


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChatMessage(_Model):
    """One ChatML turn."""

    role: Role
    content: str = Field(max_length=MAX_TEXT_CHARS)


class GenerateJob(_Model):
    """Generate a completion for a prompt or a ChatML conversation.

    Give either `prompt` (with an optional `system`) or `messages`. `temperature=0` is greedy
    decoding; `top_k=0` means no top-k cut.
    """

    kind: Literal["generate"] = "generate"
    job_id: JobId = Field(default_factory=new_job_id)
    prompt: str | None = Field(default=None, max_length=MAX_TEXT_CHARS)
    system: str | None = Field(default=None, max_length=MAX_TEXT_CHARS)
    messages: list[ChatMessage] | None = Field(default=None, min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int = Field(default=DEFAULT_MAX_TOKENS, ge=1, le=MAX_NEW_TOKENS)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0, le=1_000)
    stop: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=MAX_STOP_SEQUENCES
    )
    stream: bool = Field(default=False, description="Publish text pieces as they are generated.")
    priority: Priority = Field(
        default="interactive", description="interactive jobs are served before queued bulk jobs."
    )
    retrieval: RetrievalSpec | None = Field(
        default=None, description="Answer from knowledge-base passages (retrieved first)."
    )
    json_schema: dict[str, Any] | None = Field(
        default=None,
        description="Answer with one JSON object that validates against this schema (decoded "
        "under it, as extraction is; the schema is checked like an extraction schema).",
    )
    json_object: bool = Field(
        default=False, description="Answer with one JSON object (any keys): decoded under JSON."
    )

    @field_validator("json_schema")
    @classmethod
    def _guaranteed_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if schema is None else check_extract_schema(schema)

    @model_validator(mode="after")
    def _prompt_xor_messages(self) -> GenerateJob:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of `prompt` or `messages`")
        if self.json_schema is not None and self.json_object:
            raise ValueError("give at most one of `json_schema` or `json_object`")
        if self.messages is not None:
            if self.system is not None:
                raise ValueError("`system` goes with `prompt`; put a system turn in `messages`")
            if self.messages[-1].role == "assistant":
                raise ValueError("the last message must not be an assistant turn")
        return self

    def chat(self) -> list[ChatMessage]:
        """The conversation to render with the model's chat template."""
        if self.messages is not None:
            return list(self.messages)
        turns = [ChatMessage(role="system", content=self.system)] if self.system else []
        return [*turns, ChatMessage(role="user", content=self.prompt or "")]

    @property
    def structured(self) -> bool:
        """True when the answer must be one JSON object (decoded under a grammar)."""
        return self.json_schema is not None or self.json_object

    @property
    def greedy(self) -> bool:
        """True when decoding is deterministic."""
        return self.temperature == 0.0 or self.top_k == 1


class Usage(_Model):
    """Token counts of one job."""

    prompt_tokens: int
    completion_tokens: int


class Timings(_Model):
    """Where one job's time went, in milliseconds."""

    queued_ms: float = Field(description="From submit to the worker starting the job.")
    generate_ms: float = Field(description="Inside the engine.")
    total_ms: float = Field(description="From submit to the result being ready.")
    tokens_per_s: float = Field(description="completion_tokens / generate time.")


class ModelInfo(_Model):
    """Which model, on which device, produced a result."""

    id: str
    device: str
    compute_type: str


class JobResult(_Model):
    """A job that succeeded."""

    status: Literal["succeeded"] = "succeeded"
    job_id: str
    kind: Literal["generate"] = "generate"
    text: str
    finish_reason: FinishReason
    usage: Usage
    timings: Timings
    model: ModelInfo
    worker: str = Field(description="Hostname of the worker that ran the job.")
    batch_size: int = Field(default=1, description="Jobs generated in the same engine call.")
    sources: list[SourceRef] = Field(
        default_factory=list, description="Knowledge-base passages the answer was given with."
    )
    cached: bool = Field(default=False, description="Answered from the answer cache.")
    citations: list[Citation] = Field(
        default_factory=list,
        description="The [n] markers the answer uses, each checked against the passages given.",
    )
    abstained: bool = Field(
        default=False, description="The answer says the knowledge base does not hold it."
    )


class JobError(_Model):
    """A job that failed, with a message a user can act on."""

    status: Literal["failed"] = "failed"
    job_id: str
    code: str = Field(description="Stable machine-readable code, e.g. invalid_job.")
    message: str
    retryable: bool = False
    worker: str | None = None


# --- extraction ---------------------------------------------------------------------------------

MAX_DOCUMENTS_PER_JOB = 64
MAX_EXAMPLES = 8
DocumentId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,95}$"),
]


class ExtractDocument(_Model):
    """One document to extract an object from; `id` names its result."""

    id: DocumentId
    text: str = Field(max_length=MAX_TEXT_CHARS)


class ExtractExample(_Model):
    """A few-shot example: a document and the object it should give."""

    text: str = Field(max_length=MAX_TEXT_CHARS)
    output: dict[str, Any]


class ExtractJob(_Model):
    """Extract one object per document that validates against `json_schema`.

    The schema is checked (and normalised) on construction: keywords qfleet cannot guarantee are
    refused with their name. Documents of one job are decoded together in one batch.
    """

    kind: Literal["extract"] = "extract"
    job_id: JobId = Field(default_factory=new_job_id)
    documents: list[ExtractDocument] = Field(min_length=1, max_length=MAX_DOCUMENTS_PER_JOB)
    json_schema: dict[str, Any]
    instructions: str | None = Field(default=None, max_length=MAX_TEXT_CHARS)
    examples: list[ExtractExample] = Field(default_factory=list, max_length=MAX_EXAMPLES)
    max_tokens: int = Field(
        default=DEFAULT_EXTRACT_MAX_TOKENS, ge=1, le=MAX_NEW_TOKENS, description="Per document."
    )
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)

    @field_validator("json_schema")
    @classmethod
    def _guaranteed_schema(cls, schema: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        limits = (info.context or {}).get(SCHEMA_LIMITS, {})
        return check_extract_schema(schema, **limits)

    @model_validator(mode="after")
    def _unique_document_ids(self) -> ExtractJob:
        ids = [d.id for d in self.documents]
        if len(set(ids)) != len(ids):
            raise ValueError("document ids must be unique within a job")
        return self


ItemStatus = Literal["succeeded", "incomplete", "failed"]
# Where one field's value came from (docs/extraction.md, "Item status and provenance").
FieldSource = Literal["model", "normalised", "repaired", "closed"]


class ExtractItem(_Model):
    """The outcome for one document.

    `succeeded`: every value came from the model (as written, or read from its spelling by code)
    and the object validates. `incomplete`: code had to choose or leave out some values (the
    budget ran out, or no spelling could be read): `object` holds what there is and `code_fields`
    names the fields code chose or left out. `failed`: no object, with the reason.
    """

    id: str
    status: ItemStatus
    object: dict[str, Any] | None = None
    error_code: str | None = None
    error: str | None = None
    finish_reason: FinishReason | None = Field(
        default=None, description="length: the token budget ran out before the object closed."
    )
    provenance: dict[str, FieldSource] = Field(
        default_factory=dict, description="Per top-level field, where its value came from."
    )
    code_fields: list[str] = Field(
        default_factory=list, description="Fields whose value code chose or left out."
    )
    notes: dict[str, str] = Field(
        default_factory=dict, description="Per field, how an ambiguous spelling was read."
    )
    prompt_tokens: int = 0
    completion_tokens: int = 0
    repairs: int = Field(
        default=0, description="Tokens the decoder replaced to keep to the schema."
    )


class ExtractResult(_Model):
    """An extraction job that ran; each document succeeded or failed on its own."""

    status: Literal["succeeded"] = "succeeded"
    job_id: str
    kind: Literal["extract"] = "extract"
    items: list[ExtractItem]
    usage: Usage
    timings: Timings
    model: ModelInfo
    worker: str = Field(description="Hostname of the worker that ran the job.")


def _outcome_tag(data: Any) -> str:
    """Which outcome model `data` (a dict or a model) is: by status, then by job kind."""
    fields = data if isinstance(data, dict) else vars(data)
    if fields.get("status") == "failed":
        return "failed"
    return "extract" if fields.get("kind") == "extract" else "generate"


JobOutcome = Annotated[
    Annotated[JobResult, Tag("generate")]
    | Annotated[ExtractResult, Tag("extract")]
    | Annotated[JobError, Tag("failed")],
    Discriminator(_outcome_tag),
]


_OUTCOME: TypeAdapter[JobResult | ExtractResult | JobError] = TypeAdapter(JobOutcome)


def parse_outcome(data: object) -> JobResult | ExtractResult | JobError:
    """Validate a stored result as a `JobResult`, an `ExtractResult` or a `JobError`."""
    return _OUTCOME.validate_python(data)


def describe_validation_error(exc: ValidationError) -> str:
    """A one-line, user-facing summary of a pydantic validation error."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "job"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def validate_generate_job(payload: object) -> GenerateJob:
    """`payload` as a `GenerateJob`; raises `InvalidJobError` with every problem named."""
    if isinstance(payload, GenerateJob):
        return payload
    try:
        return GenerateJob.model_validate(payload)
    except ValidationError as exc:
        raise InvalidJobError(f"invalid generate job: {describe_validation_error(exc)}") from exc


def validate_extract_job(payload: object, context: dict[str, Any] | None = None) -> ExtractJob:
    """`payload` as an `ExtractJob`; raises `InvalidJobError` with every problem named.

    `context` may carry `SCHEMA_LIMITS` (keyword arguments of `check_extract_schema`).
    """
    if isinstance(payload, ExtractJob):
        return payload
    try:
        return ExtractJob.model_validate(payload, context=context)
    except ValidationError as exc:
        raise InvalidJobError(f"invalid extract job: {describe_validation_error(exc)}") from exc


AnyJob = GenerateJob | ExtractJob


def validate_job(payload: object) -> AnyJob:
    """`payload` as the job its `kind` names (generate when it names none)."""
    if isinstance(payload, GenerateJob | ExtractJob):
        return payload
    kind = payload.get("kind", "generate") if isinstance(payload, dict) else None
    if kind == "extract":
        return validate_extract_job(payload)
    return validate_generate_job(payload)
