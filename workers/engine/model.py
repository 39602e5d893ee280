"""Loading a converted model: device and precision chosen once, logged, visible in results."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import ctranslate2

from qfleet.tasks.errors import QfleetError
from qfleet.tasks.schemas import ModelInfo
from qfleet.workers.engine.chat import ChatTokenizer
from qfleet.workers.engine.manifest import ModelManifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineOptions:
    """How to place the model: plain values, handed to CTranslate2 as they are."""

    device: str = "auto"
    device_index: int = 0
    compute_type: str = "auto"
    # Threads of one engine call (CTranslate2's intra_threads); 0: all cores.
    cpu_threads: int = 0
    # Model replicas sharing the weights (CTranslate2's inter_threads): calls that may run at once.
    replicas: int = 1


def resolve_device(requested: str) -> str:
    """`cuda` when asked for or when `auto` and CTranslate2 sees a GPU, else `cpu`."""
    if requested != "auto":
        return requested
    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def resolve_compute_type(requested: str, device: str) -> str:
    """int8_float16 on CUDA and int8 on CPU for `auto`; checked against what the device supports."""
    wanted = requested
    if requested == "auto":
        wanted = "int8_float16" if device == "cuda" else "int8"
    supported = ctranslate2.get_supported_compute_types(device)
    if wanted not in supported and wanted != "default":
        raise QfleetError(
            f"compute type {wanted!r} is not supported on {device}; choose one of "
            f"{sorted(supported)} with QFLEET_COMPUTE_TYPE"
        )
    return wanted


class StaticPromptRegistry:
    """Which prompt prefixes may go to CTranslate2 as a cached static prompt.

    CTranslate2 keeps the model state of every static prompt it is given for the life of the
    generator. A few shared system prompts are what the cache is for; a prefix that differs per
    job (a RAG system turn carrying its passages) would grow the worker's memory without bound.
    So only the first `capacity` distinct prefixes are admitted; any other is sent as ordinary
    prompt tokens, which gives the same output, only without the cache.
    """

    def __init__(self, capacity: int = 16) -> None:
        self.capacity = capacity
        self._admitted: set[tuple[int, ...]] = set()
        self._lock = threading.Lock()

    def admit(self, ids: Sequence[int]) -> bool:
        """True when `ids` may be passed as a static prompt."""
        key = tuple(ids)
        with self._lock:
            if key in self._admitted:
                return True
            if len(self._admitted) >= self.capacity:
                return False
            self._admitted.add(key)
            return True


@dataclass
class LoadedModel:
    """A CTranslate2 generator with its tokenizer and manifest."""

    generator: ctranslate2.Generator
    tokenizer: ChatTokenizer
    manifest: ModelManifest
    device: str
    compute_type: str
    load_seconds: float
    static_prompts: StaticPromptRegistry = field(default_factory=StaticPromptRegistry)

    @property
    def info(self) -> ModelInfo:
        """What results report about the model."""
        return ModelInfo(
            id=self.manifest.model_id, device=self.device, compute_type=self.compute_type
        )

    def close(self) -> None:
        """Free the generator before interpreter exit.

        A generator that ran a Python callback can abort the interpreter at exit if it is
        still alive then, so workers close it on shutdown.
        """
        generator = self.__dict__.pop("generator", None)
        if generator is not None:
            del generator


def load_model(model_dir: Path, options: EngineOptions) -> LoadedModel:
    """Load the model in `model_dir` (a CTranslate2 folder) for this process."""
    if not (model_dir / "model.bin").is_file():
        raise QfleetError(
            f"{model_dir} is not a CTranslate2 model folder (no model.bin); build one with "
            "`qfleet model convert` or `qfleet model tiny`"
        )
    started = time.perf_counter()
    device = resolve_device(options.device)
    compute_type = resolve_compute_type(options.compute_type, device)
    generator = ctranslate2.Generator(
        str(model_dir),
        device=device,
        device_index=options.device_index,
        compute_type=compute_type,
        intra_threads=options.cpu_threads,
        inter_threads=options.replicas,
    )
    model = LoadedModel(
        generator=generator,
        tokenizer=ChatTokenizer(model_dir),
        manifest=ModelManifest.read(model_dir),
        device=device,
        compute_type=compute_type,
        load_seconds=time.perf_counter() - started,
    )
    log.info(
        "loaded model %s from %s on %s:%d (%s, %d replicas x %d threads) in %.2fs; manifest %s",
        model.manifest.model_id,
        model_dir,
        device,
        options.device_index,
        compute_type,
        options.replicas,
        options.cpu_threads,
        model.load_seconds,
        json.dumps(model.manifest.raw, sort_keys=True),
    )
    return model
