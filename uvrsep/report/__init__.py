"""Per-clip quality measures of a separation and the report that lists them (see docs/report.md).

- :func:`measure_clip` / :class:`ClipMeter` / :class:`SignalMeter` (:mod:`.measures`): duration,
  levels, clipped samples, the voice stem's share and activity, music left in the voice stem.
  The writer uses them on every batch's stems, so this module imports nothing of uvrsep's.
- :func:`build_report` (:mod:`.build`): a manifest in, a static HTML page (sortable, flags,
  players, spectrogram pictures) and a CSV out. Imported when first used (it reads manifests,
  which the batch, and so the writer, defines).
"""

from __future__ import annotations

from .measures import ClipMeter, SignalMeter, measure_clip

__all__ = ["ClipMeter", "ReportSummary", "SignalMeter", "Thresholds", "build_report", "measure_clip"]


def __getattr__(name: str):
    if name in ("ReportSummary", "build_report"):
        from . import build

        return getattr(build, name)
    if name == "Thresholds":
        from .table import Thresholds

        return Thresholds
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
