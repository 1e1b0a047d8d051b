"""Ensembles: several models' stems of the same input combined into one, label by label.

The 11 algorithms are python-audio-separator 0.47.1's (``Ensembler``), with its names and its
numbers. ``x_1 … x_N`` are the members' waveforms of one stem, float32 ``[C, T]`` each (C
channels, 2 for uvrsep's stems), in the members' order; ``w_1 … w_N`` their weights.

Wave algorithms, sample by sample (each output sample depends on that sample alone):

- ``avg_wave`` (default): the weighted mean ``Σ w_i·x_i / Σ w_i``.
- ``median_wave``: the median of the N values (an even N: the mean of the two middle ones).
- ``min_wave`` / ``max_wave``: the value of smallest / largest magnitude ``|x_i|``; on a tie,
  the first member's.

Spectral algorithms: each member's channels go through an STFT (2048-point periodic Hann
window, hop 1024, 1024 zeros padded at each end: librosa's ``stft`` with ``center=True``,
``1 + T // 1024`` frames); the N complex spectrograms ``S_i`` are combined bin by bin; the
result goes back to a waveform by overlap-add, divided by the sum of the squared windows that
cover each sample (librosa's ``istft``), with the pad trimmed:

- ``avg_fft``: ``Σ w_i·S_i / Σ w_i``.
- ``median_fft``: the median of the real parts plus ``j·`` the median of the imaginary parts.
- ``min_fft`` / ``max_fft``: the bin of smallest / largest ``|S_i|``; on a tie, the first's.
- ``uvr_max_spec`` / ``uvr_min_spec``: UVR's Max Spec / Min Spec: the members are folded in
  order, each bin replaced by member i's wherever ``|S_i| ≥`` (Min: ``≤``) the bin so far; on a
  tie, the later member's.

And one that chooses whole channels:

- ``ensemble_wav``: for each channel c, the member whose channel c has the smallest mean
  magnitude ``mean_t |x_i[c, t]|`` over the whole signal (first on a tie), all of that channel.
  (audio-separator's ``spec_utils.ensemble_wav`` splits the ``[C, T]`` array into 240 parts
  with ``np.array_split``, which splits the first axis, the channels: each channel is one part,
  the other 238 parts are empty; so the "least noisy part" is a whole channel.)

Weights (``ensemble_weights``): one number per member, in the members' order, 0 or more, not
all 0; default all equal. Only ``avg_wave`` and ``avg_fft`` use them, as shares of the mean
(only their ratios count: ``[2, 1]`` is ``[1, 0.5]``; a 0 leaves that member out). The other
algorithms ignore them, as audio-separator does; unequal weights given to them give a note.

Lengths: members of unequal length are padded with zeros at the end to the longest, as
audio-separator does; the result has the longest member's length. One member is returned as it
is (float32), whatever the algorithm, as audio-separator returns it.

Long inputs: :class:`EnsembleStream` takes the members' stems block by block (``{stem:
[C, t]}`` per member, as :class:`uvrsep.stems.StreamedStems` yields them) and gives back the
combined blocks, equal to :func:`ensemble` of the whole signals (float rounding aside) for any
block lengths. It holds the members' samples not yet combined plus, for the spectral
algorithms, one frame of context (2048 samples per member and channel) and one hop of
overlap-add: memory O(block + context), not O(signal). ``ensemble_wav`` cannot emit anything
before the end (its choice depends on the whole signal); it keeps the members' stems in memory
up to ``spool_bytes`` each (:data:`SPOOL_BYTES`), beyond that in a temporary file, and emits
them at the end. :func:`ensemble` is one block through the same code.

Modules: :mod:`.rules` (names, weights, stems matched by label; no torch, so the CLI checks
them before anything heavy is imported), :mod:`.algorithms` (the combination of aligned blocks
or frames), :mod:`.stream` (the members' queues, STFT framing and overlap-add, the spool, the
entry points), :mod:`.members` (what ``Separator([A, B, ...])`` gives,
:class:`uvrsep.separator.Ensemble`: the members' separations combined for files, batches, long
inputs). Everything but :mod:`.rules` is
imported on first use.

Differences from audio-separator 0.47.1, beyond float rounding (it computes in float64 in
places, uvrsep in float32 / complex64, on the data's device):

- ``uvr_max_spec`` / ``uvr_min_spec`` give all T samples; audio-separator's inverse STFT is
  called without a length there, so its output stops at ``1024·⌊T/1024⌋`` samples (the UVR5
  GUI pads that back with zeros). The samples both have are equal.
- Bad weights are refused with a :class:`~uvrsep.errors.ConfigError` (a wrong count, a NaN or
  infinite value, a negative one, all 0): audio-separator falls back to equal weights with a
  warning (and takes negative weights whose sum is not 0).
- NaN samples are not given any meaning here (audio-separator's argmin/argmax pick a NaN).
"""

from ..lazy import lazy_names
from .rules import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    SPECTRAL_ALGORITHMS,
    WAVE_ALGORITHMS,
    WEIGHTED,
    check_algorithm,
    check_ensemble,
    check_weights,
    ensemble_labels,
    parse_weights,
    weights_note,
)

#: Names imported on first use (they bring in torch, which the CLI's checks must not pay).
_LAZY = {
    "combine_spectra": ".algorithms",
    "combine_waves": ".algorithms",
    "EMIT_SAMPLES": ".stream",
    "HOP": ".stream",
    "N_FFT": ".stream",
    "SPOOL_BYTES": ".stream",
    "EnsembleStream": ".stream",
    "ensemble": ".stream",
    "ensemble_blocks": ".stream",
    "EnsembleMixin": ".members",
}

__getattr__, __dir__ = lazy_names(__name__, globals(), _LAZY)


__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "EMIT_SAMPLES",
    "HOP",
    "N_FFT",
    "SPECTRAL_ALGORITHMS",
    "SPOOL_BYTES",
    "WAVE_ALGORITHMS",
    "WEIGHTED",
    "EnsembleMixin",
    "EnsembleStream",
    "check_algorithm",
    "check_ensemble",
    "check_weights",
    "combine_spectra",
    "combine_waves",
    "ensemble",
    "ensemble_blocks",
    "ensemble_labels",
    "parse_weights",
    "weights_note",
]
