"""Per-clip quality measures of a separation and the report that lists them (see docs/report.md).

- :func:`measure_clip` / :class:`ClipMeter` (:mod:`.measures`): duration, levels, clipped
  samples, the voice stem's share and activity, music left in the voice stem.
- :func:`build_report` (:mod:`.build`): a manifest in, a static HTML page (sortable, flags,
  players, spectrogram pictures) and a CSV out.
"""

from .build import ReportSummary, build_report
from .measures import ClipMeter, measure_clip
from .table import Thresholds

__all__ = ["ClipMeter", "ReportSummary", "Thresholds", "build_report", "measure_clip"]
