"""The contract shared by producers and workers: job payloads, results, errors and settings.

Exported here: the names the README and docs use. The rest lives in the modules named for it
(`app`, `constants`, `limits`, `ledger`, `deadletters`, `extract_schema`, `redisconn`, ...).
"""

from qfleet.tasks.errors import (
    JobFailedError,
    JobTimeoutError,
    PermanentError,
    QfleetError,
    RetryableError,
)
from qfleet.tasks.knowledge import IngestJob, KnowledgeDocument, RetrieveJob, RetrieveResult
from qfleet.tasks.schemas import (
    ChatMessage,
    ExtractDocument,
    ExtractItem,
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
    "ExtractItem",
    "ExtractJob",
    "ExtractResult",
    "GenerateJob",
    "IngestJob",
    "JobError",
    "JobFailedError",
    "JobResult",
    "JobTimeoutError",
    "KnowledgeDocument",
    "PermanentError",
    "QfleetError",
    "RetrieveJob",
    "RetrieveResult",
    "RetryableError",
    "Settings",
]
