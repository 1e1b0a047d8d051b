"""Building blocks of UVR's VR-architecture U-Nets (``layers_123812KB`` in the original).

Module and attribute names (``conv``, ``conv1`` ... ``bottleneck``) are kept exactly, so the
official state dicts load key for key. Shapes are ``[batch, channels, bins, frames]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def crop_center(skip: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Centre-crop ``skip`` along time (last axis) to ``target``'s frame count.

    Only the time axis is cropped: the frequency axes already agree. Raises ``ValueError`` if
    ``skip`` is shorter than ``target``.
    """
    n_skip, n_target = skip.shape[3], target.shape[3]
    if n_skip == n_target:
        return skip
    if n_skip < n_target:
        raise ValueError(f"skip has {n_skip} frames, fewer than the {n_target} it must be cropped to")
    start = (n_skip - n_target) // 2
    return skip[:, :, :, start : start + n_target]


class Conv2DBNActiv(nn.Module):
    """Conv2d (no bias) → BatchNorm2d → activation. ``[B, nin, F, T] → [B, nout, F', T']``."""

    def __init__(
        self,
        nin: int,
        nout: int,
        ksize: int = 3,
        stride: int = 1,
        pad: int = 1,
        dilation: int = 1,
        activ: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(nin, nout, kernel_size=ksize, stride=stride, padding=pad, dilation=dilation, bias=False),
            nn.BatchNorm2d(nout),
            activ(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SeparableConv2DBNActiv(nn.Module):
    """Depthwise conv → pointwise 1×1 conv → BatchNorm2d → activation (UVR's ``SeperableConv2DBNActiv``)."""

    def __init__(
        self,
        nin: int,
        nout: int,
        ksize: int = 3,
        stride: int = 1,
        pad: int = 1,
        dilation: int = 1,
        activ: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(
                nin, nin, kernel_size=ksize, stride=stride, padding=pad, dilation=dilation, groups=nin, bias=False
            ),
            nn.Conv2d(nin, nout, kernel_size=1, bias=False),
            nn.BatchNorm2d(nout),
            activ(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Encoder(nn.Module):
    """Two conv blocks (LeakyReLU); the second strides. Returns ``(downsampled, skip)``.

    ``[B, nin, F, T] → ([B, nout, F/s, T/s], [B, nout, F, T])``.
    """

    def __init__(
        self, nin: int, nout: int, ksize: int = 3, stride: int = 1, pad: int = 1, activ: type[nn.Module] = nn.LeakyReLU
    ):
        super().__init__()
        self.conv1 = Conv2DBNActiv(nin, nout, ksize, 1, pad, activ=activ)
        self.conv2 = Conv2DBNActiv(nout, nout, ksize, stride, pad, activ=activ)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.conv1(x)
        return self.conv2(skip), skip


class Decoder(nn.Module):
    """×2 bilinear upsampling, concatenation with the time-cropped skip, one conv block (ReLU).

    ``[B, c, F, T]`` with skip ``[B, c_skip, 2F, T_skip]`` → ``[B, nout, 2F, 2T]``. The conv
    block is stored as ``conv`` (``conv1`` in the VR 5.1 layout: :class:`UpDecoder`).
    """

    conv_attr = "conv"

    def __init__(
        self,
        nin: int,
        nout: int,
        ksize: int = 3,
        stride: int = 1,
        pad: int = 1,
        activ: type[nn.Module] = nn.ReLU,
        dropout: bool = False,
    ):
        super().__init__()
        setattr(self, self.conv_attr, Conv2DBNActiv(nin, nout, ksize, 1, pad, activ=activ))
        self.dropout = nn.Dropout2d(0.1) if dropout else None
        #: Set by :func:`uvrsep.network.fusion.fuse_for_inference` (BatchNorm folded) on the CPU:
        #: convolve the upsampled input and the skip separately and add, instead of concatenating
        #: them first (less memory; on a GPU one convolution is faster than several).
        self.split_concat = False

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        block = getattr(self, self.conv_attr)
        if skip is not None and self.split_concat:
            # conv([up(x), skip]) = conv_skip(skip) + Σ_chunks conv_chunk(up(x[chunk])): never
            # materialises the concatenation nor the whole upsampled input (at full resolution
            # the largest tensors of the net). The upsampling acts on each channel alone, so
            # upsampling a group of channels gives exactly those channels of the whole.
            conv, channels = block.conv[0], x.shape[1]
            skip = crop_center(skip, x.new_empty((0, 0, 0, 2 * x.shape[3])))
            h = F.conv2d(skip, conv.weight[:, channels:], conv.bias, padding=conv.padding)
            del skip  # the last reference when the caller handed it over (BaseASPPNet.forward)
            step = max(1, conv.out_channels // 2)
            for c in range(0, channels, step):
                end = min(c + step, channels)
                up = F.interpolate(x[:, c:end], scale_factor=2, mode="bilinear", align_corners=True)
                h += F.conv2d(up, conv.weight[:, c:end], None, padding=conv.padding)
                del up
            h = block.conv[2](block.conv[1](h))
        else:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
            if skip is not None:
                x = torch.cat([x, crop_center(skip, x)], dim=1)
            h = block(x)
        if self.dropout is not None:
            h = self.dropout(h)
        return h


class ASPPModule(nn.Module):
    """Atrous spatial pyramid pooling: a frequency-pooled branch, a 1×1 branch and one separable
    dilated branch per dilation, concatenated and squeezed by a 1×1 bottleneck.

    ``dilations`` has 3 entries for the 5-branch nets (conv3..conv5) and 5 for the 7-branch
    nets (conv3..conv7; conv6 and conv7 are two modules, as RVC has them).
    ``[B, nin, F, T] → [B, nout, F, T]``.
    """

    def __init__(self, nin: int, nout: int, dilations: tuple[int, ...] = (4, 8, 16), activ: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.n_dilated = len(dilations)
        self.conv1 = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, None)),
            Conv2DBNActiv(nin, nin, 1, 1, 0, activ=activ),
        )
        self.conv2 = Conv2DBNActiv(nin, nin, 1, 1, 0, activ=activ)
        for i, d in enumerate(dilations):
            setattr(self, f"conv{i + 3}", SeparableConv2DBNActiv(nin, nin, 3, 1, d, d, activ=activ))
        self.bottleneck = nn.Sequential(
            Conv2DBNActiv(nin * (2 + len(dilations)), nout, 1, 1, 0, activ=activ),
            nn.Dropout2d(0.1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        feats = [F.interpolate(self.conv1(x), size=(h, w), mode="bilinear", align_corners=True), self.conv2(x)]
        feats += [getattr(self, f"conv{i + 3}")(x) for i in range(self.n_dilated)]
        return self.bottleneck(torch.cat(feats, dim=1))


# -- VR 5.1 blocks (``layers_new`` in the original) -------------------------------------------


class StridedEncoder(nn.Module):
    """VR 5.1 encoder: the *first* conv block strides, the second does not; no skip output.

    ``[B, nin, F, T] → [B, nout, F/s, T/s]`` (LeakyReLU).
    """

    def __init__(
        self, nin: int, nout: int, ksize: int = 3, stride: int = 1, pad: int = 1, activ: type[nn.Module] = nn.LeakyReLU
    ):
        super().__init__()
        self.conv1 = Conv2DBNActiv(nin, nout, ksize, stride, pad, activ=activ)
        self.conv2 = Conv2DBNActiv(nout, nout, ksize, 1, pad, activ=activ)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class UpDecoder(Decoder):
    """VR 5.1 decoder: :class:`Decoder` with its conv block named ``conv1``."""

    conv_attr = "conv1"


class DenseASPPModule(nn.Module):
    """VR 5.1 ASPP: full (not separable) 3×3 convs with anisotropic (freq, time) dilations.

    ``[B, nin, F, T] → [B, nout, F, T]``.
    """

    def __init__(
        self,
        nin: int,
        nout: int,
        dilations=((4, 2), (8, 4), (12, 6)),
        activ: type[nn.Module] = nn.ReLU,
        dropout: bool = False,
    ):
        super().__init__()
        self.conv1 = nn.Sequential(nn.AdaptiveAvgPool2d((1, None)), Conv2DBNActiv(nin, nout, 1, 1, 0, activ=activ))
        self.conv2 = Conv2DBNActiv(nin, nout, 1, 1, 0, activ=activ)
        self.conv3 = Conv2DBNActiv(nin, nout, 3, 1, dilations[0], dilations[0], activ=activ)
        self.conv4 = Conv2DBNActiv(nin, nout, 3, 1, dilations[1], dilations[1], activ=activ)
        self.conv5 = Conv2DBNActiv(nin, nout, 3, 1, dilations[2], dilations[2], activ=activ)
        self.bottleneck = Conv2DBNActiv(nout * 5, nout, 1, 1, 0, activ=activ)
        self.dropout = nn.Dropout2d(0.1) if dropout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        feats = [
            F.interpolate(self.conv1(x), size=(h, w), mode="bilinear", align_corners=True),
            self.conv2(x),
            self.conv3(x),
            self.conv4(x),
            self.conv5(x),
        ]
        out = self.bottleneck(torch.cat(feats, dim=1))
        if self.dropout is not None:
            out = self.dropout(out)
        return out


class LSTMModule(nn.Module):
    """Squeeze channels to one, run a bidirectional LSTM over frames, expand back to the bins.

    ``[B, nin_conv, F, T] → [B, 1, F, T]`` with ``F = nin_lstm``.
    """

    def __init__(self, nin_conv: int, nin_lstm: int, nout_lstm: int):
        super().__init__()
        self.conv = Conv2DBNActiv(nin_conv, 1, 1, 1, 0)
        self.lstm = nn.LSTM(input_size=nin_lstm, hidden_size=nout_lstm // 2, bidirectional=True)
        self.dense = nn.Sequential(nn.Linear(nout_lstm, nin_lstm), nn.BatchNorm1d(nin_lstm), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, n_bins, n_frames = x.shape
        h = self.conv(x)[:, 0].permute(2, 0, 1)  # [T, B, F]
        h, _ = self.lstm(h)
        h = self.dense(h.reshape(-1, h.shape[-1]))  # [T·B, F]
        return h.reshape(n_frames, n, 1, n_bins).permute(1, 2, 3, 0)
