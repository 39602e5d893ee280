"""The producer-side Celery app, for Celery's own tools: `celery -A qfleet.producer.celeryapp ...`.

Flower, `celery inspect` and `celery control` need an app that knows the broker, the key prefix
and JSON-only settings, but not the engine: this one imports no worker code.
"""

from __future__ import annotations

from qfleet.tasks.app import create_app

app = create_app()

__all__ = ["app"]
