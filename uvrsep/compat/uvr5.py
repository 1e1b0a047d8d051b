"""RVC's uvr5 classes on uvrsep: a drop-in for RVC, GPT-SoVITS and Chat-Haruhi's yuki_builder.

Code that separates with RVC's ``AudioPre`` / ``AudioPreDeEcho`` (RVC's
``infer/modules/uvr5/vr.py``, GPT-SoVITS' ``tools/uvr5/vr.py``) or with their 2023 names
``_audio_pre_`` / ``_audio_pre_new`` (yuki_builder's ``video_preprocessing/uvr5/infer_uvr5.py``)
switches by changing its import line::

    from uvrsep.compat.uvr5 import AudioPre, AudioPreDeEcho      # RVC, GPT-SoVITS
    from uvrsep.compat.uvr5 import _audio_pre_, _audio_pre_new   # yuki_builder

The constructor ``(agg, model_path, device, is_half, tta=False)`` loads the weight file once;
``_path_audio_`` keeps both original signatures, the meaning of each folder argument, the file
names ``instrument_<input file name>_<agg>.<format>`` / ``vocal_<input file name>_<agg>.<format>``,
the rule that a folder given as ``None`` gets no file, and the ``"No save root."`` answer when both
are ``None``. Outputs are always 16-bit, at the band config's rate (44.1 kHz), replaced if they
exist (as the original does).

Which stem goes where (``masked`` is what the net's mask keeps, ``residual`` the rest of the mix):

=====================  ===========================================  ==========================================
class                  masked stem                                  residual stem
=====================  ===========================================  ==========================================
``AudioPre``,          ``ins_root/instrument_...``; vocal-primary   ``vocal_root/vocal_...``; vocal-primary:
``_audio_pre_``        (``is_hp3``): ``vocal_root/vocal_...``       ``ins_root/instrument_...``
``AudioPreDeEcho``     ``ins_root/vocal_...`` (the dry signal)      ``vocal_root/instrument_...`` (echo/reverb)
``_audio_pre_new``     ``ins_root/instrument_...`` (the dry signal) ``vocal_root/vocal_...`` (echo/reverb)
=====================  ===========================================  ==========================================

The DeEcho classes' folder arguments are "reversed" (the original's comment says so): callers pass
``(file, save_root_ins, save_root_vocal)`` positionally, so the dry vocals land in the vocal folder.
``AudioPreDeEcho`` names them as RVC and GPT-SoVITS do since December 2023 (``vocal_``);
``_audio_pre_new`` keeps the 2023 names that yuki_builder's copy still writes (``instrument_``).

Deliberate differences from the original:

- **uvrsep's numbers.** Stems are what ``uvrsep separate --aggressiveness AGG`` writes with the
  same weight file at 16 bits: the input's full length (the original drops the last
  ``n mod 480`` samples, up to 10.9 ms); zero-filled synthesis buffers (the original's are
  uninitialised: noise or NaN on short clips); integer output clips at full scale (the
  original's ``(wav * 32768).astype(int16)`` wraps 1.0 to -32768); digital silence gives silence;
  post-processing without a quiet frame does not raise.
- **Long inputs stream**: files too long for the device's memory are separated and written in
  segments, in bounded memory (the original holds the whole file's arrays: docs/performance.md).
- **Vocal-primary weights.** ``is_hp3=True`` (as RVC and GPT-SoVITS pass it) swaps the names
  *and* the folders, so ``vocal_...`` is always in ``vocal_root`` (GPT-SoVITS' routing; RVC's own
  ``AudioPre`` swapped only the names, leaving HP3's ``vocal_`` file in ``ins_root``). Weights
  uvrsep knows to be vocal-primary (a file name with ``HP3``, or the registry) are routed so even
  without ``is_hp3``: RVC's retry after reformatting and yuki_builder never pass it, and the
  original then names HP3's vocals ``instrument_``.
- **Other formats** than wav/flac: a 16-bit wav is written to a hidden temporary folder beside
  the output and encoded by ffmpeg, run with an argument list (no shell; spaces, quotes and CJK
  in names work), atomically, with ffmpeg's default encoder for the extension (the original's
  ``-q:a 2`` follows the output name, where ffmpeg ignores it). No ``.wav`` is left beside the
  output (RVC writes ``<target>.wav`` and removes it after converting; yuki's copy keeps it and
  returns its path). A failed encode, or no ffmpeg, raises :class:`AudioWriteError` naming the
  file (the original silently keeps the wav).
- **Return value**: every class returns ``(vocal_path, instrument_path)``, the paths of the
  ``vocal_`` and ``instrument_`` files written (``None`` where none was), as yuki's copies do
  (RVC's returned ``None``, which its callers ignore). yuki's ``_audio_pre_new`` crashes on wav
  and flac whenever ``ins_root`` is given (its path is a tuple); this one does not.
- **is_half**: fp16 on CUDA only (network weights and windows; masks and everything else in
  fp32). On the CPU or MPS it is ignored with a note: RVC's fp16 on the CPU does not finish.
- **device**: a string (``"cpu"``, ``"cuda"``, ``"cuda:0"``, ``"mps"``) or a ``torch.device``;
  ``None`` is the CPU, as ``model.to(None)`` leaves it. Devices uvrsep cannot drive (DirectML's
  ``privateuseone``, Intel's ``xpu``) fall back to the CPU with a warning.
- **Weights**: the architecture and band config come from the file (uvrsep's registry, UVR's
  hash table, else 4band_v2 for HP nets and 4band_v3 for VR 5.1 nets with 672 bins, the
  original's fixed choices). For RVC's six files that is the original's setting; other VR files,
  which the original cannot load or separates with the wrong band config, work too.
- **Errors** are uvrsep's one-line exceptions (:class:`~uvrsep.errors.UvrsepError` subclasses:
  unreadable input, unwritable folder, ...), raised as the original raises, so the callers'
  ``try``/``except`` and retry logic see them; no output file is left half written.
- ``agg`` must lie in 0..100 (:class:`ConfigError` otherwise). VR 5.1 weights ignore it, as in the
  original, but the file names carry it.

Attributes: ``model_path``, ``device`` (as given), ``data`` (the original's settings dict: changes
to ``agg``, ``tta``, ``postprocess``, ``high_end_process`` and ``window_size`` apply from the next
call, as in the original), ``model`` (the loaded ``torch.nn.Module``; ``del pre.model`` releases
the network and everything uvrsep holds for it, after which this object cannot separate) and
``separator`` (the :class:`~uvrsep.Separator` behind it). The original's ``mp`` (its parsed band
config) is not provided: none of the three callers reads it; ``separator.layout`` describes the
band config.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from ..audio import encode_with_ffmpeg
from ..errors import AudioWriteError, ConfigError, UvrsepError
from ..separator import Separator
from ..writer import write_stems

log = logging.getLogger(__name__)

__all__ = ["AudioPre", "AudioPreDeEcho", "_audio_pre_", "_audio_pre_new"]

#: Formats written directly (as the original does); anything else is encoded by ffmpeg.
DIRECT_FORMATS = ("wav", "flac")
_DEVICE_TYPES = ("cpu", "cuda", "mps")
_HIGH_END = ("mirroring", "mirroring2")


def _device(device) -> str | torch.device:
    """What to hand :class:`Separator` for the caller's ``device``."""
    if device is None:  # the original's model.to(None) stays on the CPU
        return "cpu"
    if isinstance(device, str) and device == "auto":
        return device
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"unknown device {device!r} (use cpu, cuda, cuda:N or mps)") from None
    if kind in _DEVICE_TYPES:
        return device
    log.warning("uvrsep cannot run on device %s: using the CPU", device)
    return "cpu"


