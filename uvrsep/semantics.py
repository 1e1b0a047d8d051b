"""What the settings mean: RVC's ``AudioPre``, or UVR5 / python-audio-separator's VR path.

The same weights and the same "aggressiveness" give outputs 22–32 dB apart under the two
programs, because they use the network's mask differently. :class:`Settings` holds what a user
chooses; a :class:`Semantics` turns it into the steps of the pipeline, each a small function of
:mod:`uvrsep.masks`, :mod:`uvrsep.stems` or a band-layout field:

===================  ==========================================  ==========================================
step                 ``rvc`` (RVC's ``AudioPre``, the default)   ``uvr`` (audio-separator 0.47.1 / UVR5 GUI)
===================  ==========================================  ==========================================
band layout          as the JSON file says                       ``sinc_fastest`` between all bands in the
                                                                 synthesis; VR 5.1 nets: per-band
                                                                 ``convert_channels``, linear pre-filter
each window          aggressiveness (ASPP nets only)             nothing
TTA                  averages the masked magnitudes              averages the raw masks
estimate             masked magnitudes ``mask · |X|``            the mask, after aggression (once, with
                                                                 the inversion for vocal-type stems)
post-processing      ``mask_silence`` (quiet residual runs)      ``merge_artifacts`` (confident mask runs)
stems                ``y = pred·e^{jφ}``, ``v = X − y``           ``y = m·|X|·e^{jφ}``, ``v = (1−m)·|X|·e^{jφ}``
===================  ==========================================  ==========================================

Every step works on torch tensors and runs on their device (the DSP device, CPU or CUDA).
Post-processing needs every frame's statistic before any frame is changed (runs of frames),
so it is split into :meth:`Semantics.frame_stats`, :meth:`Semantics.post_plan` and
:meth:`Semantics.apply_post`; a long input processed in segments computes the statistics in a
first pass and then applies the whole file's plan to each segment.
"""

from __future__ import annotations

import difflib
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import numpy as np
import torch

from .config import BandLayout
from .errors import ConfigError, option
from .masks import (
    UVR_INVERTED_STEMS,
    apply_aggressiveness,
    apply_merge_weights,
    apply_silence_ops,
    apply_uvr_aggression,
    merge_weights,
    silence_ops,
)
from .registry import parse_stem_label

#: Largest network window (frames) a setting may ask for: UVR offers up to 1024; memory per
#: window grows with it.
MAX_WINDOW_SIZE = 2048


