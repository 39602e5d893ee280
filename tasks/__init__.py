"""The contract shared by producers and workers: settings, schemas, the Celery app, names."""

from tasks.app import create_app
from tasks.constants import QUEUE_GENERATE, TASK_GENERATE
from tasks.errors import PermanentError, QfleetError, RetryableError
from tasks.schemas import ChatMessage, GenerateJob, JobError, JobResult, parse_outcome
from tasks.settings import Settings

__all__ = [
    "QUEUE_GENERATE",
    "TASK_GENERATE",
    "ChatMessage",
    "GenerateJob",
    "JobError",
    "JobResult",
    "PermanentError",
    "QfleetError",
    "RetryableError",
    "Settings",
    "create_app",
    "parse_outcome",
]
