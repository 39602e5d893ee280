"""The client side of qfleet: `FleetClient` and the `qfleet` command."""

from producer.client import FleetClient, JobState

__all__ = ["FleetClient", "JobState"]
