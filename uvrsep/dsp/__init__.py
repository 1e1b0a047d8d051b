"""The DSP steps of the pipeline in torch, on whatever device the tensors are on.

:mod:`uvrsep.bands` and :mod:`uvrsep.segments` run these (on the network's device when it is
CUDA, else on the CPU). Each reproduces the original's step (librosa 0.11 / resampy 0.4.3 /
scipy) to float rounding — resampling and STFT / iSTFT at ≥ 100 dB SDR for every rate pair and
FFT size the shipped band configs use (``tests/test_dsp.py``, against ``tests/oracle.py``) — in
the original's dtypes (complex64 analysis, complex128 / float64 synthesis):

- :mod:`.resampling` — the resamplers as ``librosa.resample`` dispatches them: resampy's
  ``kaiser_fast`` / ``kaiser_best`` (:mod:`.resampy_filters`, filter tables computed here) and
  scipy's ``resample_poly`` (``polyphase``) on one matrix-product engine (:mod:`.polyphase`);
  scipy's FFT resampling with ``torch.fft``; ``convolve_valid`` for the segmented synthesis'
  periodic kernel. libsamplerate (``sinc_*``: the 2-/3-band layouts' first synthesis step and
  UVR's ``sinc_fastest`` between bands) and soxr stay on the CPU, called as librosa calls them.
- :mod:`.spectrum` — STFT / iSTFT (Hann, centred, constant padding, window-sum normalisation).
- :mod:`.bands` — channel transforms, band STFTs, UVR's row filters and each band's inverse,
  built block by block of frames.

The polyphase matrix products must not run in TF32 (its 10-bit mantissa would cap the
resampling near 60 dB): TF32 is only ever on inside a network stage
(:func:`uvrsep.device.network_scope`).

On the CPU the loops work in cache-sized blocks with one intra-op thread and large blocks with
more (:mod:`._blocks`).
"""

from __future__ import annotations

from .bands import band_part, band_stft
from .polyphase import PolyphaseFilter
from .resampling import convolve_valid, fft_resample, resample
from .spectrum import istft, stft

__all__ = ["PolyphaseFilter", "band_part", "band_stft", "convolve_valid", "fft_resample", "istft", "resample", "stft"]
