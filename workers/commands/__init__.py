"""The worker half of the `qfleet` command (`worker`, `model ...`), registered as entry points.

The CLI layer may import both sides; these commands live here so that `producer/` imports nothing
from `workers/`. Heavy imports stay inside the commands, so a producer-only install lists them
and names the extra they need.
"""
