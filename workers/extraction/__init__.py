"""Structured extraction on the worker: prompt, decode, read values, truthful items.

`prompt.py` builds the conversation, `fields.py` relaxes the schema for decoding and reads values
back (`values.py` knows how documents spell dates, amounts and currencies), `items.py` turns a
decoded row into an item with per-field provenance, `run.py` is the job body.
"""

from __future__ import annotations

import threading
from pathlib import Path

from qfleet.workers.engine.guided import GuidedDecoder
from qfleet.workers.engine.model import LoadedModel
from qfleet.workers.engine.structured import SchemaGuide
from qfleet.workers.extraction.prompt import extraction_messages
from qfleet.workers.extraction.run import ExtractPolicy, run_extract

_guides: dict[Path, SchemaGuide] = {}
_guides_lock = threading.Lock()


def guided_decoder(
    model: LoadedModel, model_dir: Path, parallel: int | None = None
) -> GuidedDecoder:
    """The guided decoder for `model`; its grammar tables are built once per model folder.

    `parallel`: engine calls one decode may run at once (default: every replica).
    """
    with _guides_lock:
        guide = _guides.get(model_dir)
        if guide is None:
            guide = _guides[model_dir] = SchemaGuide(model_dir, model.tokenizer)
    return GuidedDecoder(model.generator, model.tokenizer, guide, parallel)


__all__ = [
    "ExtractPolicy",
    "extraction_messages",
    "guided_decoder",
    "run_extract",
]
