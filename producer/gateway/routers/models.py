"""`GET /v1/models` and `GET /v1/models/{id}`: the models the live workers serve.

From the workers' own manifests (the `qfleet_info` broadcast), cached for a few seconds: chat
models (a generation model folder) and embedding models (the knowledge base's embedder).
"""

from __future__ import annotations

from typing import Literal

from anyio.to_thread import run_sync
from fastapi import APIRouter
from pydantic import BaseModel

from qfleet.producer.gateway.auth import StateDep
from qfleet.producer.gateway.catalog import ServedModel
from qfleet.producer.gateway.deps import LimitedCallerDep
from qfleet.producer.gateway.errors import ApiError

router = APIRouter(tags=["models"])


class Model(BaseModel):
    """One model, as OpenAI lists it (plus which kind of endpoint serves it)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "qfleet"
    kind: Literal["chat", "embedding"]
    workers: int


class ModelList(BaseModel):
    """`GET /v1/models`."""

    object: Literal["list"] = "list"
    data: list[Model]


def _model(served: ServedModel) -> Model:
    return Model(
        id=served.id, created=int(served.seen_at), kind=served.kind, workers=len(served.workers)
    )


@router.get("/v1/models")
async def list_models(caller: LimitedCallerDep, state: StateDep) -> ModelList:
    """Every model some live worker serves."""
    del caller
    served = await run_sync(state.catalog.models)
    return ModelList(data=[_model(m) for m in served])


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, caller: LimitedCallerDep, state: StateDep) -> Model:
    """One served model; 404 when no live worker serves it."""
    del caller
    for served in await run_sync(state.catalog.models):
        if served.id == model_id:
            return _model(served)
    raise ApiError(
        404, f"The model `{model_id}` does not exist", param="model", code="model_not_found"
    )
