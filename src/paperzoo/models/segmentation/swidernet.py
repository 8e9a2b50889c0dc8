"""SWideRNet (Chen et al., 2020, "Scaling Wide Residual Networks for Panoptic Segmentation") with a
Panoptic-DeepLab head.

Backbone: a Wide-ResNet-41-style trunk of residual blocks (two 3x3 convolutions each) with squeeze-and-excitation,
whose 3x3 convolutions in the last two stages are Switchable Atrous Convolutions (SAC, DetectoRS eq. 1):

    y = S(x) * Conv(x, w, r=1) + (1 - S(x)) * Conv(x, w + dw, r)

with S an average pool (5x5) followed by a 1x1 convolution (one switch value per position, initialised to 1 so a
fresh SAC is the rate-1 convolution), ``dw`` a zero-initialised weight offset (the "lock" mechanism), and a global
context module (global average pool -> 1x1 conv, added back) before and after the SAC.

Scaling (the paper's SWideRNet-(w1, w2, l)): the stem and the first stage's channels are multiplied by ``w1``,
those of the later stages by ``w2``; every stage's block count is multiplied by ``l`` (rounded, at least 1). The
base trunk used here (``BASE_STEM``, ``BASE_STAGES``) follows our reading of the paper's Wide-ResNet-41 (stem 64,
stages 128/256/512/1024/2048 with 3/3/6/3/1 blocks); it was not compared with the paper's Table of parameter counts.

Head: Panoptic-DeepLab (Cheng et al., 2020) — a semantic decoder and an instance decoder (each a light ASPP on the
stride-16 features, fused with the stride-8 and stride-4 features), predicting semantic logits, a class-agnostic
instance-center heatmap and per-pixel offsets (dy, dx) to the instance's center. ``panoptic_merge`` turns them into a
panoptic map: centers by max-pool NMS and a threshold, each thing pixel grouped to the nearest center after adding
its offset, each instance's class the majority vote of its pixels' semantic labels.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import PaperzooError
from ...registry import register_model

__all__ = ["SAC", "SWideRNet", "PanopticDeepLab", "instance_losses", "instance_targets", "panoptic_merge", "stage_config"]

BASE_STEM = 64
# (channels, blocks, stride, dilation, width group: 1 -> w1, 2 -> w2, sac)
BASE_STAGES = ((128, 3, 2, 1, 1, False), (256, 3, 2, 1, 2, False), (512, 6, 2, 1, 2, False),
               (1024, 3, 2, 1, 2, True), (2048, 1, 1, 2, 2, True))


def _ch(c: int, w: float) -> int:
    return max(1, int(round(c * w)))


def stage_config(w1: float, w2: float, depth: float) -> tuple[int, list[tuple[int, int]]]:
    """(stem channels, [(channels, blocks) per stage]) of SWideRNet-(w1, w2, depth)."""
    stem = _ch(BASE_STEM, w1)
    stages = [(_ch(c, w1 if g == 1 else w2), max(1, math.floor(n * depth + 0.5))) for c, n, _, _, g, _ in BASE_STAGES]
    return stem, stages


def _bn_relu(c: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))


class _GlobalContext(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(x.mean((2, 3), keepdim=True))


class SAC(nn.Module):
    """Switchable atrous convolution: a per-position blend of the same 3x3 kernel at rate 1 and at rate ``rate``."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1, rate: int = 3) -> None:
        super().__init__()
        self.stride, self.d1, self.d2 = stride, dilation, dilation * rate
        self.weight = nn.Parameter(torch.empty(cout, cin, 3, 3))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.delta = nn.Parameter(torch.zeros(cout, cin, 3, 3))
        self.switch = nn.Conv2d(cin, 1, 1)
        nn.init.zeros_(self.switch.weight)
        nn.init.ones_(self.switch.bias)
        self.pre, self.post = _GlobalContext(cin), _GlobalContext(cout)

    def convs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = F.conv2d(x, self.weight, stride=self.stride, padding=self.d1, dilation=self.d1)
        b = F.conv2d(x, self.weight + self.delta, stride=self.stride, padding=self.d2, dilation=self.d2)
        return a, b

    def forward(self, x: torch.Tensor, switch: torch.Tensor | None = None) -> torch.Tensor:
        x = self.pre(x)
        if switch is None:
            s = self.switch(F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False))
            switch = s[..., ::self.stride, ::self.stride]
        a, b = self.convs(x)
        return self.post(switch * a + (1 - switch) * b)


