"""The client side of qfleet: `FleetClient` and `KnowledgeClient` (the `qfleet` command is
`producer/cli.py` + `producer/commands/`; bulk runs are `producer/runs/`)."""

from qfleet.producer.client import FleetClient, JobState
from qfleet.producer.knowledge import KnowledgeClient

__all__ = ["FleetClient", "JobState", "KnowledgeClient"]
