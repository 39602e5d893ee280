"""`/v1/files`: upload batch input files, read them and batch output files back, list, delete.

Uploads are multipart (`file`, `purpose=batch`), as the OpenAI SDK sends them; the size limit
is `gateway_max_file_bytes`, checked on the declared length (required) before the body is read
and on the bytes received. Every file belongs to the caller's tenant: another tenant gets 404.
"""

from __future__ import annotations

from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from qfleet.producer.gateway.auth import CallerDep, StateDep
from qfleet.producer.gateway.errors import ApiError
from qfleet.producer.gateway.files import FileObject, FileRecord, FileStore

router = APIRouter(prefix="/v1/files", tags=["files"])
# Multipart framing around the file's bytes (boundaries, part headers, the purpose field).
FORM_OVERHEAD_BYTES = 64 * 1024


class FileList(BaseModel):
    """A page of files."""

    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class FileDeleted(BaseModel):
    """The answer to a delete."""

    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


def file_store(state: StateDep) -> FileStore:
    """The file store of this gateway's Redis."""
    settings = state.settings
    return FileStore(state.redis, settings.redis_key_prefix, settings.gateway_file_ttl_s)


FilesDep = Annotated[FileStore, Depends(file_store)]


def owned_file(file_id: str, caller: CallerDep, files: FilesDep) -> FileRecord:
    """The caller's file `file_id`; 404 when it does not exist or belongs to another tenant."""
    record = files.get(file_id)
    if record is None or not caller.owns(record.tenant):
        raise ApiError(404, f"no such file: {file_id}", param="file_id", code="not_found")
    return record


OwnedFileDep = Annotated[FileRecord, Depends(owned_file)]


@router.post("")
async def upload_file(
    request: Request, caller: CallerDep, state: StateDep, files: FilesDep
) -> FileObject:
    """Store a batch input file (multipart: `file`, `purpose`)."""
    limit = state.settings.gateway_max_file_bytes
    length = request.headers.get("content-length", "")
    if not length.isdigit():
        # The multipart parser spools a file part to disk whatever its size: without a declared
        # length, the limit could only be checked after the disk had filled.
        raise ApiError(411, "send uploads with a Content-Length", code="length_required")
    if int(length) > limit + FORM_OVERHEAD_BYTES:
        raise _too_large(int(length), limit)
    form = await request.form(max_files=1, max_fields=4)
    purpose, upload = form.get("purpose"), form.get("file")
    if purpose != "batch":
        raise ApiError(
            400, f"purpose must be 'batch', got {purpose!r}", param="purpose", code="invalid_value"
        )
    if not isinstance(upload, UploadFile):
        raise ApiError(400, "no file: send it as the multipart field `file`", param="file")
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise _too_large(len(data), limit)
    filename = (upload.filename or "upload.jsonl")[-255:]
    record = await anyio.to_thread.run_sync(
        lambda: files.create(caller.tenant, filename, "batch", data)
    )
    return await anyio.to_thread.run_sync(files.describe, record)


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        413,
        f"file of {size} bytes is over the limit of {limit} (QFLEET_GATEWAY_MAX_FILE_BYTES)",
        param="file",
        code="file_too_large",
    )


@router.get("")
def list_files(
    caller: CallerDep,
    files: FilesDep,
    purpose: str | None = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    order: Literal["asc", "desc"] = "desc",
) -> FileList:
    """The caller's files, newest first unless `order=asc`."""
    page, more = files.list(
        caller.tenant, purpose=purpose, after=after, limit=limit, newest_first=order == "desc"
    )
    data = [files.describe(record) for record in page]
    return FileList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=more,
    )


@router.get("/{file_id}")
def get_file(record: OwnedFileDep, files: FilesDep) -> FileObject:
    """One file's description."""
    return files.describe(record)


@router.get("/{file_id}/content")
def file_content(record: OwnedFileDep, files: FilesDep) -> StreamingResponse:
    """The file's bytes (a batch's output file: the lines written so far)."""
    return StreamingResponse(files.chunks(record.id), media_type="application/octet-stream")


@router.delete("/{file_id}")
def delete_file(record: OwnedFileDep, files: FilesDep) -> FileDeleted:
    """Delete the file (a running batch keeps its own copy of its input)."""
    files.delete(record)
    return FileDeleted(id=record.id)
