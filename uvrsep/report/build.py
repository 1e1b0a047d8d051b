"""``build_report``: a manifest in, the report page (and a CSV, and its pictures) out."""

from __future__ import annotations

import datetime
import hashlib
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from ..audio import check_output_dir, commit_file, read_audio
from ..errors import ITEM_ERRORS, AudioWriteError, ConfigError, one_line, option
from .page import NO_PICTURES, ClipMedia, page_data, page_html
from .pictures import spectrogram_png
from .table import (
    ClipRow,
    Thresholds,
    clip_rows,
    csv_text,
    output_labels,
    read_manifest,
    voice_output,
)

#: The page's note on clips without measures.
UNMEASURED = (
    "{count} clip(s) have no measures: made by a uvrsep without them, or skipped as already done; their "
    "measure cells are empty and they raise no flag but 'failed'. Separating them again ({flag}) "
    "measures them."
)


@dataclass
class ReportSummary:
    """What :func:`build_report` made: counts, the files, and one line per problem met."""

    page: Path
    csv: Path | None
    clips: int
    flagged: int
    pictures: int  # pictures on the page (made now or found from an earlier report)
    warnings: list[str] = field(default_factory=list)


def href(path: str, base_dir: str, page_dir: str) -> tuple[str, bool]:
    """(link from the page's folder ``page_dir`` to ``path``, whether the file exists). A
    relative ``path`` is taken from ``base_dir``; the link is relative when it can be (else a
    ``file:`` URI). Both folders are absolute. Built with os.path on strings: one file-system call
    (``isfile``) per link (its speed: docs/performance.md)."""
    target = os.path.abspath(os.path.join(base_dir, path))
    try:
        link = quote(os.path.relpath(target, page_dir).replace(os.sep, "/"))
    except ValueError:  # another drive (Windows): no relative path
        link = Path(target).as_uri()
    return link, os.path.isfile(target)


def _write_atomic(path: Path, data: bytes, overwrite: bool) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it, renamed into place."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise AudioWriteError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if not commit_file(tmp, path, overwrite):
            raise AudioWriteError(f"{path}: another process wrote it meanwhile; kept as it is")
    except OSError as exc:
        raise AudioWriteError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def _picture(source: Path, folder: Path, page_dir: str) -> tuple[str | None, str]:
    """(link to the spectrogram picture of the audio file ``source``, or None; why not). The
    picture is named after the file's identity (device, inode), size and time: an unchanged
    file's picture from an earlier report is used again, and links to one file share one."""
    try:
        st = source.stat()
        key = hashlib.sha256(f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode())
        target = folder / f"{key.hexdigest()[:20]}.png"
        if not target.is_file():
            wave, sr = read_audio(source)
            _write_atomic(target, spectrogram_png(wave, sr), overwrite=True)
    except ITEM_ERRORS as exc:
        return None, f"no picture ({one_line(exc, source)})"
    return href(str(target), str(folder), str(page_dir))[0], ""


def _media(row: ClipRow, base_dir: str, page_dir: str) -> ClipMedia:
    def sound(path: str) -> tuple[str, bool, str]:  # a missing file is shown by its manifest path
        link, exists = href(path, base_dir, page_dir)
        return link, exists, "" if exists else path

    outputs = row.record.get("outputs", [])
    return ClipMedia(
        sound(row.record["input"]), [(label, *sound(o)) for label, o in zip(output_labels(outputs), outputs)]
    )


