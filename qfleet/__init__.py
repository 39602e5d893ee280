"""qfleet: an asynchronous job-queue worker fleet for small-LLM work.

The public surface for services that submit jobs. Everything here is producer-side and light
(celery, kombu, redis, pydantic): importing it never loads ctranslate2, tokenizers, qdrant or
torch. The packages behind it map the repository's folders into one namespace, so qfleet installs
beside any project (one with its own ``tasks.py`` included):

- ``qfleet.tasks``    (``tasks/``)    the contract both sides import: settings, schemas, the app;
- ``qfleet.producer`` (``producer/``) the client side: ``FleetClient``, bulk runs, the CLI;
- ``qfleet.workers``  (``workers/``)  what runs inside a worker process (engine, task bodies).
"""

from qfleet.producer import FleetClient, JobState, KnowledgeClient
from qfleet.tasks import (
    ChatMessage,
    ExtractDocument,
    ExtractItem,
    ExtractJob,
    ExtractResult,
    GenerateJob,
    IngestJob,
    JobError,
    JobFailedError,
    JobResult,
    JobTimeoutError,
    KnowledgeDocument,
    PermanentError,
    QfleetError,
    RetrieveJob,
    RetrieveResult,
    RetryableError,
    Settings,
)

# Exactly the names the README and docs use (tests/unit/test_structure.py checks both ways).
__all__ = [
    "ChatMessage",
    "ExtractDocument",
    "ExtractItem",
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
    "RetrieveResult",
    "RetryableError",
    "Settings",
]