@dataclass(frozen=True)
class Settings:
    """How to separate: the settings of :class:`uvrsep.Separator` that change the numbers.

    ``None`` means "the default of the chosen semantics"; :meth:`resolve` fills those in and
    checks every value.

    Attributes:
        semantics: ``rvc`` (RVC's ``AudioPre``, the default) or ``uvr`` (UVR5 GUI /
            python-audio-separator): what the other settings mean.
        aggressiveness: ``rvc``: 0–100, default 10, applied to the mask in each window.
            ``uvr``: UVR's aggression, −100–100, default 5, applied once to the whole mask,
            inverted for vocal-type primary stems, also for VR 5.1 nets.
        tta: a second pass with windows shifted by half a window, averaged.
        postprocess: ``rvc``: ``mask_silence``; ``uvr``: ``merge_artifacts``.
        postprocess_threshold: the post-processing threshold (default 0.2 in both).
        window_size: frames per network window (default 512; any size above twice the net's
            context, up to :data:`MAX_WINDOW_SIZE`).
        high_end: ``rvc``: ``mirroring`` (default), ``mirroring2`` or ``none``; ``uvr``:
            ``mirroring`` or ``none`` (default, as audio-separator's CLI).
        primary_stem: the stem the mask keeps, in UVR's spelling or uvrsep's (``Vocals``,
            ``no_echo``); default: the registry's, else the family's.
    """

    semantics: str = "rvc"
    aggressiveness: float | None = None
    tta: bool = False
    postprocess: bool = False
    postprocess_threshold: float = 0.2
    window_size: int = 512
    high_end: str | None = None
    primary_stem: str | None = None

    def resolve(self) -> Settings:
        """A copy with every default filled in; a bad value is a one-line :class:`ConfigError`."""
        if self.semantics not in SEMANTICS:
            raise ConfigError(f"unknown semantics {self.semantics!r} (use {' or '.join(SEMANTICS)})")
        kind = SEMANTICS[self.semantics]
        agg = kind.default_aggressiveness if self.aggressiveness is None else self.aggressiveness
        low, high = kind.aggressiveness_range
        if not (isinstance(agg, (int, float)) and low <= agg <= high):
            raise ConfigError(
                f"aggressiveness must be between {low:g} and {high:g} with {self.semantics} semantics, got {agg}"
            )
        high_end = kind.default_high_end if self.high_end is None else self.high_end
        if high_end not in kind.high_end_modes:
            raise ConfigError(
                f"high-end mode {high_end!r} does not exist with {self.semantics} semantics "
                f"(use {', '.join(kind.high_end_modes)})"
            )
        threshold = self.postprocess_threshold
        if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold >= 0):
            raise ConfigError(f"postprocess threshold must be a number >= 0, got {threshold}")
        if isinstance(self.window_size, bool) or not isinstance(self.window_size, int) or self.window_size < 1:
            raise ConfigError(f"window size must be a positive whole number of frames, got {self.window_size}")
        if self.window_size > MAX_WINDOW_SIZE:
            raise ConfigError(
                f"window size {self.window_size} is too large: at most {MAX_WINDOW_SIZE} frames (UVR's largest is 1024)"
            )
        try:
            primary = None if self.primary_stem is None else parse_stem_label(self.primary_stem)
        except ConfigError as exc:
            raise ConfigError(f"{option('primary_stem', value=self.primary_stem)}: {exc}") from None
        return replace(
            self,
            aggressiveness=agg,
            high_end=high_end,
            primary_stem=primary,
            tta=bool(self.tta),
            postprocess=bool(self.postprocess),
        )

    @classmethod
    def from_options(
        cls, settings: Settings | None, options: dict[str, Any], *, where: str = "Settings", others: Iterable[str] = ()
    ) -> Settings:
        """``settings`` (default: all defaults) with the fields named in ``options`` replaced.

        A name that is not a field is a one-line :class:`ConfigError` naming it, ``where`` it was
        given (``Separator()``) and the closest valid name among the fields and ``others`` (the
        caller's own arguments), as a typo usually is."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            valid = [*others, *names]
            first = unknown[0]
            close = difflib.get_close_matches(first, valid, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"the arguments are {', '.join(valid)}"
            what = ", ".join(map(repr, unknown))
            raise ConfigError(f"{where} got unknown argument{'s' if len(unknown) > 1 else ''} {what}; {hint}")
        return replace(settings or cls(), **options)


class Semantics(ABC):
    """The steps of one semantics, bound to resolved :class:`Settings`, a band layout and a net.

    Every step takes and returns torch tensors on the DSP device (the device of its inputs):
    magnitudes, masks and estimates float32 ``[2, F, T]``, spectrograms complex64 ``[2, F, T]``.
    Estimates are what the network stage hands to post-processing and to the stems (RVC: masked
    magnitudes; UVR: the mask). Only the post-processing plan, made from every frame's statistic
    (one ``[T]`` vector copied to the host per input), is small numpy values on the CPU.
    """

    name: ClassVar[str]
    aggressiveness_range: ClassVar[tuple[float, float]]
    default_aggressiveness: ClassVar[float]
    high_end_modes: ClassVar[tuple[str, ...]]
    default_high_end: ClassVar[str]

    def __init__(self, settings: Settings, layout: BandLayout, *, family: str, primary: str, uses_aggressiveness: bool):
        self.settings = settings
        self.layout = layout
        self.family = family
        self.primary = primary
        self.uses_aggressiveness = uses_aggressiveness

    @property
    def aggressiveness(self) -> float:
        """The aggressiveness setting (filled in: a semantics is built from resolved settings)."""
        assert self.settings.aggressiveness is not None, "Settings.resolve() fills it in"
        return self.settings.aggressiveness

    @staticmethod
    def adapt_layout(layout: BandLayout, family: str) -> BandLayout:
        """The band layout as this semantics carries it out (see the module table)."""
        return layout

    def window_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """A step on each window's mask ``[B, 2, F, W]`` inside the network stage."""
        return mask

    @abstractmethod
    def estimate(self, masks: list[torch.Tensor], norm: torch.Tensor, coef: float) -> torch.Tensor:
        """The estimate ``[2, F, T]`` (a new tensor) from the stitched masks of each pass (one, or
        two with TTA), each ``[2, F, T]``, with the normalised magnitudes ``norm`` ``[2, F, T]``
        and their scale ``coef``."""

    @abstractmethod
    def magnitudes(self, est: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
        """The masked stem's magnitudes ``[2, F, T]`` for an estimate (may be ``est`` itself)."""

    @abstractmethod
    def frame_stats(self, est: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
        """Post-processing's per-frame statistic of an estimate and the mix magnitudes ``[2, F, T]``:
        float32 ``[T]`` on their device."""

    @abstractmethod
    def post_plan(self, stats: np.ndarray, n_frames: int) -> Any:
        """The whole input's post-processing from every frame's statistic (float32 numpy ``[T]``
        covering the original's ``n_frames`` frames and possibly extra frames past the end)."""

    @abstractmethod
    def apply_post(self, est: torch.Tensor, mag: torch.Tensor, plan: Any, offset: int, n_frames: int) -> None:
        """In place: post-process frames ``offset .. offset + T − 1`` of the input held in ``est``
        ``[2, F, T]`` (``mag``: the mix magnitudes of the same frames)."""

    @abstractmethod
    def primary_spec(self, spec: torch.Tensor, mag: torch.Tensor, est: torch.Tensor) -> torch.Tensor:
        """The masked stem's spectrogram, complex64 ``[2, F, T]`` (a new tensor), from the mix's
        ``spec`` (complex64) and magnitudes ``mag`` ``[2, F, T]``."""

    @abstractmethod
    def secondary_spec(
        self, spec: torch.Tensor, mag: torch.Tensor, est: torch.Tensor, primary: torch.Tensor
    ) -> torch.Tensor:
        """The other stem's spectrogram, complex64 ``[2, F, T]``; may overwrite and return the
        ``primary`` buffer (it is not needed after)."""


def unit_phase(spec: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``e^{j·angle(spec)}``, complex64 like ``spec`` ``[2, F, T]``, computed as RVC and UVR do
    (into ``out`` when given)."""
    phase = torch.angle(spec)
    if out is None:
        return phase.mul(1j).exp_()
    return torch.mul(phase, 1j, out=out).exp_()


class RvcSemantics(Semantics):
    """RVC's ``AudioPre`` (``infer/modules/uvr5/vr.py``): uvrsep's reference behaviour."""

    name = "rvc"
    aggressiveness_range = (0.0, 100.0)
    default_aggressiveness = 10.0
    high_end_modes = ("mirroring", "mirroring2", "none")
    default_high_end = "mirroring"

    def window_mask(self, mask: torch.Tensor) -> torch.Tensor:
        if self.uses_aggressiveness:  # RVC's VR 5.1 path ignores it
            mask = apply_aggressiveness(mask, self.aggressiveness / 100, self.layout.split_bin)
        return mask

    def estimate(self, masks: list[torch.Tensor], norm: torch.Tensor, coef: float) -> torch.Tensor:
        preds = [mask * norm for mask in masks]
        return (preds[0] + preds[1]) * 0.5 * coef if len(preds) == 2 else preds[0] * coef

    def magnitudes(self, est: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
        return est

    def frame_stats(self, est: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
        return (mag - est).clamp_(min=0).mean(dim=(0, 1))

    def post_plan(self, stats: np.ndarray, n_frames: int) -> tuple[list, list]:
        # The original's frames exactly as it does; frames past its end get their own pass.
        thres = self.settings.postprocess_threshold
        return silence_ops(stats[:n_frames], thres), silence_ops(stats, thres)

    def apply_post(
        self, est: torch.Tensor, mag: torch.Tensor, plan: tuple[list, list], offset: int, n_frames: int
    ) -> None:
        if not (plan[0] or plan[1]):
            return
        ref = (mag - est).clamp_(min=0)
        cut = min(est.shape[2], max(0, n_frames - offset))
        apply_silence_ops(est[:, :, :cut], ref[:, :, :cut], plan[0], offset=offset)
        apply_silence_ops(est[:, :, cut:], ref[:, :, cut:], plan[1], offset=offset + cut)

    def primary_spec(self, spec: torch.Tensor, mag: torch.Tensor, est: torch.Tensor) -> torch.Tensor:
        stem = unit_phase(spec)  # y = pred · e^{jφ}, as RVC computes it
        stem *= est
        return stem

    def secondary_spec(
        self, spec: torch.Tensor, mag: torch.Tensor, est: torch.Tensor, primary: torch.Tensor
    ) -> torch.Tensor:
        return torch.sub(spec, primary, out=primary)  # v = X − y


class UvrSemantics(Semantics):
    """python-audio-separator 0.47.1's ``VRSeparator`` (UVR5 GUI's VR algorithm); see
    ``../shared/fixtures/uvr/README.md`` for the exact steps."""

    name = "uvr"
    aggressiveness_range = (-100.0, 100.0)
    default_aggressiveness = 5.0
    high_end_modes = ("mirroring", "none")
    default_high_end = "none"

    @staticmethod
    def adapt_layout(layout: BandLayout, family: str) -> BandLayout:
        changes: dict[str, Any] = {"synthesis_resamplers": ("sinc_fastest",) * (len(layout.bands) - 1)}
        if family == "vr51":  # UVR's is_v51_model path
            changes["channel_modes"] = tuple(band.convert_channels or "stereo" for band in layout.bands)
            changes["pre_filter_shape"] = "ramp"
        return replace(layout, **changes)

    @property
    def inverted(self) -> bool:
        """Whether the aggression is inverted (a vocal-type primary stem)."""
        return self.primary in UVR_INVERTED_STEMS

    def estimate(self, masks: list[torch.Tensor], norm: torch.Tensor, coef: float) -> torch.Tensor:
        mask = (masks[0] + masks[1]) * 0.5 if len(masks) == 2 else masks[0].to(torch.float32, copy=True)
        return apply_uvr_aggression(mask, self.aggressiveness, self.layout.split_bin, self.inverted)

    def magnitudes(self, est: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
        return est * mag

    def frame_stats(self, est: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
        return est.amin(dim=(0, 1))

    def post_plan(self, stats: np.ndarray, n_frames: int) -> np.ndarray:
        return merge_weights(stats[:n_frames], self.settings.postprocess_threshold)

    def apply_post(self, est: torch.Tensor, mag: torch.Tensor, plan: np.ndarray, offset: int, n_frames: int) -> None:
        # Frames past the original's end carry its last frame's mask, and get its weight.
        frames = np.minimum(np.arange(offset, offset + est.shape[2]), n_frames - 1)
        apply_merge_weights(est, plan[frames])

    def primary_spec(self, spec: torch.Tensor, mag: torch.Tensor, est: torch.Tensor) -> torch.Tensor:
        stem = unit_phase(spec)
        stem *= est * mag  # y = (m · |X|) · e^{jφ}
        return stem

    def secondary_spec(
        self, spec: torch.Tensor, mag: torch.Tensor, est: torch.Tensor, primary: torch.Tensor
    ) -> torch.Tensor:
        unit_phase(spec, out=primary)
        primary *= (1 - est) * mag  # v = ((1 − m) · |X|) · e^{jφ}
        return primary


#: The semantics by name (``--semantics``).
SEMANTICS: dict[str, type[Semantics]] = {"rvc": RvcSemantics, "uvr": UvrSemantics}
