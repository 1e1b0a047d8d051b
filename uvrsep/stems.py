"""From the predicted magnitudes to the two stems: masked (primary) and residual (secondary).

The primary stem is what the mask keeps, ``y = pred · e^{jφ}``; the secondary is the rest of the
mix, ``v = X − y``. Each stem's top band gets its high end back by "mirroring" (see
:func:`mirror_high_end`) before synthesis.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import BandLayout
from .errors import AudioWriteError, option
from .naming import contained_path
from .report.measures import SignalMeter
from .writer import write_stems

HIGH_END_MODES = ("mirroring", "mirroring2", "none")
#: Stems that carry the voice, in the order a model's labels are searched for one.
VOICE_STEMS = ("vocals", "no_echo", "no_reverb", "no_noise")


def voice_stem_of(names: Sequence[str]) -> str | None:
    """The stem among ``names`` that holds the voice, or ``None``: one of :data:`VOICE_STEMS`,
    after the prefixes a chain gives its later models' stems (each a voice stem and ``_``).

    >>> voice_stem_of(("instrumental", "vocals")), voice_stem_of(("drums", "no_drums"))
    ('vocals', None)
    >>> voice_stem_of(("instrumental", "vocals_no_reverb", "vocals_reverb"))
    'vocals_no_reverb'
    """
    for name in names:
        rest = name
        while rest not in VOICE_STEMS:
            prefix = next((v + "_" for v in VOICE_STEMS if rest.startswith(v + "_")), None)
            if prefix is None:
                break
            rest = rest[len(prefix) :]
        if rest in VOICE_STEMS:
            return name
    return None


def mirror_high_end(
    stem: torch.Tensor, high_end: torch.Tensor, layout: BandLayout, mode: str = "mirroring"
) -> torch.Tensor:
    """UVR's high-end mirroring for one stem spectrogram, complex64 ``[2, bins + 1, T]``.

    The stem's magnitudes just below the pre-filter (rows ``pfs - 10 - h .. pfs - 11``) are
    flipped upwards and given the mix's top-band phase; per bin, whichever of that mirror and
    the mix's own high end (``high_end``, complex64 ``[2, h, T]`` on the same device) is quieter
    is kept. ``mirroring2`` multiplies the mirror by ``1.7 ·`` the mix's high end instead.
    Returns a new complex64 tensor ``[2, h, T]`` on that device.
    """
    h = high_end.shape[1]
    pfs = layout.pre_filter[0] if layout.pre_filter is not None else layout.bins
    mirror = torch.flip(torch.abs(stem[:, pfs - 10 - h : pfs - 10, :]), [1])
    if mode == "mirroring":
        mirror = mirror * torch.angle(high_end).mul(1j).exp_()
    elif mode == "mirroring2":
        mirror = mirror * (high_end * 1.7)
    else:
        raise ValueError(f"unknown high-end mode {mode!r}")
    return torch.where(torch.abs(high_end) <= torch.abs(mirror), high_end, mirror)


@dataclass(eq=False)
class Stems(Mapping):
    """Separated audio: ``waves[name]`` is float32 ``[2, samples]`` at ``sample_rate``.

    A read-only mapping of stem names to waveforms: ``stems["vocals"]``, ``"vocals" in stems``,
    ``stems.keys()``, ``stems.items()``, ``len(stems)``, iteration in order (the masked stem
    first). ``primary`` names the masked stem; the other is the residual.
    """

    waves: dict[str, np.ndarray]
    sample_rate: int
    primary: str
    notes: list[str] = field(default_factory=list)
    #: Processing time attributed to this input (its share of a shared network run), if known.
    seconds: float | None = None
    #: The input as the network heard it (model's rate, stereo), measured while it was held
    #: (:mod:`uvrsep.report.measures`); the writer measures the stems against it. ``None``:
    #: stems made otherwise, written without measures.
    input_meter: SignalMeter | None = field(default=None, repr=False)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.waves)

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return self.waves[self.primary].shape[1] / self.sample_rate

    @property
    def voice(self) -> str | None:
        """The stem that holds the voice (:func:`voice_stem_of`), or ``None``."""
        return voice_stem_of(self.names)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.waves[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.waves)

    def __len__(self) -> int:
        return len(self.waves)

    def as_stream(self) -> StreamedStems:
        """The same audio as a one-block :class:`StreamedStems` (for code that writes streams)."""
        return StreamedStems(
            self.names,
            self.sample_rate,
            self.primary,
            self.waves[self.primary].shape[1],
            iter([self.waves]),
            list(self.notes),
            self.input_meter,
        )

    def write(
        self,
        output_dir: str | Path,
        track: str,
        *,
        fmt: str = "wav",
        bit_depth: str | None = None,
        overwrite: bool = False,
    ) -> dict[str, Path]:
        """Write each stem as ``<output_dir>/<track>_<stem>.<fmt>``; returns the paths.

        ``track`` may name subfolders, but every file must stay inside ``output_dir`` (symbolic
        links resolved): otherwise an :class:`AudioWriteError` and nothing is written. Nothing is
        written either if any target exists and ``overwrite`` is false.
        """
        paths = stem_paths(output_dir, track, self.names, fmt)
        refuse_existing(paths.values(), overwrite)
        return write_stems(self, paths, bit_depth=bit_depth, overwrite=overwrite)


@dataclass
class StreamedStems:
    """Stems of a long input, produced segment by segment: iterating yields ``{stem: float32
    [2, t]}`` blocks in order, ``n_samples`` in all per stem (iterate once)."""

    names: tuple[str, ...]
    sample_rate: int
    primary: str
    n_samples: int
    chunks: Iterator[dict[str, np.ndarray]]
    notes: list[str] = field(default_factory=list)
    #: As :attr:`Stems.input_meter` (complete once the stream is returned: its first pass read all).
    input_meter: SignalMeter | None = field(default=None, repr=False)

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return self.n_samples / self.sample_rate

    @property
    def voice(self) -> str | None:
        """The stem that holds the voice (:func:`voice_stem_of`), or ``None``."""
        return voice_stem_of(self.names)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self.chunks

    def close(self) -> None:
        """Stop early: release the input file and the segment buffers."""
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()

    def collect(self) -> Stems:
        """All of it in memory, as :class:`Stems` (for inputs that fit)."""
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.names}
        for chunk in self:
            for name, wave in chunk.items():
                parts[name].append(wave)
        return Stems(
            {name: np.concatenate(p, axis=1) for name, p in parts.items()},
            self.sample_rate,
            self.primary,
            list(self.notes),
            input_meter=self.input_meter,
        )


def stem_paths(output_dir: str | Path, track: str, names: tuple[str, ...], fmt: str) -> dict[str, Path]:
    """``{stem: <output_dir>/<track>_<stem>.<fmt>}``, each checked to stay inside ``output_dir``
    (:func:`uvrsep.naming.contained_path`)."""
    if not isinstance(track, str):
        raise AudioWriteError(f"track must be a name (text), got {type(track).__name__}")
    return {name: contained_path(Path(output_dir), f"{track}_{name}.{fmt}") for name in names}


def refuse_existing(paths, overwrite: bool) -> None:
    """Raise :class:`AudioWriteError` naming the targets that exist, unless ``overwrite``."""
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        raise AudioWriteError(f"{', '.join(existing)}: already exists ({option('overwrite', value=True)} replaces it)")
