"""Batch processing: a batch is decided before any model is loaded, then run.

- :mod:`.inputs`: files, folders, globs and list files (:func:`collect_inputs`).
- :mod:`.plan`: where each stem goes (:class:`OutputPlan`), what stops a run before any work
  (:func:`find_conflicts`), each input's fate (:func:`plan_batch`).
- :mod:`.manifest`: the JSONL record of a run, for resuming (:class:`Manifest`, :class:`ItemResult`).
- :mod:`.progress`: the bar or log lines, and the summary (:class:`BatchProgress`, :class:`BatchReport`).
- :mod:`.run`: separating the jobs and writing their stems with :func:`uvrsep.writer.write_stems`
  (:func:`separate_jobs`, :func:`run_batch`); the model is loaded once, short clips share
  network calls, long ones stream, one failing input never stops the batch.
"""

from __future__ import annotations

from ..audio import check_output_dir
from ..naming import DEFAULT_TEMPLATE, TEMPLATE_FIELDS, InputItem
from ..writer import write_stems
from .inputs import (
    AUDIO_EXTENSIONS,
    MAX_LINE_BYTES,
    bounded_lines,
    collect_inputs,
    read_list_file,
    regular_file,
)
from .manifest import ItemResult, Manifest
from .plan import (
    BatchPlan,
    Conflicts,
    Job,
    OutputPlan,
    find_conflicts,
    plan_batch,
    select_stems,
)
from .progress import BatchProgress, BatchReport, format_duration
from .run import run_batch, separate_jobs

__all__ = [
    "AUDIO_EXTENSIONS",
    "DEFAULT_TEMPLATE",
    "MAX_LINE_BYTES",
    "TEMPLATE_FIELDS",
    "BatchPlan",
    "BatchProgress",
    "BatchReport",
    "Conflicts",
    "InputItem",
    "ItemResult",
    "Job",
    "Manifest",
    "OutputPlan",
    "bounded_lines",
    "check_output_dir",
    "collect_inputs",
    "find_conflicts",
    "format_duration",
    "plan_batch",
    "read_list_file",
    "regular_file",
    "run_batch",
    "select_stems",
    "separate_jobs",
    "write_stems",
]
