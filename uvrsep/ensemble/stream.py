"""The ensemble, block by block: the members' queues, the STFT framing and overlap-add of the
spectral algorithms, ``ensemble_wav``'s spool, and the entry points (:func:`ensemble` for whole
signals, :class:`EnsembleStream` and :func:`ensemble_blocks` for streams).

A whole signal is one block: every path goes through :class:`EnsembleStream`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from ..errors import ConfigError
from .algorithms import combine_spectra, combine_waves
from .rules import DEFAULT_ALGORITHM, SPECTRAL_ALGORITHMS, WAVE_ALGORITHMS, check_algorithm, check_weights, weights_note

#: STFT of the spectral algorithms (audio-separator's, librosa's defaults): window and FFT
#: size, hop. The overlap-add below relies on ``N_FFT == 2 · HOP``.
N_FFT = 2048
HOP = 1024
#: ``ensemble_wav`` keeps up to this many bytes of each member's stem in memory (default of
#: ``spool_bytes``), then spills the rest to a temporary file.
SPOOL_BYTES = 32 << 20
#: ``ensemble_wav`` emits blocks of this many samples, or of the largest block it was given.
EMIT_SAMPLES = 1 << 16

Wave = torch.Tensor | np.ndarray


def ensemble(
    waves: Sequence[Wave], algorithm: str = DEFAULT_ALGORITHM, weights: Iterable[float] | None = None
) -> torch.Tensor:
    """The members' waveforms of one stem, each ``[C, T_i]`` (tensors or arrays), combined:
    float32 ``[C, max T_i]`` on the first member's device. One block of :class:`EnsembleStream`."""
    if len(waves) == 0:
        raise ConfigError("an ensemble needs at least one model's stems")
    stream = EnsembleStream(len(waves), algorithm, weights)
    parts = [stream.push([{"stem": w} for w in waves])["stem"]]
    parts += [block["stem"] for block in stream.finish()]
    return torch.cat(parts, dim=1)


def ensemble_blocks(
    members: Sequence[Iterable[Mapping[str, Wave]]],
    algorithm: str = DEFAULT_ALGORITHM,
    weights: Iterable[float] | None = None,
    *,
    spool_bytes: int = SPOOL_BYTES,
) -> Iterator[dict[str, torch.Tensor]]:
    """Each member's stream of ``{stem: [C, t]}`` blocks (e.g. a
    :class:`~uvrsep.stems.StreamedStems`), combined: yields ``{stem: float32 [C, t']}`` blocks
    (none empty) whose concatenation is :func:`ensemble` of the whole stems (``spool_bytes``:
    see :class:`EnsembleStream`).

    The members' streams are read as the combination needs them: each time, one block of every
    member that has given the fewest samples so far. Members whose blocks differ in length
    (models of other window sizes or band configs segment a long input differently) thus wait
    for each other, and no member's samples pile up: about one block of each is held.
    """
    stream = EnsembleStream(len(members), algorithm, weights, spool_bytes=spool_bytes)
    iterators = [iter(m) for m in members]
    given = [0] * len(members)
    live = set(range(len(members)))
    while live:
        behind = min(given[i] for i in live)
        blocks: list[Mapping[str, Wave]] = []
        for i, it in enumerate(iterators):
            block = next(it, None) if i in live and given[i] == behind else {}
            if block is None:
                live.discard(i)
                block = {}
            given[i] += _block_length(block)
            blocks.append(block)
        out = stream.push(blocks)
        if any(w.shape[1] for w in out.values()):
            yield out
    yield from stream.finish()


def _block_length(block: Mapping[str, Wave]) -> int:
    """Samples in a member's block (its stems share one length; 0 for ``{}``)."""
    return int(next(iter(block.values())).shape[1]) if block else 0


