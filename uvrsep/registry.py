"""The model registry: official VR weight files known by name (``configs/models.toml``).

A :class:`ModelSpec` says where a file comes from, which band config and stems it has and how
to check it. Files a user imports (``uvrsep models import``) are added to a user registry in the
cache folder (an entry there replaces a shipped one of the same name). UVR's hash table (MD5 of
the last 10,000 KiB) identifies other files. The registry names a default model, used when no
model is given.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from filelock import FileLock

from .errors import ConfigError
from .resources import resource_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _label(name: str) -> str:
    return name.lower().replace(" ", "_")


#: UVR's primary-stem names → (masked, residual) file labels: Vocals / Instrumental, and each
#: of UVR's other stems X with its complement "No X".
STEM_LABELS = {
    "Instrumental": ("instrumental", "vocals"),
    "Vocals": ("vocals", "instrumental"),
    **{
        name: pair
        for stem in (
            "Echo",
            "Reverb",
            "Noise",
            "Other",
            "Bass",
            "Drums",
            "Guitar",
            "Piano",
            "Synthesizer",
            "Strings",
            "Woodwinds",
            "Brass",
            "Wind Inst",
        )
        for name, pair in (
            (stem, (_label(stem), "no_" + _label(stem))),
            (f"No {stem}", ("no_" + _label(stem), _label(stem))),
        )
    },
}


def _key(text: str) -> str:
    return " ".join(text.replace("_", " ").replace("-", " ").lower().split())


def parse_stem_label(text: str) -> str:
    """UVR's name of a primary stem given in UVR's spelling or uvrsep's, ignoring case, spaces,
    underscores and hyphens (``Vocals``, ``vocals``, ``No Echo``, ``no_echo`` → UVR's name)."""
    wanted = _key(text)
    for name in STEM_LABELS:
        if _key(name) == wanted:
            return name
    raise ConfigError(
        f"unknown stem {text!r} (use one of {', '.join(STEM_LABELS)}; case, spaces and underscores do not matter)"
    )


UVR_HASH_TAIL = 10_000 * 1024
#: How many times replacing a file another process holds open is tried (Windows), 50 ms apart.
REPLACE_TRIES = 20


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry (see the header of ``configs/models.toml`` for the fields)."""

    name: str
    file: str
    urls: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    source: str = "user"
    family: str | None = None
    width: int | None = None
    params: str | None = None
    primary: str = "Instrumental"
    sha256: str | None = None
    size: int | None = None
    note: str = ""

    @property
    def stems(self) -> tuple[str, str]:
        """(masked, residual) stem labels."""
        return STEM_LABELS.get(self.primary, (self.primary.lower().replace(" ", "_"), "rest"))

    @classmethod
    def from_dict(cls, raw: dict, where: str) -> ModelSpec:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(raw) - known
        if unknown or "name" not in raw or "file" not in raw:
            raise ConfigError(
                f"{where}: bad model entry {raw.get('name', '?')!r} ({', '.join(sorted(unknown)) or 'needs name and file'})"
            )
        raw = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        if raw.get("primary", "Instrumental") not in STEM_LABELS:
            raise ConfigError(f"{where}: {raw['name']}: unknown primary stem {raw['primary']!r}")
        try:
            return cls(**raw)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def __post_init__(self) -> None:
        check_file_name(self.file, f"model {self.name}: file")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if v not in (None, (), "")}


#: The longest file name most file systems take, in bytes (ext4, XFS, Btrfs, APFS; NTFS takes
#: 255 UTF-16 units, never more than the name's UTF-8 bytes): used where the system cannot say.
NAME_MAX = 255
#: Bytes kept free for what uvrsep appends to a name it is given for a cache file: ``.pth``, then
#: ``.part`` / ``.lock`` and the like for transfers and locks, with room to spare.
NAME_MARGIN = 40


def name_limit(folder: Path | None = None) -> int:
    """The longest file name, in bytes, the file system of ``folder`` takes (asked of its nearest
    existing parent with ``os.pathconf`` where the platform has it), else :data:`NAME_MAX`."""
    if folder is None or not hasattr(os, "pathconf"):
        return NAME_MAX
    folder = Path(folder).absolute()
    for candidate in (folder, *folder.parents):
        try:
            if candidate.is_dir():
                limit = int(os.pathconf(candidate, "PC_NAME_MAX"))
                return limit if limit > NAME_MARGIN else NAME_MAX  # -1: the system sets no limit
        except (OSError, ValueError):
            return NAME_MAX
    return NAME_MAX


def check_file_name(name: str, what: str = "model name", folder: Path | None = None) -> str:
    """``name`` if it is a plain file name (it becomes a file in the cache folder: no folder
    parts, no ``..``, nothing hidden or empty) short enough, ``.pth`` aside, for the file system
    of ``folder`` (:func:`name_limit`) with :data:`NAME_MARGIN` bytes to spare; else a
    :class:`ConfigError`."""
    bad = (
        not name
        or name in (".", "..")
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or any(ord(c) < 32 for c in name)
        or Path(name).name != name
    )
    if bad:
        raise ConfigError(f"{what} {name!r} must be a plain file name (no folders, '/', '\\' or leading '.')")
    # Measured without ".pth", so a name and the cache file made from it are judged alike.
    size, limit = len(name.removesuffix(".pth").encode("utf-8", "surrogatepass")), name_limit(folder)
    if size > limit - NAME_MARGIN:
        shown = name if len(name) <= 40 else name[:37] + "..."
        raise ConfigError(
            f"{what} {shown!r} is too long: {size} bytes, at most {limit - NAME_MARGIN} (the file system "
            f"takes {limit}-byte file names and uvrsep adds up to {NAME_MARGIN} for '.pth', '.part' and lock files)"
        )
    return name


@dataclass
class Registry:
    """Shipped entries plus user-imported ones, UVR's hash table and the default model's name."""

    models: list[ModelSpec]
    uvr_hashes: dict[str, dict] = field(default_factory=dict)
    default: str | None = None

    def default_spec(self) -> ModelSpec:
        """The entry used when no model is given (``default`` in ``configs/models.toml``)."""
        if self.default is None:
            raise ConfigError("no model given and the registry names no default model")
        return self.get(self.default)

    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def find(self, name: str) -> ModelSpec | None:
        """Entry whose name, alias or file name (with or without ``.pth``) is ``name``."""
        key = name.lower().removesuffix(".pth")
        for spec in self.models:
            labels = {spec.name, spec.file, *spec.aliases}
            if key in {x.lower().removesuffix(".pth") for x in labels}:
                return spec
        return None

    def get(self, name: str, label: str | None = None) -> ModelSpec:
        """Like :meth:`find`, but an unknown name is a :class:`ConfigError` with suggestions,
        naming it as ``label`` says (``--then NAME``; default ``unknown model 'NAME'``)."""
        spec = self.find(name)
        if spec is None:
            labels = [x for m in self.models for x in (m.name, *m.aliases)]
            close = difflib.get_close_matches(name, labels, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            what = f"{label}: unknown model" if label else f"unknown model {name!r}"
            raise ConfigError(f"{what}: not a file and not a registry name{hint} (see `uvrsep models list`)")
        return spec

    def band_config_users(self) -> dict[str, list[str]]:
        """``{band config: [what uses it]}``: the entries naming it, then the number of files in
        UVR's hash table that do (``"N file(s) in UVR's hash table"``)."""
        users: dict[str, list[str]] = {}
        for spec in self.models:
            if spec.params:
                users.setdefault(spec.params, []).append(spec.name)
        counts: dict[str, int] = {}
        for entry in self.uvr_hashes.values():
            counts[entry.get("params", "")] = counts.get(entry.get("params", ""), 0) + 1
        for params, count in counts.items():
            users.setdefault(params, []).append(f"{count} file(s) in UVR's hash table")
        return users

    def identify_by_uvr_hash(self, path: Path) -> dict | None:
        """UVR's table entry for a file (MD5 of its last 10,000 KiB), if any."""
        return self.uvr_hashes.get(uvr_hash(path))


def uvr_hash(path: Path) -> str:
    """UVR's model hash: MD5 of the last 10,000 KiB (the whole file if smaller)."""
    with open(path, "rb") as fh:
        try:
            fh.seek(-UVR_HASH_TAIL, 2)
        except OSError:
            fh.seek(0)
        return hashlib.md5(fh.read()).hexdigest()


def user_registry_path(home: Path) -> Path:
    return home / "user_models.json"


def load_registry(home: Path | None = None) -> Registry:
    """The shipped registry, plus the user registry under ``home`` (the cache folder) if given."""
    path = resource_dir("configs") / "models.toml"
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    models = [ModelSpec.from_dict(m, str(path)) for m in raw.get("model", [])]
    if home is not None and user_registry_path(home).is_file():
        user_path = user_registry_path(home)
        try:
            entries = json.loads(user_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{user_path}: unreadable user registry ({exc})") from None
        user = [ModelSpec.from_dict(m, str(user_path)) for m in entries]
        user_names = {m.name for m in user}
        models = [m for m in models if m.name not in user_names] + user
    return Registry(models=models, uvr_hashes=raw.get("uvr_hash", {}), default=raw.get("default"))


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` (UTF-8) atomically: readers see the old file or the new one,
    never a part; the temporary file has a name of its own, so writers never share one. On
    Windows a reader holding the file open makes the replacement fail for a moment: it is tried
    again for up to a second (:data:`REPLACE_TRIES`)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        for attempt in range(REPLACE_TRIES):
            try:
                os.replace(tmp, path)
                break
            except PermissionError:
                if attempt == REPLACE_TRIES - 1:
                    raise
                time.sleep(0.05)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def add_user_model(home: Path, spec: ModelSpec) -> None:
    """Add (or replace) an entry in the user registry. The read-modify-write holds the cache's
    cross-process lock ``locks/user_models.lock`` (:mod:`filelock`: every platform), so imports
    running at once never lose each other's entries; the file is replaced atomically."""
    path = user_registry_path(home)
    (home / "locks").mkdir(parents=True, exist_ok=True)
    with FileLock(home / "locks" / "user_models.lock"):
        entries = []
        if path.is_file():
            try:
                entries = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{path}: unreadable user registry ({exc})") from None
            entries = [e for e in entries if e.get("name") != spec.name]
        entries.append(spec.to_dict())
        write_text_atomic(path, json.dumps(entries, indent=2, ensure_ascii=False))
