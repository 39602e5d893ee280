"""The HTTP gateway: OpenAI-compatible endpoints over the producer side (`qfleet gateway`).

Stateless: everything it knows lives in Redis, so two gateway processes on one Redis are one
gateway. It imports the producer side only (no ctranslate2, tokenizers, torch or qdrant).
"""

from qfleet.producer.gateway.app import create_app

__all__ = ["create_app"]
