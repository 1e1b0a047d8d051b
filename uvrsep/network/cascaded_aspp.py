"""The cascaded ASPP U-Net of UVR's VR architecture (v5 "HP" family), one parametrised class.

``channels`` selects the checkpoint family: 16 (``nets.py``, 31191 KB), 32 (``nets_123812KB`` =
``nets_61968KB``: HP, HP2, HP3, HP5, 1–6_HP-UVR) or 64 (``nets_537238KB``). ``dilations`` of
length 5 gives the 7-branch ASPP of the 33966 / 537238 nets; ``levels=5`` with 4 dilations the
129605 net.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ASPPModule, Conv2DBNActiv, Decoder, Encoder


@dataclass(frozen=True)
class AsppNetConfig:
    """Hyper-parameters of :class:`CascadedASPPNet`.

    ``bins`` is the number of frequency rows the net sees (the band layout's ``bins``);
    ``bins / 2`` must be divisible by ``2 ** levels``. ``context`` is the frames cropped from
    each side of a window's output (UVR's ``offset``). ``levels`` is 4, or 5 for UVR's 129605
    net (which also has a 6-branch ASPP: ``dilations=(4, 8, 16, 16)``).
    """

    bins: int = 672
    channels: int = 32
    dilations: tuple[int, ...] = (4, 8, 16)
    context: int = 128
    levels: int = 4


class BaseASPPNet(nn.Module):
    """Four (or five) encoders, ASPP, as many decoders. ``[B, nin, F, T] → [B, ch, F, T]``."""

    def __init__(self, nin: int, ch: int, dilations: tuple[int, ...] = (4, 8, 16), levels: int = 4):
        super().__init__()
        self.levels = levels
        self.enc1 = Encoder(nin, ch, 3, 2, 1)
        self.enc2 = Encoder(ch, ch * 2, 3, 2, 1)
        self.enc3 = Encoder(ch * 2, ch * 4, 3, 2, 1)
        self.enc4 = Encoder(ch * 4, ch * 8, 3, 2, 1)
        if levels == 5:
            self.enc5 = Encoder(ch * 8, ch * 16, 3, 2, 1)
            self.aspp = ASPPModule(ch * 16, ch * 32, dilations)
            self.dec5 = Decoder(ch * (16 + 32), ch * 16, 3, 1, 1)
        else:
            self.aspp = ASPPModule(ch * 8, ch * 16, dilations)
        self.dec4 = Decoder(ch * (8 + 16), ch * 8, 3, 1, 1)
        self.dec3 = Decoder(ch * (4 + 8), ch * 4, 3, 1, 1)
        self.dec2 = Decoder(ch * (2 + 4), ch * 2, 3, 1, 1)
        self.dec1 = Decoder(ch * (1 + 2), ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        del x  # called as forward(...) with a temporary (see _stages), the input goes after enc1
        for level in range(1, self.levels + 1):
            h, skip = getattr(self, f"enc{level}")(h)
            skips.append(skip)
        del skip
        h = self.aspp(h)
        for level in range(self.levels, 0, -1):
            # Called directly, not through nn.Module.__call__ (whose argument tuple would keep the
            # skip alive): a fused decoder frees its skip as soon as it has used it.
            h = getattr(self, f"dec{level}").forward(h, skips.pop())
        return h


class CascadedASPPNet(nn.Module):
    """Three-stage cascade: low/high half-band nets, a full-band net, a final full-band net.

    Input: normalised magnitudes ``[B, 2, bins + 1, T]``. Output of :meth:`forward`: the mask
    ``[B, 2, bins + 1, T]`` in [0, 1] (the last row replicates row ``bins - 1``).
    """

    uses_aggressiveness = True

    def __init__(self, config: AsppNetConfig = AsppNetConfig()):
        super().__init__()
        ch = config.channels
        if config.bins % (2 ** (config.levels + 1)):
            raise ValueError(f"bins={config.bins}: bins / 2 must be divisible by {2**config.levels}")
        self.config = config
        d, lv = config.dilations, config.levels
        self.stg1_low_band_net = BaseASPPNet(2, ch, d, lv)
        self.stg1_high_band_net = BaseASPPNet(2, ch, d, lv)
        self.stg2_bridge = Conv2DBNActiv(ch + 2, ch // 2, 1, 1, 0)
        self.stg2_full_band_net = BaseASPPNet(ch // 2, ch, d, lv)
        self.stg3_bridge = Conv2DBNActiv(2 * ch + 2, ch, 1, 1, 0)
        self.stg3_full_band_net = BaseASPPNet(ch, 2 * ch, d, lv)
        self.out = nn.Conv2d(2 * ch, 2, 1, bias=False)
        self.aux1_out = nn.Conv2d(ch, 2, 1, bias=False)
        self.aux2_out = nn.Conv2d(ch, 2, 1, bias=False)

    @property
    def context(self) -> int:
        """Frames cropped from each side of a window's output."""
        return self.config.context

    @property
    def frame_multiple(self) -> int:
        """Window lengths (frames) the net takes are multiples of this: each level halves them
        and the decoder crops the skips to twice the coarser length."""
        return 2**self.config.levels

    def _pad_rows(self, mask: torch.Tensor) -> torch.Tensor:
        return F.pad(mask, (0, 0, 0, self.config.bins + 1 - mask.shape[2]), mode="replicate")

    def _stages(self, x: torch.Tensor, keep_aux: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Run the cascade on ``x[:, :, :bins]``: final features and the two stage outputs (``None``
        unless ``keep_aux``: the last stage then runs without them, or any concatenation, alive)."""
        x = x[:, :, : self.config.bins]
        half = x.shape[2] // 2
        aux1 = torch.cat([self.stg1_low_band_net(x[:, :, :half]), self.stg1_high_band_net(x[:, :, half:])], dim=2)
        aux2 = self.stg2_full_band_net(self.stg2_bridge(torch.cat([x, aux1], dim=1)))
        bridge = [self.stg3_bridge(torch.cat([x, aux1, aux2], dim=1))]
        kept: tuple[torch.Tensor | None, torch.Tensor | None] = (aux1, aux2) if keep_aux else (None, None)
        del aux1, aux2
        # The bridge's output is popped into the call (forward, not __call__, whose argument tuple
        # would hold it): freed once the last stage's first encoder has read it.
        return self.stg3_full_band_net.forward(bridge.pop()), *kept

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _, _ = self._stages(x, keep_aux=False)
        return self._pad_rows(torch.sigmoid(self.out(h)))

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Final mask and the two auxiliary masks, each ``[B, 2, bins + 1, T]`` (for training)."""
        h, aux1, aux2 = self._stages(x, keep_aux=True)
        assert aux1 is not None and aux2 is not None  # kept with keep_aux
        return (
            self._pad_rows(torch.sigmoid(self.out(h))),
            self._pad_rows(torch.sigmoid(self.aux1_out(aux1))),
            self._pad_rows(torch.sigmoid(self.aux2_out(aux2))),
        )
