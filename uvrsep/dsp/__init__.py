"""The DSP steps of the pipeline in torch, on whatever device the tensors are on.

:mod:`uvrsep.bands` and :mod:`uvrsep.segments` run these (on the network's device when it is
CUDA, else on the CPU). Each reproduces its reference (:mod:`.reference`: librosa 0.11 /
resampy 0.4.3 / scipy, the previous implementation) to float rounding — resampling and
STFT / iSTFT at ≥ 100 dB SDR for every rate pair and FFT size the shipped band configs use
(``tests/test_dsp.py``) — in the reference's dtypes (complex64 analysis, complex128 / float64
synthesis):

- :mod:`.resampling` — resampy ``kaiser_fast`` / ``kaiser_best``, scipy ``resample_poly``
  (``polyphase``) as matrix products over strided views with taps cached per rate pair; scipy's
  FFT resampling with ``torch.fft``; ``convolve_valid`` for the segmented synthesis' periodic
  kernel. libsamplerate (``sinc_*``: the 2-/3-band layouts' first synthesis step and UVR's
  ``sinc_fastest`` between bands) and soxr stay on the CPU, through librosa.
- :mod:`.spectrum` — STFT / iSTFT (Hann, centred, constant padding, window-sum normalisation).
- :mod:`.bands` — channel transforms, band STFTs, the synthesis' low/high-pass rows and each
  band's inverse, built block by block of frames.

The polyphase matrix products must not run in TF32 (its 10-bit mantissa would cap the
resampling near 60 dB): :class:`uvrsep.Separator` keeps TF32 off outside the network.

On the CPU the loops work in cache-sized blocks with one intra-op thread and large blocks with
more (:mod:`._blocks`).
"""

from __future__ import annotations

from .bands import band_part, band_stft
from .resampling import PolyphaseFilter, convolve_valid, fft_resample, resample
from .spectrum import istft, stft

__all__ = ["band_part", "band_stft", "PolyphaseFilter", "convolve_valid", "fft_resample", "resample", "istft", "stft"]
