"""Model chains: each model after the first runs on the previous one's voice stem.

The common dataset preparation is "remove the music, then remove echo and reverb from the
vocals": ``Chain(Separator("HP2_all_vocals"), Separator("VR-DeEchoDeReverb"))``. Every model is
loaded once; each input goes through all of them in one pass of the batch.

Final stems: the first model's other stem keeps its label (``instrumental``); each later
model's stems are named after the voice stem they came from (``vocals_no_reverb``,
``vocals_reverb``). Long inputs stay in bounded memory: the first model's stems stream to
temporary float files (system temp folder, ~1.3 GB per hour and stem), the next model streams
from the voice file.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf

from .audio import owner_tag, remove_abandoned
from .errors import ITEM_ERRORS, ConfigError
from .stems import VOICE_STEMS, Stems, StreamedStems

#: Prefix of the temporary folders holding a chain's intermediate stems.
TEMP_PREFIX = "uvrsep-chain-"


def voice_stem(labels: tuple[str, str]) -> str:
    """The stem of a model's two that holds the voice (what the next model of a chain takes)."""
    for label in VOICE_STEMS:
        if label in labels:
            return label
    raise ConfigError(
        f"a model with stems {'/'.join(labels)} has no voice stem to hand on in a chain "
        f"(one of {', '.join(VOICE_STEMS)})"
    )


def chain_labels(stages: list[tuple[str, str]]) -> tuple[str, ...]:
    """Final stem labels of a chain whose models write ``stages`` ((masked, residual) each).

    >>> chain_labels([("instrumental", "vocals"), ("no_reverb", "reverb")])
    ('instrumental', 'vocals_no_reverb', 'vocals_reverb')
    """
    final: list[str] = []
    prefix = ""
    for i, pair in enumerate(stages):
        if i == len(stages) - 1:
            final += [prefix + label for label in pair]
            break
        voice = voice_stem(pair)
        final.append(prefix + (pair[1] if voice == pair[0] else pair[0]))
        prefix += voice + "_"
    return tuple(final)


def final_labels(
    models: list, *, offline: bool = False, primary_stem: str | None = None, ensemble: int = 1
) -> tuple[str, ...]:
    """The stems a model, an ensemble (the first ``ensemble`` of ``models``, when above 1), or
    the chain after either, will write, known without loading or downloading any of them
    (:func:`uvrsep.model.model_stems`); ``primary_stem``, like ``params``, is the first model's.
    Members of an ensemble whose stems do not match are refused here, naming each. Errors name
    the first stage's models ``model`` and the later ones ``then`` (``--model`` and ``--then``
    on the command line)."""
    from .ensemble.rules import ensemble_labels
    from .model import model_stems
    from .naming import model_name

    first = max(ensemble, 1)
    pairs = [
        model_stems(
            m, offline=offline, primary_stem=primary_stem if k == 0 else None, given_as="model" if k < first else "then"
        )
        for k, m in enumerate(models)
    ]
    if ensemble > 1:
        pairs[:ensemble] = [ensemble_labels(pairs[:ensemble], [model_name(m) for m in models[:ensemble]])]
    return pairs[0] if len(pairs) == 1 else chain_labels(pairs)


