"""The contract shared by producers and workers: settings, schemas, the Celery app, names."""

from qfleet.tasks.app import create_app
from qfleet.tasks.constants import QUEUE_GENERATE, TASK_GENERATE
from qfleet.tasks.errors import PermanentError, QfleetError, RetryableError
from qfleet.tasks.schemas import ChatMessage, GenerateJob, JobError, JobResult, parse_outcome
from qfleet.tasks.settings import Settings

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
