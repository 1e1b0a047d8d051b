"""UVR's VR 5.1 network (``nets_new.CascadedNet``): U-Nets with an LSTM decoder branch.

Used by the DeEcho / DeReverb / DeNoise / BVE models. One parametrised class: ``nout`` 16, 32,
48 or 64, ``nout_lstm`` (128 in every official file) and ``bins``, which the LSTM input size pins.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Conv2DBNActiv, DenseASPPModule, LSTMModule, StridedEncoder, UpDecoder


@dataclass(frozen=True)
class LstmNetConfig:
    """Hyper-parameters of :class:`CascadedNet`. ``bins / 2`` must be divisible by 16."""

    bins: int = 672
    nout: int = 32
    nout_lstm: int = 128
    context: int = 64


class BaseNet(nn.Module):
    """Five-level U-Net with ASPP and an LSTM branch before the last decoder.

    ``[B, nin, F, T] → [B, nout, F, T]``; ``nin_lstm`` must equal ``F / 2``.
    """

    def __init__(self, nin: int, nout: int, nin_lstm: int, nout_lstm: int, dilations=((4, 2), (8, 4), (12, 6))):
        super().__init__()
        self.enc1 = Conv2DBNActiv(nin, nout, 3, 1, 1)
        self.enc2 = StridedEncoder(nout, nout * 2, 3, 2, 1)
        self.enc3 = StridedEncoder(nout * 2, nout * 4, 3, 2, 1)
        self.enc4 = StridedEncoder(nout * 4, nout * 6, 3, 2, 1)
        self.enc5 = StridedEncoder(nout * 6, nout * 8, 3, 2, 1)
        self.aspp = DenseASPPModule(nout * 8, nout * 8, dilations, dropout=True)
        self.dec4 = UpDecoder(nout * (6 + 8), nout * 6, 3, 1, 1)
        self.dec3 = UpDecoder(nout * (4 + 6), nout * 4, 3, 1, 1)
        self.dec2 = UpDecoder(nout * (2 + 4), nout * 2, 3, 1, 1)
        self.lstm_dec2 = LSTMModule(nout * 2, nin_lstm, nout_lstm)
        self.dec1 = UpDecoder(nout * (1 + 2) + 1, nout * 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        e4 = self.enc4(e3)
        e5 = self.enc5(e4)
        h = self.aspp(e5)
        h = self.dec4(h, e4)
        h = self.dec3(h, e3)
        h = self.dec2(h, e2)
        h = torch.cat([h, self.lstm_dec2(h)], dim=1)
        return self.dec1(h, e1)


class CascadedNet(nn.Module):
    """Three stages: half-band nets twice, then a full-band net on everything.

    Input: normalised magnitudes ``[B, 2, bins + 1, T]``. :meth:`forward` returns the mask
    ``[B, 2, bins + 1, T]``. Aggressiveness does not apply (RVC's ``predict`` ignores it).
    """

    uses_aggressiveness = False

    def __init__(self, config: LstmNetConfig = LstmNetConfig()):
        super().__init__()
        if config.bins % 32:
            raise ValueError(f"bins={config.bins}: bins / 2 must be divisible by 16")
        self.config = config
        nout, nout_lstm = config.nout, config.nout_lstm
        nin_lstm = config.bins // 2
        self.stg1_low_band_net = nn.Sequential(
            BaseNet(2, nout // 2, nin_lstm // 2, nout_lstm),
            Conv2DBNActiv(nout // 2, nout // 4, 1, 1, 0),
        )
        self.stg1_high_band_net = BaseNet(2, nout // 4, nin_lstm // 2, nout_lstm // 2)
        self.stg2_low_band_net = nn.Sequential(
            BaseNet(nout // 4 + 2, nout, nin_lstm // 2, nout_lstm),
            Conv2DBNActiv(nout, nout // 2, 1, 1, 0),
        )
        self.stg2_high_band_net = BaseNet(nout // 4 + 2, nout // 2, nin_lstm // 2, nout_lstm // 2)
        self.stg3_full_band_net = BaseNet(3 * nout // 4 + 2, nout, nin_lstm, nout_lstm)
        self.out = nn.Conv2d(nout, 2, 1, bias=False)
        self.aux_out = nn.Conv2d(3 * nout // 4, 2, 1, bias=False)

    @property
    def context(self) -> int:
        """Frames cropped from each side of a window's output."""
        return self.config.context

    @property
    def frame_multiple(self) -> int:
        """Window lengths (frames) the net takes are multiples of this: each level halves them
        and the decoder crops the skips to twice the coarser length."""
        return 16  # four strided encoders

    def _pad_rows(self, mask: torch.Tensor) -> torch.Tensor:
        return F.pad(mask, (0, 0, 0, self.config.bins + 1 - mask.shape[2]), mode="replicate")

    def _stages(self, x: torch.Tensor, keep_aux: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the cascade on ``x[:, :, :bins]``: final features and the stacked stage outputs
        (``None`` unless ``keep_aux``: the last stage then runs with no earlier output alive)."""
        x = x[:, :, : self.config.bins]
        half = x.shape[2] // 2
        low1 = self.stg1_low_band_net(x[:, :, :half])
        high1 = self.stg1_high_band_net(x[:, :, half:])
        low2 = self.stg2_low_band_net(torch.cat([x[:, :, :half], low1], dim=1))
        high2 = self.stg2_high_band_net(torch.cat([x[:, :, half:], high1], dim=1))
        aux1, aux2 = torch.cat([low1, high1], dim=2), torch.cat([low2, high2], dim=2)
        del low1, high1, low2, high2
        h = torch.cat([x, aux1, aux2], dim=1)
        aux = torch.cat([aux1, aux2], dim=1) if keep_aux else None
        del aux1, aux2
        return self.stg3_full_band_net(h), aux

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self._stages(x, keep_aux=False)
        return self._pad_rows(torch.sigmoid(self.out(h)))

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Final mask and the auxiliary mask, each ``[B, 2, bins + 1, T]`` (for training)."""
        h, aux = self._stages(x, keep_aux=True)
        return self._pad_rows(torch.sigmoid(self.out(h))), self._pad_rows(torch.sigmoid(self.aux_out(aux)))