class Chain:
    """Separators applied one after another (see the module doc). ``labels`` are the final
    stems; :meth:`separate_batch` and :meth:`separate` behave as a :class:`~uvrsep.Separator`'s."""

    def __init__(self, *stages):
        if len(stages) < 2:
            raise ConfigError("a chain needs at least two models")
        rates = {s.layout.sample_rate for s in stages}
        if len(rates) > 1:
            raise ConfigError(
                f"the models of a chain must share a sample rate (these use {', '.join(map(str, sorted(rates)))} Hz)"
            )
        self.stages = stages
        self.sample_rate = stages[0].layout.sample_rate
        self.labels = chain_labels([s.labels for s in stages])
        self.primary = self.labels[-2]
        self.voices = [voice_stem(s.labels) for s in stages[:-1]]
        self.notes = [note for s in stages for note in s.notes]

    # -- in memory ------------------------------------------------------------------------------
    def _finish(self, first: Stems, rest: list[Stems]) -> Stems:
        """Final stems from the first model's stems and the later models' (for one input)."""
        waves, prefix = {}, ""
        for stems, voice in zip([first] + rest[:-1], self.voices):
            other = next(n for n in stems.names if n != voice)
            waves[prefix + other] = stems[other]
            prefix += voice + "_"
        for name in rest[-1].names:
            waves[prefix + name] = rest[-1][name]
        seconds = sum(s.seconds or 0.0 for s in [first] + rest)
        return Stems(
            waves={k: waves[k] for k in self.labels},
            sample_rate=self.sample_rate,
            primary=self.primary,
            notes=list(self.notes),
            seconds=seconds,
            input_meter=first.input_meter,
        )

    def _later_stages(self, firsts: list[Stems]) -> list[Stems | Exception]:
        """Run the later models on the voice stems of ``firsts`` (sharing network calls)."""
        current: list[Stems | Exception] = list(firsts)
        trail: list[list[Stems]] = [[] for _ in firsts]
        for stage, voice in zip(self.stages[1:], self.voices):
            live = {k: s for k, s in enumerate(current) if not isinstance(s, Exception)}
            t0 = time.perf_counter()
            outs: list[Stems | Exception]
            try:
                outs = list(stage.separate_many([(s[voice], self.sample_rate) for s in live.values()]))
            except ITEM_ERRORS:
                outs = []
                for s in live.values():
                    try:
                        outs.append(stage.separate_many([(s[voice], self.sample_rate)])[0])
                    except ITEM_ERRORS as exc:
                        outs.append(exc)
            elapsed = time.perf_counter() - t0
            total = sum(s.duration for s in live.values()) or 1.0
            for (k, s), out in zip(live.items(), outs):
                if not isinstance(out, Exception):
                    out.seconds = elapsed * s.duration / total
                    trail[k].append(out)
                current[k] = out
        return [
            c if isinstance(c, Exception) else self._finish(first, trail[k])
            for k, (c, first) in enumerate(zip(current, firsts))
        ]

    def separate(self, audio, sample_rate: int | None = None) -> Stems:
        """Separate a path, or an array with its ``sample_rate``, through every model."""
        result = self._later_stages([self.stages[0].separate(audio, sample_rate)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    # -- batches -------------------------------------------------------------------------------
    def separate_batch(
        self, paths, *, group_windows: int = 8, durations: Mapping[Path, float] | None = None
    ) -> Iterator[tuple[Path, Stems | StreamedStems | Exception]]:
        """As :meth:`Separator.separate_batch`, through every model; in order."""
        pending: list[tuple[Path, Stems]] = []

        def flush() -> Iterator[tuple[Path, Stems | Exception]]:
            results = self._later_stages([stems for _, stems in pending])
            yield from zip([path for path, _ in pending], results)
            pending.clear()

        first = self.stages[0]
        for path, result in first.separate_batch(paths, group_windows=group_windows, durations=durations):
            if isinstance(result, Stems):
                pending.append((path, result))
                if sum(first.n_windows(first._frames_for(s.duration)) for _, s in pending) >= group_windows:
                    yield from flush()
                continue
            yield from flush()
            if isinstance(result, StreamedStems):
                try:
                    result = self._stream_later(result)
                except ITEM_ERRORS as exc:
                    result = exc
            yield path, result
        yield from flush()

    def _stream_later(self, streamed: StreamedStems) -> StreamedStems:
        """A long input: each model's stems go to temporary float files; the next model streams
        from the voice file; the final blocks are read back in step."""
        folder = Path(tempfile.gettempdir())
        remove_abandoned(folder, TEMP_PREFIX)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{owner_tag()}-", dir=folder))
        streamed_input = streamed.input_meter  # the chain's input: the first model's
        try:
            others: dict[str, Path] = {}
            prefix = ""
            for k, (stage, voice) in enumerate(zip(self.stages[1:], self.voices)):
                files = {name: tmp / f"{k}_{name}.wav" for name in streamed.names}
                _spill(streamed, files)
                other = next(n for n in streamed.names if n != voice)
                others[prefix + other] = files[other]
                prefix += voice + "_"
                streamed = stage.separate_streamed(files[voice])
            last = streamed
        except BaseException:
            streamed.close()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        n_samples, input_meter = last.n_samples, streamed_input

        def chunks() -> Iterator[dict[str, np.ndarray]]:
            readers = {name: sf.SoundFile(str(path)) for name, path in others.items()}
            try:
                for block in last:
                    t = next(iter(block.values())).shape[1]
                    out = {name: reader.read(t, dtype="float32", always_2d=True).T for name, reader in readers.items()}
                    out.update({prefix + name: wave for name, wave in block.items()})
                    yield {name: out[name] for name in self.labels}
            finally:
                last.close()
                for reader in readers.values():
                    reader.close()
                shutil.rmtree(tmp, ignore_errors=True)

        return StreamedStems(
            names=self.labels,
            sample_rate=self.sample_rate,
            primary=self.primary,
            n_samples=n_samples,
            chunks=chunks(),
            notes=list(self.notes),
            input_meter=input_meter,
        )


def _spill(streamed: StreamedStems, files: dict[str, Path]) -> None:
    """Write every stem of a stream to float32 RF64 files (bounded memory)."""
    handles = {
        name: sf.SoundFile(str(path), "w", samplerate=streamed.sample_rate, channels=2, subtype="FLOAT", format="RF64")
        for name, path in files.items()
    }
    try:
        for block in streamed:
            for name, wave in block.items():
                handles[name].write(np.ascontiguousarray(wave.T))
    finally:
        for handle in handles.values():
            handle.close()


def load_models(
    models: list,
    *,
    params=None,
    ensemble: int = 1,
    on_notice: Callable[[str], None] | None = None,
    download_progress: bool = False,
    **options,
):
    """The first stage — the :class:`~uvrsep.Separator` for ``models[0]``, or with ``ensemble``
    above 1 the ensemble of ``models[:ensemble]`` — alone, or as the :class:`Chain` with the
    later models. Each is built with the same ``options`` (Separator keywords: device, settings,
    ``ensemble_algorithm``, ...); ``params`` and the settings' ``primary_stem`` apply to the
    first stage only (in an ensemble, ``params`` to its members that record no band config). A
    registry name not yet cached is downloaded first (unless ``options["offline"]``), with a
    size bar when ``download_progress`` and its one-line notices sent to ``on_notice``. Errors
    name the first stage's models ``model`` and the later ones ``then`` (``--model`` and
    ``--then`` on the command line).

    The one place a batch builds its model, on this machine (``uvrsep separate``) or inside each
    worker of a Ray cluster (:mod:`uvrsep.cluster`), so every setting reaches both the same way.
    """
    from .resolve import resolve_model
    from .separator import Ensemble, Separator

    first = max(ensemble, 1)
    paths = [
        resolve_model(
            model,
            offline=options.get("offline", False),
            progress=download_progress,
            on_notice=on_notice,
            given_as="model" if k < first else "then",
        ).path
        for k, model in enumerate(models)
    ]
    settings = options.pop("settings", None)
    own = dict(params=params, settings=settings, on_notice=on_notice, **options)
    stages = [Ensemble(paths[:ensemble], **own) if ensemble > 1 else Separator(paths[0], **own)]
    later = replace(settings, primary_stem=None) if settings is not None else None
    options = {k: v for k, v in options.items() if not k.startswith("ensemble_")}
    for path in paths[first:]:
        stages.append(Separator(path, settings=later, on_notice=on_notice, **options))
    return stages[0] if len(stages) == 1 else Chain(*stages)
