"""An ensemble: several models separating the same inputs with the same settings, their stems
combined label by label (what ``Separator([A, B, ...])`` gives; docs/ensembles.md).

:class:`EnsembleMixin` holds the behaviour; :class:`uvrsep.separator.Ensemble` joins it to
:class:`~uvrsep.Separator` (there, so that ``Separator`` can give one without an import circle).

Each member is a :class:`~uvrsep.Separator`, loaded once, and separates every input exactly as
it would alone: it reads the input itself (with its own band config's resampler), with the
ensemble's settings, and gives the stems it would give alone. The ensemble combines them
(:func:`uvrsep.ensemble.ensemble_blocks`), in memory for inputs held whole and block by block
for inputs streamed in segments, so a long input stays in bounded memory: the members' segments
are produced side by side (each member's memory budget is its share of the device's) and
combined as they come.

A batch (:meth:`Ensemble.separate_batch`) runs each member's own batch over the same files in
step: short clips share network calls within each member, long inputs stream through all of
them at once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, option
from ..model import model_facts
from ..naming import model_name
from ..resolve import resolve_model
from ..semantics import Settings
from ..stems import Stems, StreamedStems
from .rules import check_ensemble, ensemble_labels, weights_note
from .stream import ensemble_blocks


class EnsembleMixin:
    """Models whose stems are combined label by label: ``Separator([A, B, ...], ...)``.

    Args:
        models: the members, each a ``.pth`` file or a registry name (``None``: the default
            model); one member is allowed (its stems are its own).
        ensemble_algorithm: one of :data:`uvrsep.ensemble.ALGORITHMS` (default ``avg_wave``).
        ensemble_weights: one number per member, in order, 0 or more, not all 0 (default
            equal); only ``avg_wave`` and ``avg_fft`` use them.
        params: the band config of every member whose file, registry entry or UVR's hash table
            records none (the others keep theirs).
        settings and every other keyword: as :class:`~uvrsep.Separator`'s, the same for every
            member; ``primary_stem`` is refused (stems are matched by label).

    Refused before any model is downloaded or built (one-line :class:`ConfigError`): members
    whose stem labels differ (an HP model's vocals/instrumental against a VR 5.1 model's
    no_echo/echo), bad weights or algorithm. Refused once built: members of different sample
    rates.

    Attributes: ``members`` (the :class:`~uvrsep.Separator` of each model, in order),
    ``ensemble_algorithm``, ``ensemble_weights`` (checked), ``labels`` / ``primary`` /
    ``secondary`` (the first member's order), ``settings``, ``layout`` (the first member's; all
    share its sample rate), ``notes``. Methods: those of :class:`~uvrsep.Separator`.
    """

    #: The class of the members (set where the mixin is joined to it).
    member_class: type

    def __init__(
        self,
        models: list | tuple,
        *,
        ensemble_algorithm: str | None = None,
        ensemble_weights: Iterable[float] | None = None,
        settings: Settings | None = None,
        params: str | Path | None = None,
        device: str | torch.device = "auto",
        batch_size: int | None = None,
        progress: bool = False,
        offline: bool = False,
        stream: int | None = None,
        segment_threshold: float | None = None,
        segment_windows: int | None = None,
        on_notice: Callable[[str], None] | None = None,
        precision: str = "fp32",
        **setting_fields,
    ):
        settings = Settings.from_options(settings, setting_fields, where="Separator()", others=_ARGUMENTS)
        self.ensemble_algorithm, self.ensemble_weights = check_ensemble(
            len(models), ensemble_algorithm, ensemble_weights, settings.primary_stem
        )
        settings.resolve()  # bad values fail before any model is loaded
        self.names = [model_name(m) for m in models]
        facts = [model_facts(m, offline=offline) for m in models]
        ensemble_labels([f.stems for f in facts], self.names)  # before any download
        options = dict(
            settings=settings,
            device=device,
            batch_size=batch_size,
            progress=progress,
            offline=offline,
            stream=stream,
            segment_threshold=segment_threshold,
            segment_windows=segment_windows,
            on_notice=on_notice,
            precision=precision,
        )
        self.members: list = []
        for model, fact in zip(models, facts, strict=True):
            if not fact.read:  # a registry entry: download it, then read what the file records
                model = resolve_model(model, offline=offline, progress=progress, on_notice=on_notice).path
                facts[len(self.members)] = fact = model_facts(model, offline=offline)
            self.members.append(self.member_class(model, params=None if fact.params else params, **options))
        ensemble_labels([m.labels for m in self.members], self.names)
        rates = {m.layout.sample_rate for m in self.members}
        if len(rates) > 1:
            listing = ", ".join(f"{n}: {m.layout.sample_rate} Hz" for n, m in zip(self.names, self.members))
            raise ConfigError(f"the models of an ensemble must share a sample rate ({listing})")
        for member in self.members:  # their long inputs stream side by side
            member.memory_share = 1.0 / len(self.members)
        first = self.members[0]
        self.device, self.precision, self.dsp, self.batch_size = (
            first.device,
            first.precision,
            first.dsp,
            first.batch_size,
        )
        self.progress, self.stream = progress, stream
        self.segment_threshold, self.segment_windows = segment_threshold, segment_windows
        self.notes = list(dict.fromkeys(note for m in self.members for note in m.notes))
        if params is not None and all(f.params is not None for f in facts):
            self.notes.append(
                f"{option('params')} {params} is not used: every model of the ensemble records its band config"
            )
        note = weights_note(self.ensemble_algorithm, self.ensemble_weights if ensemble_weights is not None else None)
        self.notes += [note] if note else []
        self._take_settings()

    def _take_settings(self) -> None:
        """The settings in use and the stems' order: the first member's."""
        first = self.members[0]
        self.settings, self.layout = first.settings, first.layout
        self.primary, self.secondary = first.labels

    # -- settings -------------------------------------------------------------------------------
    def configure(self, settings: Settings | None = None, **setting_fields) -> None:
        """Use other settings in every member (see :meth:`uvrsep.Separator.configure`); a bad value for
        any member changes nothing in any. ``primary_stem`` is refused."""
        given = Settings.from_options(settings or self.members[0]._given_settings, setting_fields, where="configure()")
        check_ensemble(len(self.members), self.ensemble_algorithm, self.ensemble_weights, given.primary_stem)
        before = [m._given_settings for m in self.members]
        try:
            for member in self.members:
                member.configure(given)
        except BaseException:
            for member, old in zip(self.members, before):
                member.configure(old)
            raise
        self._take_settings()

    @property
    def labels(self) -> tuple[str, str]:
        """The stems the ensemble writes (the first member's order)."""
        return (self.primary, self.secondary)

    @property
    def times(self):
        """The members' phase times of their last calls, summed (a :class:`~uvrsep.separator.PhaseTimes`)."""
        out = type(self.members[0].times)()
        for m in self.members:
            for phase in ("read", "analysis", "network", "synthesis"):
                setattr(out, phase, getattr(out, phase) + getattr(m.times, phase))
        return out

    @times.setter
    def times(self, value) -> None:
        """The first member takes ``value`` and the others start from zero, so that reading it
        back gives ``value`` (``PhaseTimes()``: every member's times reset)."""
        for k, m in enumerate(self.members):
            m.times = replace(value) if k == 0 else type(value)()

    def stage(self):
        raise ConfigError("an ensemble has one network stage per model: use members[i].stage()")

    def segment_plan(self, n_samples: int):
        raise ConfigError("an ensemble's models plan their segments each: use members[i].segment_plan()")

    def n_windows(self, n_frames: int) -> int:
        """Network windows of all members for ``n_frames`` frames (of the first member's layout)."""
        return sum(m.n_windows(n_frames) for m in self.members)

    def streams(self, seconds: float) -> bool:
        """Whether an input of ``seconds`` is separated in segments by any member."""
        return any(m.streams(seconds) for m in self.members)

    # -- separating -----------------------------------------------------------------------------
    def separate_many(self, inputs: list, on_window: Callable[[int], None] | None = None) -> list[Stems]:
        """Separate several inputs (paths or ``(wave, sample_rate)`` pairs): each member's
        :meth:`uvrsep.Separator.separate_many` (every member reads them itself), combined."""
        per_member = [m.separate_many(inputs, on_window) for m in self.members]
        return [self._combine_held(list(results)) for results in zip(*per_member, strict=True)]

    def separate_streamed(self, path: str | Path, on_window: Callable[[int], None] | None = None) -> StreamedStems:
        """Separate a file of any length (see :meth:`uvrsep.Separator.separate_streamed`): the members
        stream it side by side, their blocks combined as they come."""
        streams: list[StreamedStems] = []
        try:
            for member in self.members:
                streams.append(member.separate_streamed(path, on_window))
        except BaseException:
            for s in streams:
                s.close()
            raise
        return self._combined_stream(streams)

    def separate_batch(
        self,
        paths: Iterable[str | Path],
        *,
        group_windows: int = 8,
        durations: Mapping[Path, float] | None = None,
    ) -> Generator[tuple[Path, Stems | StreamedStems | Exception], None, None]:
        """As :meth:`uvrsep.Separator.separate_batch`: each member's batch over the same files, in step;
        an input fails (with the first failing member's error) when any member fails it."""
        paths = [Path(p) for p in paths]
        batches = [m.separate_batch(paths, group_windows=group_windows, durations=durations) for m in self.members]
        try:
            for outcomes in zip(*batches, strict=True):
                path = outcomes[0][0]
                results = [result for _, result in outcomes]
                failed = next((r for r in results if isinstance(r, Exception)), None)
                if failed is not None:
                    for r in results:
                        if isinstance(r, StreamedStems):
                            r.close()
                    yield path, failed
                    continue
                yield path, self._combine(results)
        finally:
            for batch in batches:
                batch.close()

    # -- combining ------------------------------------------------------------------------------
    def _combine(self, results: Sequence[Stems | StreamedStems]) -> Stems | StreamedStems:
        """The members' stems of one input combined: in memory when all are (:meth:`_combine_held`),
        else streamed."""
        held = [r for r in results if isinstance(r, Stems)]
        if len(held) == len(results):
            return self._combine_held(held)
        return self._combined_stream([r.as_stream() if isinstance(r, Stems) else r for r in results])

    def _combine_held(self, results: Sequence[Stems]) -> Stems:
        """The members' in-memory stems of one input combined, with the sum of their processing
        times (``None`` when one is not known)."""
        stems = self._combined_stream([r.as_stream() for r in results]).collect()
        times = [r.seconds for r in results]
        return replace(stems, seconds=None if None in times else sum(t or 0.0 for t in times))

    def _combined_stream(self, streams: list[StreamedStems]) -> StreamedStems:
        """The members' streams of one input (``{stem: float32 [2, t]}`` blocks each) combined
        block by block: float32 ``[2, t']`` blocks, the first member's stem order. The input's
        measures (``input_meter``) are the first member's: every member read the same input at
        the same rate."""
        labels = self.labels

        def chunks() -> Iterator[dict[str, np.ndarray]]:
            try:
                for block in ensemble_blocks(streams, self.ensemble_algorithm, self.ensemble_weights):
                    yield {name: block[name].numpy() for name in labels}
            finally:
                for s in streams:
                    s.close()

        return StreamedStems(
            names=labels,
            sample_rate=self.layout.sample_rate,
            primary=self.primary,
            n_samples=max(s.n_samples for s in streams),
            chunks=chunks(),
            notes=list(self.notes),
            input_meter=streams[0].input_meter,
        )


#: The keyword arguments of an ensemble besides the :class:`Settings` fields (for the suggestion
#: when a keyword is unknown).
_ARGUMENTS = tuple(
    name
    for name, p in inspect.signature(EnsembleMixin.__init__).parameters.items()
    if name != "self" and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
)