class _SE(nn.Module):
    def __init__(self, c: int, ratio: float = 0.25) -> None:
        super().__init__()
        h = max(1, int(c * ratio))
        self.fc1, self.fc2 = nn.Conv2d(c, h, 1), nn.Conv2d(h, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class _Block(nn.Module):
    """Wide residual block: 3x3 -> 3x3 (SAC in the last stages), SE, projection shortcut on a shape change."""

    def __init__(self, cin: int, cout: int, stride: int, dilation: int, sac: bool) -> None:
        super().__init__()
        if sac:
            self.conv1 = SAC(cin, cout, stride, dilation)
            self.conv2 = SAC(cout, cout, 1, dilation)
        else:
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, dilation, dilation, bias=False)
        self.bn1, self.bn2 = _bn_relu(cout), nn.BatchNorm2d(cout)
        self.se = _SE(cout)
        self.short = (nn.Identity() if cin == cout and stride == 1 else
                      nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        return F.relu(y + self.short(x))


class SWideRNet(nn.Module):
    """The scaled wide residual backbone; ``forward`` returns the features at strides 4, 8 and 16."""

    def __init__(self, w1: float = 1.0, w2: float = 1.0, depth: float = 1.0, in_chans: int = 3) -> None:
        super().__init__()
        stem, stages = stage_config(w1, w2, depth)
        self.stem = nn.Sequential(nn.Conv2d(in_chans, stem, 3, 2, 1, bias=False), _bn_relu(stem),
                                  nn.Conv2d(stem, stem, 3, 1, 1, bias=False), _bn_relu(stem))
        self.stages = nn.ModuleList()
        cin = stem
        for (c, n), (_, _, stride, dil, _, sac) in zip(stages, BASE_STAGES):
            self.stages.append(nn.Sequential(*[_Block(cin if i == 0 else c, c, stride if i == 0 else 1, dil, sac)
                                               for i in range(n)]))
            cin = c
        self.channels = [c for c, _ in stages]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)  # stride 2
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)  # strides 4, 8, 16, 32 (dilated), 32
        return {"res2": feats[0], "res3": feats[1], "res5": feats[-1]}


class _Decoder(nn.Module):
    """Panoptic-DeepLab decoder: light ASPP on the deepest features, fused with stride-8 and stride-4 features."""

    def __init__(self, c_deep: int, c8: int, c4: int, aspp: int, dec: int, low8: int, low4: int) -> None:
        super().__init__()
        self.b0 = nn.Sequential(nn.Conv2d(c_deep, aspp, 1, bias=False), _bn_relu(aspp))
        self.b1 = nn.Sequential(nn.Conv2d(c_deep, aspp, 3, padding=2, dilation=2, bias=False), _bn_relu(aspp))
        self.pool = nn.Sequential(nn.Conv2d(c_deep, aspp, 1, bias=False), nn.ReLU(inplace=True))
        self.proj = nn.Sequential(nn.Conv2d(3 * aspp, dec, 1, bias=False), _bn_relu(dec))
        self.l8 = nn.Sequential(nn.Conv2d(c8, low8, 1, bias=False), _bn_relu(low8))
        self.f8 = self._fuse(dec + low8, dec)
        self.l4 = nn.Sequential(nn.Conv2d(c4, low4, 1, bias=False), _bn_relu(low4))
        self.f4 = self._fuse(dec + low4, dec)

    @staticmethod
    def _fuse(cin: int, cout: int) -> nn.Sequential:  # 5x5 depthwise-separable convolution
        return nn.Sequential(nn.Conv2d(cin, cin, 5, padding=2, groups=cin, bias=False), _bn_relu(cin),
                             nn.Conv2d(cin, cout, 1, bias=False), _bn_relu(cout))

    def forward(self, f: dict[str, torch.Tensor]) -> torch.Tensor:
        x = f["res5"]
        p = self.pool(x.mean((2, 3), keepdim=True)).expand(-1, -1, *x.shape[-2:])
        x = self.proj(torch.cat([self.b0(x), self.b1(x), p], 1))
        for key, low, fuse in (("res3", self.l8, self.f8), ("res2", self.l4, self.f4)):
            y = f[key]
            x = F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=False)
            x = fuse(torch.cat([x, low(y)], 1))
        return x


def _head(cin: int, mid: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cin, 5, padding=2, groups=cin, bias=False), _bn_relu(cin),
                         nn.Conv2d(cin, mid, 1, bias=False), _bn_relu(mid), nn.Conv2d(mid, cout, 1))