class EnsembleStream:
    """Combines ``n_members`` members' stems block by block.

    :meth:`push` takes one block of every member, ``{stem: [C, t_i]}`` each (tensors or arrays;
    every member has the same stem names, a member's stems in one block the same length; a
    member whose stream has ended gives ``{}``), and returns the combined samples that are
    final, ``{stem: float32 [C, t']}`` (``t'`` may be 0), on the first block's device.
    :meth:`finish` yields the rest. Members of unequal total length are padded with zeros to
    the longest (audio-separator's rule). Samples of a member that runs ahead of the others
    wait for them: feed the members in step to keep memory small.

    Args:
        n_members: the number of models.
        algorithm: one of :data:`~uvrsep.ensemble.ALGORITHMS`.
        weights: one per member (see :func:`~uvrsep.ensemble.check_weights`); default equal.
        spool_bytes: ``ensemble_wav`` keeps up to this much of each member's stem in memory,
            the rest in a temporary file.

    Attributes: ``algorithm``, ``weights`` (checked), ``notes`` (one-line notes for the user).
    """

    def __init__(
        self,
        n_members: int,
        algorithm: str = DEFAULT_ALGORITHM,
        weights: Iterable[float] | None = None,
        *,
        spool_bytes: int = SPOOL_BYTES,
    ):
        if n_members < 1:
            raise ConfigError("an ensemble needs at least one model's stems")
        self.algorithm = check_algorithm(algorithm)
        self.weights = check_weights(weights, n_members)
        self.n_members = n_members
        self.spool_bytes = spool_bytes
        note = weights_note(self.algorithm, self.weights if weights is not None else None)
        self.notes: list[str] = [note] if note else []
        self._stems: dict[str, _StemEnsemble] | None = None
        self._finished = False

    @property
    def held_bytes(self) -> int:
        """Bytes of audio held in memory now (queues, STFT context, overlap, spool)."""
        return sum(s.held_bytes for s in (self._stems or {}).values())

    def push(self, blocks: Sequence[Mapping[str, Wave]]) -> dict[str, torch.Tensor]:
        """One block of every member (see the class); returns the combined samples now final."""
        if self._finished:
            raise RuntimeError("EnsembleStream.push after finish")
        if len(blocks) != self.n_members:
            raise ConfigError(f"an ensemble of {self.n_members} models got stems of {len(blocks)}")
        for i, block in enumerate(blocks):
            if not isinstance(block, Mapping):
                raise ConfigError(
                    f"model {i + 1} of the ensemble: expected {{stem: [channels, samples]}}, got {type(block).__name__}"
                )
        if self._stems is None:
            first = next((b for b in blocks if b), None)
            if first is None:
                return {}
            device = _as_float32(next(iter(first.values())), None).device
            self._stems = {name: _StemEnsemble(self, name, device) for name in first}
        tensors = [self._member_block(i, b) for i, b in enumerate(blocks)]
        return {name: comb.push([t.get(name) for t in tensors]) for name, comb in self._stems.items()}

    def finish(self) -> Iterator[dict[str, torch.Tensor]]:
        """After the last push: the remaining combined blocks, ``{stem: float32 [C, t]}``."""
        self._finished = True
        tails = {name: comb.finish() for name, comb in (self._stems or {}).items()}
        return _zip_stems(tails)

    def _member_block(self, i: int, block: Mapping[str, Wave]) -> dict[str, torch.Tensor]:
        assert self._stems is not None
        if block and set(block) != set(self._stems):
            raise ConfigError(
                f"model {i + 1} of the ensemble has stems {', '.join(block)}, "
                f"the others {', '.join(self._stems)}: stems are matched by name"
            )
        out = {name: _as_float32(w, self._stems[name].device) for name, w in block.items()}
        if len({w.shape[1] for w in out.values()}) > 1:
            raise ConfigError(f"model {i + 1} of the ensemble: its stems in one block differ in length")
        return out


def _zip_stems(tails: dict[str, Iterator[torch.Tensor]]) -> Iterator[dict[str, torch.Tensor]]:
    for parts in zip(*tails.values(), strict=True):
        block = dict(zip(tails, parts, strict=True))
        if any(w.shape[1] for w in block.values()):
            yield block


def _as_float32(wave: Wave, device: torch.device | None) -> torch.Tensor:
    """``wave`` as a float32 tensor ``[C, t]`` on ``device`` (its own if None)."""
    t = torch.as_tensor(wave)
    if t.ndim != 2 or t.is_complex():
        raise ConfigError(f"ensemble stems must be real [channels, samples], got shape {tuple(t.shape)} {t.dtype}")
    return t.to(device=device if device is not None else t.device, dtype=torch.float32)


