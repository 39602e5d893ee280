"""The console: one web page (`/console`) where people see and steer the fleet.

Static assets (`static/`) ship inside the package and need no build step. The page calls the
console's own JSON endpoints under `/console/api/...`, which read the producer side directly:
`producer.status` for workers, Redis for queues and bulk runs, the dead-letter store, the
knowledge client, and `FleetClient` for the playground's jobs.
"""
