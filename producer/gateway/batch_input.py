"""Checking a batch's input file before anything of it is sent: every problem names its line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from qfleet.producer import openai_batch
from qfleet.producer.gateway.batch_store import BatchErrorData
from qfleet.producer.runs import RunSpec, read_items
from qfleet.tasks.errors import QfleetError
from qfleet.tasks.settings import Settings

# Problems reported per batch: enough to fix a file in one go, small enough for the batch object.
MAX_REPORTED = 20
_LINE_PREFIX = re.compile(r"^.*?:(\d+): (.*)$", re.DOTALL)


def check_input(spec: RunSpec, endpoint: str, settings: Settings) -> list[BatchErrorData]:
    """The problems of `spec.input`, each naming its line (empty: the file is good).

    Every line must be a JSON object in the OpenAI batch format for `endpoint`, with a unique
    `custom_id`; then the bulk-run reader checks each request as a job (sizes, schemas).
    """
    problems, seen, count = [], set[str](), 0
    with spec.input.open(encoding="utf-8", errors="replace") as stream:
        for number, raw in enumerate(stream, 1):
            if not raw.strip():
                continue
            count += 1
            problem = _check_line(raw, endpoint, seen)
            if problem is not None:
                problems.append(BatchErrorData(line=number, **problem))
            if len(problems) >= MAX_REPORTED:
                return problems
    if count == 0:
        return [BatchErrorData(code="empty_file", message="the input file has no requests")]
    if count > settings.gateway_max_batch_lines:
        message = (
            f"{count} requests; a batch holds at most {settings.gateway_max_batch_lines} "
            "(QFLEET_GATEWAY_MAX_BATCH_LINES)"
        )
        return [BatchErrorData(code="too_many_requests", message=message)]
    return problems or _check_jobs(spec, settings)


def _check_line(raw: str, endpoint: str, seen: set[str]) -> dict[str, Any] | None:
    try:
        line = json.loads(raw)
    except ValueError as exc:
        return {"code": "invalid_json_line", "message": f"not valid JSON: {exc}"}
    if not isinstance(line, dict):
        return {"code": "invalid_request", "message": "each line must be a JSON object"}
    try:
        request = openai_batch.parse_request(line)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"])
        return {"code": "invalid_request", "message": f"{param}: {first['msg']}", "param": param}
    except QfleetError as exc:
        return {"code": "invalid_request", "message": str(exc), "param": "url"}
    if request.url != endpoint:
        message = f"url {request.url} differs from the batch's endpoint {endpoint}"
        return {"code": "mismatched_endpoint", "message": message, "param": "url"}
    if request.custom_id in seen:
        message = f"duplicate custom_id {request.custom_id!r}"
        return {"code": "duplicate_custom_id", "message": message, "param": "custom_id"}
    seen.add(request.custom_id)
    return None


def _check_jobs(spec: RunSpec, settings: Settings) -> list[BatchErrorData]:
    """What the bulk-run reader refuses (it names the first bad line as `path:N: reason`)."""
    try:
        read_items(spec, settings)
    except (QfleetError, ValueError) as exc:
        match = _LINE_PREFIX.match(str(exc))
        if match is None:
            return [BatchErrorData(code="invalid_request", message=str(exc))]
        return [
            BatchErrorData(code="invalid_request", line=int(match[1]), message=match[2].strip())
        ]
    return []


def custom_ids(path: Path) -> list[str]:
    """The custom_ids of a checked input file, in order."""
    with path.open(encoding="utf-8") as stream:
        return [str(json.loads(raw)["custom_id"]) for raw in stream if raw.strip()]
