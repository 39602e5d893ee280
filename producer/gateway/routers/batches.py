"""`/v1/batches`: create, read, list and cancel batches of the caller's tenant.

A handler only writes the batch's record; the batch runner (in every gateway process and in
`qfleet batch-runner`) validates and follows it. A batch may name a webhook URL, as the qfleet
extension field `{"qfleet": {"webhook_url": ...}}` (the SDK's `extra_body`) or as the metadata
key `qfleet_webhook_url`; its origin must be in `webhook_allowed_origins`.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from qfleet.producer.gateway.auth import CallerDep, StateDep
from qfleet.producer.gateway.batch_store import Batch, BatchMeta, BatchStore
from qfleet.producer.gateway.console.owners import record_run_owner
from qfleet.producer.gateway.errors import ApiError
from qfleet.producer.gateway.routers.files import FilesDep
from qfleet.producer.gateway.webhooks import WebhookError, check_url

router = APIRouter(prefix="/v1/batches", tags=["batches"])

ENDPOINTS = ("/v1/chat/completions",)
WEBHOOK_METADATA_KEY = "qfleet_webhook_url"
# OpenAI offers "24h" only; qfleet takes any whole number of hours up to a week.
_WINDOW = re.compile(r"^([1-9][0-9]{0,2})h$")
MAX_WINDOW_HOURS = 168


class QfleetBatchOptions(BaseModel):
    """qfleet's extension of a batch request."""

    model_config = ConfigDict(extra="forbid")

    webhook_url: str | None = Field(default=None, max_length=2_048)


class CreateBatchRequest(BaseModel):
    """The body of `POST /v1/batches`."""

    model_config = ConfigDict(extra="forbid")

    input_file_id: str = Field(max_length=64)
    endpoint: str
    completion_window: str = "24h"
    metadata: (
        dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None
    ) = Field(default=None, max_length=16)
    output_expires_after: dict[str, Any] | None = None  # accepted, ignored: files expire by TTL
    qfleet: QfleetBatchOptions | None = None


class BatchList(BaseModel):
    """A page of batches."""

    object: Literal["list"] = "list"
    data: list[Batch]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


def batch_store(state: StateDep) -> BatchStore:
    """The batch store of this gateway's Redis."""
    settings = state.settings
    return BatchStore(state.redis, settings.redis_key_prefix, settings.gateway_file_ttl_s)


BatchesDep = Annotated[BatchStore, Depends(batch_store)]


def owned_batch(batch_id: str, caller: CallerDep, batches: BatchesDep) -> tuple[BatchMeta, Batch]:
    """The caller's batch; 404 when it does not exist or belongs to another tenant."""
    found = batches.get(batch_id)
    if found is None or not caller.owns(found[0].tenant):
        raise ApiError(404, f"no such batch: {batch_id}", param="batch_id", code="not_found")
    return found


OwnedBatchDep = Annotated[tuple[BatchMeta, Batch], Depends(owned_batch)]


@router.post("")
def create_batch(
    body: CreateBatchRequest, caller: CallerDep, state: StateDep, files: FilesDep,
    batches: BatchesDep,
) -> Batch:  # fmt: skip
    """Create a batch of the requests in an uploaded file; it starts `validating`."""
    if body.endpoint not in ENDPOINTS:
        raise ApiError(
            400, f"endpoint must be one of {', '.join(ENDPOINTS)}", param="endpoint",
            code="unsupported_endpoint",
        )  # fmt: skip
    hours = _window_hours(body.completion_window)
    record = files.get(body.input_file_id)
    if record is None or not caller.owns(record.tenant):
        raise ApiError(
            404, f"no such file: {body.input_file_id}", param="input_file_id", code="not_found"
        )
    if record.purpose != "batch":
        raise ApiError(400, "the input file's purpose must be 'batch'", param="input_file_id")
    now = int(time.time())
    meta = BatchMeta(
        id="batch_" + secrets.token_hex(12),
        tenant=caller.tenant,
        endpoint=body.endpoint,
        input_file_id=body.input_file_id,
        completion_window=body.completion_window,
        metadata=body.metadata,
        webhook_url=_webhook_url(body, state),
        created_at=now,
        expires_at=now + hours * 3600,
    )
    batches.create(meta)
    # Its bulk run (same id) then shows on the tenant's console page, not only to admins.
    settings = state.settings
    record_run_owner(
        state.redis, settings.redis_key_prefix, meta.id, caller.tenant, settings.gateway_file_ttl_s
    )
    found = batches.get(meta.id)
    assert found is not None
    return found[1]


def _window_hours(window: str) -> int:
    match = _WINDOW.match(window)
    if match is None or int(match[1]) > MAX_WINDOW_HOURS:
        raise ApiError(
            400, f"completion_window must be '24h' (or 1h..{MAX_WINDOW_HOURS}h)",
            param="completion_window", code="invalid_value",
        )  # fmt: skip
    return int(match[1])


def _webhook_url(body: CreateBatchRequest, state: StateDep) -> str | None:
    url = body.qfleet.webhook_url if body.qfleet else None
    param = "qfleet.webhook_url"
    if url is None and body.metadata and WEBHOOK_METADATA_KEY in body.metadata:
        url, param = body.metadata[WEBHOOK_METADATA_KEY], f"metadata.{WEBHOOK_METADATA_KEY}"
    if url is None:
        return None
    try:
        return check_url(url, state.settings)
    except WebhookError as exc:
        raise ApiError(400, str(exc), param=param, code="webhook_not_allowed") from exc


@router.get("")
def list_batches(
    caller: CallerDep,
    batches: BatchesDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> BatchList:
    """The caller's batches, newest first."""
    page, more = batches.page(caller.tenant, after=after, limit=limit)
    return BatchList(
        data=page,
        first_id=page[0].id if page else None,
        last_id=page[-1].id if page else None,
        has_more=more,
    )


@router.get("/{batch_id}")
def get_batch(found: OwnedBatchDep) -> Batch:
    """One batch, with its status and request counts."""
    return found[1]


@router.post("/{batch_id}/cancel")
def cancel_batch(found: OwnedBatchDep, batches: BatchesDep) -> Batch:
    """Ask for the batch to stop: `cancelling` now, `cancelled` once its follower stopped it.

    Lines already written stay in the output file.
    """
    meta, batch = found
    if batch.status in ("cancelling", "cancelled"):
        return batch
    if not batches.transition(meta, "cancelling", {"validating", "in_progress"}):
        current = batches.status(meta.id)
        raise ApiError(
            409, f"cannot cancel a batch that is {current}", param="batch_id",
            code="invalid_state",
        )  # fmt: skip
    again = batches.get(meta.id)
    assert again is not None
    return again[1]
