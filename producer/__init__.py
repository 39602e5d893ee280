"""The client side of qfleet: `FleetClient` and the `qfleet` command."""

from qfleet.producer.client import FleetClient, JobState

__all__ = ["FleetClient", "JobState"]
