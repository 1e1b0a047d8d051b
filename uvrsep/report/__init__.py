"""Per-clip quality measures of a separation (see docs/report.md).

- :func:`measure_clip` / :class:`ClipMeter` (:mod:`.measures`): duration, levels, clipped
  samples, the voice stem's share and activity, music left in the voice stem.
"""

from .measures import ClipMeter, measure_clip

__all__ = ["ClipMeter", "measure_clip"]