class _Uvr5:
    """What the four classes share: the model, the settings, separating and writing one file."""

    def __init__(self, agg, model_path, device, is_half, tta=False):
        self.model_path = model_path
        self.device = device
        self.is_half = is_half
        self.data = {
            "postprocess": False,
            "tta": tta,
            "window_size": 512,
            "agg": agg,
            "high_end_process": "mirroring",
        }
        if isinstance(agg, bool) or not isinstance(agg, (int, float)):
            raise ConfigError(f"agg must be a number from 0 to 100, got {agg!r}")
        self._separator: Separator | None = Separator(
            model_path,
            device=_device(device),
            aggressiveness=agg,
            tta=tta,
            precision="fp16" if is_half else "fp32",
        )
        for note in self._separator.notes:
            log.info("%s", note)

    @property
    def separator(self) -> Separator:
        """The :class:`~uvrsep.Separator` doing the work."""
        if self._separator is None:
            raise UvrsepError(
                f"the model of this {type(self).__name__} was deleted (del .model): create a new one to separate"
            )
        return self._separator

    @property
    def model(self) -> torch.nn.Module:
        """The loaded network (on ``device``; fp16 on CUDA with ``is_half``)."""
        if self._separator is None:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute 'model'")
        return self._separator.net

    @model.deleter
    def model(self) -> None:
        """``del pre.model`` (what the callers do to free memory) releases the network."""
        if self._separator is None:
            raise AttributeError("model")
        self._separator = None

    def _apply_data(self, sep: Separator) -> None:
        """Bring the separator in line with ``self.data`` (the original reads it on every call)."""
        data = self.data
        agg = data["agg"]
        if isinstance(agg, bool) or not isinstance(agg, (int, float)) or not 0 <= agg <= 100:
            raise ConfigError(f"agg must be a number from 0 to 100, got {agg!r}")
        window = data["window_size"]
        if not isinstance(window, int) or window <= 2 * sep.net.context:
            raise ConfigError(f"window_size must be an integer above {2 * sep.net.context}, got {window!r}")
        mode = str(data["high_end_process"])
        sep.configure(
            aggressiveness=agg,
            tta=bool(data["tta"]),
            postprocess=bool(data["postprocess"]),
            window_size=window,
            high_end=mode if mode in _HIGH_END else "none",  # the original mirrors for "mirroring*" only
        )

    def _run(self, music_file, masked: tuple, residual: tuple, fmt: str):
        """Separate ``music_file`` and write its stems.

        ``masked`` / ``residual``: ``(folder or None, file-name prefix)`` for the masked and the
        residual stem. Returns ``(vocal_path, instrument_path)`` (str or None), by prefix.
        """
        if masked[0] is None and residual[0] is None:
            return "No save root."
        sep = self.separator
        self._apply_data(sep)
        name = os.path.basename(music_file)
        fmt = str(fmt)
        finals: dict[str, Path] = {}
        for stem, (root, head) in ((sep.primary, masked), (sep.secondary, residual)):
            if root is None:
                continue
            if str(root) == "":
                raise AudioWriteError(f"{music_file}: the {head.rstrip('_')} output folder is an empty string")
            try:
                os.makedirs(root, exist_ok=True)
            except OSError as exc:
                raise AudioWriteError(f"{root}: cannot create the output folder ({exc.strerror or exc})") from None
            finals[stem] = Path(root) / f"{head}{name}_{self.data['agg']}.{fmt}"
        direct = fmt.lower() in DIRECT_FORMATS
        if not direct and shutil.which("ffmpeg") is None:  # before any work
            first = next(iter(finals.values()))
            raise AudioWriteError(f"{first}: writing .{fmt} needs ffmpeg, which is not installed (or use wav/flac)")

        batch = sep.separate_batch([music_file])
        try:
            _, stems = next(batch)
            if isinstance(stems, BaseException):
                raise stems
            if direct:
                write_stems(stems, finals, bit_depth="16", overwrite=True)
            else:
                folder = next(iter(finals.values())).parent
                with tempfile.TemporaryDirectory(prefix=".uvrsep-", dir=folder) as tmp:
                    wavs = {stem: Path(tmp) / f"{stem}.wav" for stem in finals}
                    write_stems(stems, wavs, bit_depth="16", overwrite=True)
                    for stem, target in finals.items():
                        encode_with_ffmpeg(wavs[stem], target, overwrite=True)
        finally:
            batch.close()
        for path in finals.values():
            log.info("%s: wrote %s", name, path)
        by_head = {
            head: str(finals[stem])
            for stem, (_, head) in ((sep.primary, masked), (sep.secondary, residual))
            if stem in finals
        }
        return by_head.get("vocal_"), by_head.get("instrument_")


