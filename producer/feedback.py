"""Feedback on a job's output: a verdict and, when wrong, the answer it should have given.

`QualityClient.feedback` is what `qfleet feedback` calls; `submit_feedback` is the same for an
HTTP handler (the gateway), taking a `FeedbackRequest` body. A correction of an extraction job
is validated against that job's own schema before it is stored, so every exported expected
object is one the job could have returned.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from qfleet.producer.records import RecordStore
from qfleet.tasks.errors import InvalidJobError, NotFoundError
from qfleet.tasks.records import Feedback, RequestRecord, Verdict
from qfleet.tasks.settings import Settings


class FeedbackRequest(BaseModel):
    """The body of a feedback call (CLI, Python or HTTP)."""

    model_config = ConfigDict(extra="forbid")

    verdict: Verdict
    correction: str | dict[str, Any] | None = Field(
        default=None, description="Text, or JSON for an extraction (an object, or objects by id)."
    )
    note: str | None = Field(default=None, max_length=4_000)
    by: str | None = Field(default=None, max_length=200)


def parse_correction(text: str | None) -> str | dict[str, Any] | None:
    """A command-line correction: a JSON object when it parses as one, else the text itself."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value if isinstance(value, dict) else text


def check_correction(
    record: RequestRecord, correction: str | dict[str, Any] | None
) -> str | dict[str, Any] | None:
    """`correction` in its stored form: text for answers, objects by document id for extraction.

    Raises:
        InvalidJobError: it does not fit the job (an object for a text answer, an object that
            does not validate against the extraction schema, an unknown document id).
    """
    if correction is None:
        return None
    if record.kind != "extract":
        if not isinstance(correction, str):
            raise InvalidJobError("the correction of an answer is its text, not an object")
        return correction
    if isinstance(correction, str):
        parsed = parse_correction(correction)
        if not isinstance(parsed, dict):
            raise InvalidJobError("the correction of an extraction is a JSON object")
        correction = parsed
    documents = [str(d.get("id")) for d in record.input.get("documents", [])]
    if set(correction) and set(correction) <= set(documents):
        by_document = correction
    elif len(documents) == 1:
        by_document = {documents[0]: correction}
    else:
        raise InvalidJobError(
            f"this job has documents {documents}: give the corrected objects by document id"
        )
    for document, value in by_document.items():
        _validate(record.input.get("json_schema") or {}, document, value)
    return by_document


def _validate(schema: dict[str, Any], document: str, value: Any) -> None:
    try:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import best_match
    except ImportError as exc:
        raise RuntimeError("checking corrections needs jsonschema: qfleet[records]") from exc
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    error = best_match(validator.iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "object"
        raise InvalidJobError(
            f"correction for document {document!r} does not match the job's schema at {where}: "
            f"{error.message}"
        )


def submit_feedback(store: RecordStore, job_id: str, body: FeedbackRequest) -> RequestRecord:
    """Check `body` against the record of `job_id` and attach it; returns the updated record.

    Raises:
        NotFoundError: no record of `job_id` (records off, sampled out, or expired).
        InvalidJobError: the correction does not fit the job.
    """
    record = store.get(job_id)
    if record is None:
        raise NotFoundError(
            f"no request record of job {job_id} (records off or sampled out, or it expired)"
        )
    feedback = Feedback(
        verdict=body.verdict,
        correction=check_correction(record, body.correction),
        note=body.note,
        by=body.by,
        at=datetime.now(UTC),
    )
    store.set_feedback(job_id, feedback)
    return record.model_copy(update={"feedback": feedback})


class QualityClient:
    """The quality loop from Python: feedback, records.

    Example:
        >>> with QualityClient() as quality:
        ...     quality.feedback(job_id, "wrong", correction="Paris")
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.records = RecordStore(settings)

    def __enter__(self) -> QualityClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()

    def close(self) -> None:
        """Close the record store."""
        self.records.close()

    def feedback(
        self, job_id: str, verdict: Verdict, *, correction: str | dict[str, Any] | None = None,
        note: str | None = None, by: str | None = None,
    ) -> RequestRecord:  # fmt: skip
        """Attach a verdict (and the right answer) to the record of `job_id`."""
        body = FeedbackRequest(verdict=verdict, correction=correction, note=note, by=by)
        return submit_feedback(self.records, job_id, body)