def _add_pictures(
    rows: list[ClipRow],
    media: list[ClipMedia],
    base_dir: str,
    folder: Path,
    page_dir: str,
    on_progress: Callable[[int, int], None] | None,
) -> int:
    """Make (or find) the input's and the voice stem's picture of every clip that did not fail
    (``ok``, or ``skipped`` with its outputs already there); returns how many pictures the page
    shows. Files are read and drawn on a few threads."""
    wanted: list[tuple[int, str, str | None]] = []  # (row, label, path or None)
    for i, row in enumerate(rows):
        if row.record["status"] == "failed":
            continue
        voice_stem = row.values.get("voice_stem") or "vocals"
        wanted.append((i, "input", row.record["input"]))
        wanted.append((i, f"{voice_stem} stem", voice_output(row.record.get("outputs", []), voice_stem)))
    folder.mkdir(parents=True, exist_ok=True)

    def make(item: tuple[int, str, str | None]) -> tuple[str | None, str]:
        path = item[2]
        if path is None:
            return None, "no picture (no output of this clip is named after the voice stem)"
        return _picture(Path(os.path.abspath(os.path.join(base_dir, path))), folder, page_dir)

    made = 0
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for n, ((i, label, _), (link, note)) in enumerate(zip(wanted, pool.map(make, wanted)), 1):
            media[i].pictures.append((label, link, note))
            made += link is not None
            if on_progress is not None:
                on_progress(n, len(wanted))
    return made


def build_report(
    manifest_path: str | os.PathLike,
    out_html: str | os.PathLike = "report.html",
    csv_path: str | os.PathLike | None = None,
    *,
    thresholds: Thresholds | None = None,
    pictures: bool = True,
    base_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> ReportSummary:
    """Write the report of the manifest at ``manifest_path``: the page ``out_html``, its pictures
    in ``<page name>_files/`` beside it (unless ``pictures`` is false), and the table as CSV at
    ``csv_path`` if given. Paths in the manifest that are relative are taken from ``base_dir``
    (default: the current folder, where the batch ran). Existing files are replaced only with
    ``overwrite``. ``on_progress(done, total)`` follows the pictures. Every file is written
    atomically; a clip whose audio is missing or unreadable gets a note on the page instead of
    a player or picture."""
    thresholds = thresholds or Thresholds()
    manifest_path, page = Path(manifest_path), Path(out_html)
    targets = [(page, option("output", "out_html"))] + (
        [(Path(csv_path), option("csv", "csv_path"))] if csv_path else []
    )
    seen = {os.path.abspath(manifest_path): "the manifest"}
    for path, name in targets:
        if os.path.abspath(path) in seen:
            raise ConfigError(f"{name} {path}: is {seen[os.path.abspath(path)]}; give another file")
        seen[os.path.abspath(path)] = f"also {name}"
        check_output_dir(path.parent, f"{name} {path}: its folder {path.parent}")
        if path.exists() and not overwrite:
            raise ConfigError(f"{name} {path}: already exists ({option('overwrite', value=True)} replaces it)")
        if path.exists() and not path.is_file():
            raise ConfigError(f"{name} {path}: is a folder or special file, not a file")
    records, warnings = read_manifest(manifest_path)
    base = os.path.abspath(base_dir if base_dir is not None else ".")
    page_dir = os.path.abspath(page.parent)
    columns, rows = clip_rows(records, thresholds)
    media = [_media(row, base, page_dir) for row in rows]
    notes = list(warnings)
    unmeasured = sum(row.record["status"] != "failed" and row.measures is None for row in rows)
    if unmeasured:
        notes.append(UNMEASURED.format(count=unmeasured, flag=option("overwrite", value=True)))
    made = 0
    if pictures:
        made = _add_pictures(rows, media, base, Path(page_dir, f"{page.stem}_files"), page_dir, on_progress)
    else:
        notes.insert(0, NO_PICTURES.format(flag=option("no_pictures", "pictures=False")))
    flagged = sum(bool(row.flags) for row in rows)
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M")
    subtitle = f"{manifest_path} · {len(rows)} clips, {flagged} flagged · made {stamp}"
    text = page_html(
        page_data(columns, rows, media, thresholds),
        title=f"uvrsep report: {manifest_path.name}",
        subtitle=subtitle,
        thresholds=thresholds,
        notes=notes,
    )
    if csv_path:
        _write_atomic(Path(csv_path), csv_text(columns, rows).encode("utf-8"), overwrite)
    _write_atomic(page, text.encode("utf-8"), overwrite)
    return ReportSummary(page, Path(csv_path) if csv_path else None, len(rows), flagged, made, warnings)