class AudioPre(_Uvr5):
    """RVC's ``AudioPre`` for HP-family weights (``HP2_all_vocals``, ``HP3_all_vocals``,
    ``HP5_only_main_vocal``, UVR's ``*_HP-UVR``), on uvrsep. See the module docstring."""

    def _path_audio_(self, music_file, ins_root=None, vocal_root=None, format="flac", is_hp3=False):
        """Separate ``music_file``: the instrumental to ``ins_root`` as
        ``instrument_<file name>_<agg>.<format>``, the vocals to ``vocal_root`` as ``vocal_...``.

        ``is_hp3`` (or weights known to be vocal-primary) marks the masked stem as the vocals.
        Returns ``(vocal_path, instrument_path)``, or ``"No save root."`` when both folders are None.
        """
        vocal_masked = bool(is_hp3) or (self._separator is not None and self._separator.primary == "vocals")
        if vocal_masked:
            return self._run(music_file, (vocal_root, "vocal_"), (ins_root, "instrument_"), format)
        return self._run(music_file, (ins_root, "instrument_"), (vocal_root, "vocal_"), format)


class AudioPreDeEcho(_Uvr5):
    """RVC's ``AudioPreDeEcho`` for VR 5.1 weights (``VR-DeEchoNormal``, ``VR-DeEchoAggressive``,
    ``VR-DeEchoDeReverb``, UVR's De-Echo / DeReverb files), on uvrsep. See the module docstring."""

    #: File-name prefixes of the masked (dry) and the residual (echo / reverb) stem.
    _heads = ("vocal_", "instrument_")

    def _path_audio_(self, music_file, vocal_root=None, ins_root=None, format="flac", is_hp3=False):
        """Separate ``music_file``: the dry signal to ``ins_root``, the echo / reverb to
        ``vocal_root`` (the original's reversed folder names; ``is_hp3`` is accepted and
        ignored, as there). Returns ``(vocal_path, instrument_path)``, or ``"No save root."``."""
        dry, wet = self._heads
        return self._run(music_file, (ins_root, dry), (vocal_root, wet), format)


class _audio_pre_(AudioPre):
    """``AudioPre`` under its 2023 name (yuki_builder's ``infer_uvr5._audio_pre_``)."""


class _audio_pre_new(AudioPreDeEcho):
    """``AudioPreDeEcho`` under its 2023 name (yuki_builder's ``infer_uvr5._audio_pre_new``),
    with that code's file names: the dry signal is ``instrument_...``, the echo ``vocal_...``."""

    _heads = ("instrument_", "vocal_")