class PanopticDeepLab(nn.Module):
    """SWideRNet + Panoptic-DeepLab. ``model(images)`` -> ``{"out": semantic logits, "center": heatmap (B, 1, H, W),
    "offset": (B, 2, H, W) offsets (dy, dx) in pixels}``, all at the input's resolution."""

    def __init__(self, num_classes: int = 19, w1: float = 1.0, w2: float = 1.0, depth: float = 1.0,
                 in_chans: int = 3, decoder: int = 256, instance_decoder: int = 128) -> None:
        super().__init__()
        self.backbone = SWideRNet(w1, w2, depth, in_chans)
        c4, c8, c_deep = self.backbone.channels[0], self.backbone.channels[1], self.backbone.channels[-1]
        d, di = decoder, instance_decoder
        self.sem_decoder = _Decoder(c_deep, c8, c4, d, d, max(1, d // 4), max(1, d // 8))
        self.ins_decoder = _Decoder(c_deep, c8, c4, d, di, max(1, di // 2), max(1, di // 4))
        self.sem_head = _head(d, d, num_classes)
        self.center_head = _head(di, max(1, di // 4), 1)
        self.offset_head = _head(di, max(1, di // 4), 2)
        for h in (self.center_head, self.offset_head):  # start at "no centers, zero offsets" (ours, for stability)
            nn.init.zeros_(h[-1].weight)
            nn.init.zeros_(h[-1].bias)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        size = images.shape[-2:]
        f = self.backbone(images)
        s, i = self.sem_decoder(f), self.ins_decoder(f)
        scale = size[0] / i.shape[-2]

        def up(t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, size=size, mode="bilinear", align_corners=False)

        return {"out": up(self.sem_head(s)), "center": up(self.center_head(i)), "offset": up(self.offset_head(i)) * scale}


@torch.no_grad()
def panoptic_merge(semantic: torch.Tensor, center: torch.Tensor, offset: torch.Tensor, thing_ids: list[int],
                   threshold: float = 0.1, nms_kernel: int = 7, top_k: int = 200, label_divisor: int = 1000
                   ) -> torch.Tensor:
    """One image's panoptic map (H, W) = class * label_divisor + instance id (0 for stuff).

    ``semantic``: labels (H, W) or logits (C, H, W); ``center``: (H, W) or (1, H, W); ``offset``: (2, H, W).
    """
    if semantic.dim() == 3:
        semantic = semantic.argmax(0)
    if semantic.dim() != 2 or offset.shape[0] != 2:
        raise PaperzooError("panoptic_merge takes one image: semantic (H, W) or (C, H, W), offset (2, H, W)")
    heat = center.reshape(1, 1, *semantic.shape).float()
    peaks = (heat == F.max_pool2d(heat, nms_kernel, 1, nms_kernel // 2)) & (heat > threshold)
    h, w = semantic.shape
    ys, xs = torch.nonzero(peaks[0, 0], as_tuple=True)
    if ys.numel() > top_k:
        keep = heat[0, 0, ys, xs].topk(top_k).indices
        ys, xs = ys[keep], xs[keep]
    thing = torch.isin(semantic, torch.as_tensor(thing_ids, device=semantic.device))
    panoptic = semantic.long() * label_divisor
    if ys.numel() == 0:
        return panoptic
    gy, gx = torch.meshgrid(torch.arange(h, device=semantic.device), torch.arange(w, device=semantic.device),
                            indexing="ij")
    py, px = gy + offset[0], gx + offset[1]  # where each pixel says its center is
    d = (py.reshape(-1, 1) - ys.reshape(1, -1)) ** 2 + (px.reshape(-1, 1) - xs.reshape(1, -1)) ** 2
    inst = d.argmin(1).reshape(h, w) + 1  # 1..K
    inst = torch.where(thing, inst, torch.zeros_like(inst))
    k, c = ys.numel() + 1, int(semantic.max()) + 1
    votes = torch.zeros(k * c, dtype=torch.long, device=semantic.device)
    votes.scatter_add_(0, (inst * c + semantic.long())[thing], torch.ones_like(inst[thing]))
    cls = votes.view(k, c).argmax(1)  # majority semantic class per instance
    return torch.where(thing, cls[inst] * label_divisor + inst, panoptic)


def _swidernet(name: str, w1: float, w2: float, depth: float, num_classes: int, in_chans: int, decoder: int,
               instance_decoder: int, kwargs: dict[str, Any]) -> PanopticDeepLab:
    if kwargs:
        raise PaperzooError(f"model '{name}' does not take the argument '{next(iter(kwargs))}'")
    return PanopticDeepLab(num_classes, w1, w2, depth, in_chans, decoder, instance_decoder)


_META = dict(paper="swidernet", task="panoptic", num_classes=19, input_size=(3, 512, 512), paper_params_m=None)
_NOTES = "backbone with a Panoptic-DeepLab head; output {'out', 'center', 'offset'}; panoptic_merge gives the panoptic map"


@register_model(**_META, notes="SWideRNet-(0.25, 0.25, 0.75) " + _NOTES)
def swidernet_0_25_0_25_0_75(num_classes: int = 19, in_chans: int = 3, decoder: int = 256, instance_decoder: int = 128,
                             **kwargs: Any) -> PanopticDeepLab:
    """SWideRNet-(0.25, 0.25, 0.75) with a Panoptic-DeepLab head."""
    return _swidernet("swidernet_0_25_0_25_0_75", 0.25, 0.25, 0.75, num_classes, in_chans, decoder, instance_decoder,
                      kwargs)


@register_model(**_META, notes="SWideRNet-(1, 1, 1) " + _NOTES)
def swidernet_1_1_1(num_classes: int = 19, in_chans: int = 3, decoder: int = 256, instance_decoder: int = 128,
                    **kwargs: Any) -> PanopticDeepLab:
    """SWideRNet-(1, 1, 1) with a Panoptic-DeepLab head."""
    return _swidernet("swidernet_1_1_1", 1.0, 1.0, 1.0, num_classes, in_chans, decoder, instance_decoder, kwargs)


@register_model(**_META, notes="SWideRNet-(1, 1, 2) " + _NOTES)
def swidernet_1_1_2(num_classes: int = 19, in_chans: int = 3, decoder: int = 256, instance_decoder: int = 128,
                    **kwargs: Any) -> PanopticDeepLab:
    """SWideRNet-(1, 1, 2) with a Panoptic-DeepLab head."""
    return _swidernet("swidernet_1_1_2", 1.0, 1.0, 2.0, num_classes, in_chans, decoder, instance_decoder, kwargs)


@register_model(**_META, notes="SWideRNet-(1, 1, 4.5) " + _NOTES)
def swidernet_1_1_4_5(num_classes: int = 19, in_chans: int = 3, decoder: int = 256, instance_decoder: int = 128,
                      **kwargs: Any) -> PanopticDeepLab:
    """SWideRNet-(1, 1, 4.5) with a Panoptic-DeepLab head."""
    return _swidernet("swidernet_1_1_4_5", 1.0, 1.0, 4.5, num_classes, in_chans, decoder, instance_decoder, kwargs)


def instance_targets(masks: torch.Tensor, sigma: float = 8.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Panoptic-DeepLab's instance targets from one image's instance masks (N, H, W): the center heatmap (H, W)
    (a Gaussian of std ``sigma`` at each instance's center of mass, the max over instances), the offsets (2, H, W)
    from each instance pixel to its center (dy, dx), and the mask of instance pixels."""
    n, h, w = masks.shape
    m = masks.bool().float()
    gy, gx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    area = m.sum((1, 2)).clamp_min(1)
    cy, cx = (m * gy).sum((1, 2)) / area, (m * gx).sum((1, 2)) / area  # (N,)
    g = torch.exp(-((gy - cy.round()[:, None, None]) ** 2 + (gx - cx.round()[:, None, None]) ** 2) / (2 * sigma ** 2))
    heat = g.amax(0) if n else torch.zeros(h, w)
    owner = (m * torch.arange(1, n + 1, dtype=torch.float32)[:, None, None]).amax(0).long()  # last instance wins
    fg = owner > 0
    idx = (owner - 1).clamp_min(0)
    offset = torch.stack([cy[idx] - gy, cx[idx] - gx]) * fg if n else torch.zeros(2, h, w)
    return heat, offset, fg


def instance_losses(out: dict[str, torch.Tensor], heat: torch.Tensor, offset: torch.Tensor, fg: torch.Tensor,
                    center_weight: float = 200.0, offset_weight: float = 0.01) -> dict[str, torch.Tensor]:
    """Panoptic-DeepLab's instance losses: MSE on the center heatmap (weight 200) and L1 on the offsets over
    instance pixels (weight 0.01). ``heat`` (B, H, W), ``offset`` (B, 2, H, W), ``fg`` (B, H, W)."""
    center = F.mse_loss(out["center"][:, 0], heat)
    m = fg[:, None].float()
    off = ((out["offset"] - offset).abs() * m).sum() / m.sum().clamp_min(1)
    return {"center": center_weight * center, "offset": offset_weight * off}