class _StemEnsemble:
    """One stem's ensemble: the members' queues, aligned, handed to the algorithm's combiner."""

    def __init__(self, owner: EnsembleStream, name: str, device: torch.device):
        self.name, self.device = name, device
        self.queues: list[list[torch.Tensor]] = [[] for _ in range(owner.n_members)]
        self.lengths = [0] * owner.n_members
        self.channels: int | None = None
        self.combiner = _combiner(owner, device)

    @property
    def held_bytes(self) -> int:
        return sum(t.numel() * 4 for q in self.queues for t in q) + self.combiner.held_bytes

    def push(self, waves: list[torch.Tensor | None]) -> torch.Tensor:
        for i, w in enumerate(waves):
            if w is None or w.shape[1] == 0:
                continue
            if self.channels is None:
                self.channels = w.shape[0]
            if w.shape[0] != self.channels:
                raise ConfigError(
                    f"stem {self.name}: model {i + 1} of the ensemble has {w.shape[0]} channels, "
                    f"another {self.channels}; all must have the same number"
                )
            self.queues[i].append(w)
            self.lengths[i] += w.shape[1]
        n = min(self.lengths)
        if n == 0:
            return torch.zeros(self.channels or 0, 0, device=self.device)
        return self.combiner.push(self._take(n))

    def finish(self) -> Iterator[torch.Tensor]:
        n = max(self.lengths)
        return self.combiner.finish(self._take(n) if n else None)

    def _take(self, n: int) -> list[torch.Tensor]:
        """The next ``n`` samples of every member, zero-padded where a queue is shorter."""
        out = []
        for i, q in enumerate(self.queues):
            have = (
                q[0]
                if len(q) == 1
                else torch.cat(q, dim=1)
                if q
                else torch.zeros(self.channels or 0, 0, device=self.device)
            )
            if have.shape[1] < n:
                have = torch.cat([have, have.new_zeros(have.shape[0], n - have.shape[1])], dim=1)
            out.append(have[:, :n])
            rest = have[:, n:]
            self.queues[i] = [rest] if rest.shape[1] else []
            self.lengths[i] = max(self.lengths[i] - n, 0)
        return out


def _combiner(owner: EnsembleStream, device: torch.device):
    algorithm, weights = owner.algorithm, owner.weights
    if len(weights) == 1:
        return _Waves(lambda xs: xs[0])  # one model: its stem as it is
    if algorithm in WAVE_ALGORITHMS:
        return _Waves(lambda xs: combine_waves(algorithm, xs, weights))
    if algorithm in SPECTRAL_ALGORITHMS:
        return _Spectral(lambda specs: combine_spectra(algorithm, specs, weights), device)
    return _ChannelChoice(owner.spool_bytes)


class _Waves:
    """Sample-wise: each aligned block is combined at once; nothing is held."""

    held_bytes = 0

    def __init__(self, combine: Callable[[list[torch.Tensor]], torch.Tensor]):
        self.combine = combine

    def push(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.combine(xs)

    def finish(self, xs: list[torch.Tensor] | None) -> Iterator[torch.Tensor]:
        return iter([self.combine(xs)] if xs is not None else [])


class _Spectral:
    """STFT → combine frames → overlap-add, streamed, framed as librosa's ``center=True``.

    In padded coordinates (the signal starts at ``HOP``), frame k covers ``[k·HOP, k·HOP +
    N_FFT)``. Each member's buffer starts at the next frame to compute; after frames ``… K`` the
    samples before ``(K + 1)·HOP`` are final (no later frame reaches them) and are emitted, and
    frame K's second half waits in ``carry``. The first ``HOP`` padded samples are dropped; at
    the end ``HOP`` zeros are appended, the last frames computed, and the samples past the last
    frame's first half are divided by that frame's squared window alone (as librosa's
    ``istft(length=T)`` does). Holds ``< N_FFT`` samples per member and channel between pushes.
    """

    def __init__(self, combine: Callable[[list[torch.Tensor]], torch.Tensor], device: torch.device):
        self.combine = combine
        self.window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float32, device=device)
        square = self.window**2
        self.norm = square[:HOP] + square[HOP:]  # two frames cover every sample but the tail
        self.tail_norm = square[HOP:]
        self.bufs: list[torch.Tensor] | None = None
        self.carry: torch.Tensor | None = None
        self.skip = HOP  # the left pad's samples, never emitted
        self.received = 0
        self.emitted = 0

    @property
    def held_bytes(self) -> int:
        held = sum(b.numel() * 4 for b in self.bufs or ())
        return held + (self.carry.numel() * 4 if self.carry is not None else 0)

    def push(self, xs: list[torch.Tensor]) -> torch.Tensor:
        if self.bufs is None:
            self.bufs = [x.new_zeros(x.shape[0], HOP) for x in xs]
        self.received += xs[0].shape[1]
        self.bufs = [torch.cat([b, x], dim=1) for b, x in zip(self.bufs, xs, strict=True)]
        return self._frames()

    def finish(self, xs: list[torch.Tensor] | None) -> Iterator[torch.Tensor]:
        if xs is not None:
            head = self.push(xs)
        elif self.bufs is None:
            return iter([])
        else:
            head = self.bufs[0].new_zeros(self.bufs[0].shape[0], 0)
        assert self.bufs is not None  # push() started them
        self.bufs = [torch.cat([b, b.new_zeros(b.shape[0], HOP)], dim=1) for b in self.bufs]
        body = self._frames()
        assert self.carry is not None
        rest = self.received - self.emitted  # T mod HOP samples: frame K's second half alone
        tail = self.carry[:, :rest] / self.tail_norm[:rest]
        self.emitted += rest
        self.bufs, self.carry = None, None
        return iter([torch.cat([head, body, tail], dim=1)])

    def _frames(self) -> torch.Tensor:
        """Computes every complete frame of the buffers; returns the samples now final."""
        assert self.bufs is not None
        channels, length = self.bufs[0].shape
        n = (length - N_FFT) // HOP + 1 if length >= N_FFT else 0
        if n <= 0:
            return self.bufs[0].new_zeros(channels, 0)
        specs = [
            torch.stft(b[:, : (n + 1) * HOP], N_FFT, HOP, window=self.window, center=False, return_complex=True)
            for b in self.bufs
        ]
        self.bufs = [b[:, n * HOP :] for b in self.bufs]
        frames = torch.fft.irfft(self.combine(specs), n=N_FFT, dim=1) * self.window[:, None]
        frames = frames.reshape(channels, 2, HOP, n).transpose(2, 3)  # [C, half, frame, sample]
        ola = frames.new_zeros(channels, n + 1, HOP)
        ola[:, :n] += frames[:, 0]
        ola[:, 1:] += frames[:, 1]
        if self.carry is not None:
            ola[:, 0] += self.carry
        self.carry = ola[:, n].clone()
        out = (ola[:, :n] / self.norm).reshape(channels, n * HOP)
        if self.skip:
            drop = min(self.skip, out.shape[1])
            out, self.skip = out[:, drop:], self.skip - drop
        self.emitted += out.shape[1]
        return out


