"""qfleet: an asynchronous job-queue worker fleet for small-LLM work.

The public surface for services that submit jobs. Everything here is producer-side and light
(celery, kombu, redis, pydantic): importing it never loads ctranslate2, tokenizers, qdrant or
torch. The packages behind it map the repository's folders into one namespace, so qfleet installs
beside any project (one with its own ``tasks.py`` included):

- ``qfleet.tasks``    (``tasks/``)    the contract both sides import: settings, schemas, the app;
- ``qfleet.producer`` (``producer/``) the client side: ``FleetClient``, bulk runs, the CLI;
- ``qfleet.workers``  (``workers/``)  what runs inside a worker process (engine, task bodies).
"""

from qfleet.producer.client import FleetClient, JobState
from qfleet.producer.knowledge import KnowledgeClient
from qfleet.tasks.errors import (
    JobFailedError,
    JobTimeoutError,
    PermanentError,
    QfleetError,
    RetryableError,
)
from qfleet.tasks.knowledge import IngestJob, KnowledgeDocument, RetrieveJob
from qfleet.tasks.schemas import (
    ChatMessage,
    ExtractDocument,
    ExtractJob,
    ExtractResult,
    GenerateJob,
    JobError,
    JobResult,
)
from qfleet.tasks.settings import Settings

__all__ = [
    "ChatMessage",
    "ExtractDocument",
    "ExtractJob",
    "ExtractResult",
    "FleetClient",
    "GenerateJob",
    "IngestJob",
    "JobError",
    "JobFailedError",
    "JobResult",
    "JobState",
    "JobTimeoutError",
    "KnowledgeClient",
    "KnowledgeDocument",
    "PermanentError",
    "QfleetError",
    "RetrieveJob",
    "RetryableError",
    "Settings",
]