class _ChannelChoice:
    """``ensemble_wav``: each channel from the member of smallest mean magnitude there. Nothing
    is final before the end; the members' samples are spooled (in memory up to ``limit`` bytes
    each, then in a temporary file) and read back in blocks at the end."""

    def __init__(self, limit: int):
        self.limit = limit
        self.spools: list[tempfile.SpooledTemporaryFile] | None = None
        self.sums: torch.Tensor | None = None  # float64 [N, C]: Σ_t |x_i[c, t]|
        self.written = 0
        self.block = EMIT_SAMPLES
        self.device: torch.device | None = None

    @property
    def held_bytes(self) -> int:
        if self.spools is None or self.sums is None:
            return 0
        per_member = self.written * 4 * self.sums.shape[1]
        return per_member * len(self.spools) if per_member <= self.limit else 0  # beyond: on disk

    def push(self, xs: list[torch.Tensor]) -> torch.Tensor:
        if self.spools is None:
            self.spools = [tempfile.SpooledTemporaryFile(max_size=self.limit) for _ in xs]  # noqa: SIM115  (closed by close())
            self.sums = torch.zeros(len(xs), xs[0].shape[0], dtype=torch.float64)
            self.device = xs[0].device
        spools, sums = self.spools, self.sums
        assert sums is not None
        for i, x in enumerate(xs):
            sums[i] += x.abs().sum(dim=1, dtype=torch.float64).cpu()
            spools[i].write(x.T.contiguous().cpu().numpy().tobytes())  # rows [t, C]
        self.written += xs[0].shape[1]
        self.block = max(self.block, xs[0].shape[1])
        return xs[0].new_zeros(xs[0].shape[0], 0)

    def finish(self, xs: list[torch.Tensor] | None) -> Iterator[torch.Tensor]:
        if xs is not None:
            self.push(xs)
        return self._read_back() if self.spools is not None else iter([])

    def _read_back(self) -> Iterator[torch.Tensor]:
        spools, sums = self.spools, self.sums
        assert spools is not None and sums is not None  # finish() checked
        try:
            chosen = sums.argmin(dim=0).tolist()  # per channel; the first of equal sums
            width = sums.shape[1] * 4
            for start in range(0, self.written, self.block):
                stop = min(start + self.block, self.written)
                rows = {}
                for m in set(chosen):
                    spools[m].seek(start * width)
                    raw = spools[m].read((stop - start) * width)
                    rows[m] = np.frombuffer(raw, dtype=np.float32).reshape(stop - start, -1)
                yield torch.from_numpy(np.stack([rows[m][:, c] for c, m in enumerate(chosen)])).to(self.device)
        finally:
            for spool in spools:
                spool.close()
            self.spools = None
