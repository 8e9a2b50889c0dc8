"""The blocks and the network skeleton shared by MobileNet v1/v2/v3 and EfficientNet v1/v2.

All five papers build a network the same way: a strided 3x3 stem conv, stages of "mobile" blocks read off
an architecture table, an optional 1x1 head conv, global pooling and a linear classifier. They differ in
the block kind, the activation, the squeeze-excite variant and the channel rounding, which are arguments
here rather than copies:

* ``DepthwiseSeparable`` — MobileNet v1 (sec. 3.1): a depthwise kxk conv filters each channel, a 1x1
  pointwise conv mixes them. With ``pw_act=False`` and a skip it is also the first (expansion-1) block of
  MobileNetV2/V3 and EfficientNet ("MBConv1").
* ``InvertedResidual`` — MobileNetV2 (sec. 3.3), "MBConv" in EfficientNet: 1x1 expansion by t, depthwise
  kxk, optional squeeze-excite (MobileNetV3 sec. 5.3, EfficientNet), and a *linear* 1x1 projection back
  to a thin bottleneck; the shortcut joins the bottlenecks.
* ``FusedMBConv`` — EfficientNetV2 (sec. 3.2): the expansion and depthwise convs fused into one regular
  kxk conv, then the linear 1x1 projection.
* ``ConvBnAct`` — a plain conv-BN-act (EfficientNetV2's un-expanded Fused-MBConv1 with a skip, the last 1x1
  conv of MobileNetV3's body).

``BlockSpec`` is one row of a paper's architecture table; ``MobileNetBase`` turns a list of stages of specs
into a network with a width multiplier (channels rounded to multiples of 8, never below 90% of the
request) and a depth multiplier (repeats rounded up), as EfficientNet's compound scaling (eq. 3) needs.
Module names follow timm's EfficientNet/MobileNetV3 so that its checkpoints load by name; torchvision's
positional names are mapped by ``torchvision_converter``.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import PaperzooError
from ...layers import DropPath, get_act_layer, make_divisible
from ...layers.padding import create_conv2d

__all__ = [
    "BlockSpec", "ConvBnAct", "DepthwiseSeparable", "FusedMBConv", "InvertedResidual", "MobileNetBase",
    "timm_converter", "torchvision_converter",
]

ModuleFactory = Callable[..., nn.Module]
SeFactory = Callable[[int, int, float], nn.Module]  # (block width, block input channels, ratio) -> module


def _conv(in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, dilation: int = 1, groups: int = 1,
          pad_type: str = "") -> nn.Conv2d:
    """A bias-free conv keeping ceil(in / stride) positions; ``pad_type="same"`` pads as TensorFlow does."""
    return create_conv2d(in_chs, out_chs, kernel_size, stride, dilation, groups, bias=False, padding=pad_type)


class _Residual(nn.Module):
    """y = x + drop_path(F(x)) when the block keeps its shape and ``skip`` is on, else y = F(x)."""

    has_skip: bool

    def _init_skip(self, skip: bool, stride: int, in_chs: int, out_chs: int, drop_path: float) -> None:
        self.has_skip = skip and stride == 1 and in_chs == out_chs
        self.drop_path = DropPath(drop_path) if self.has_skip and drop_path > 0 else nn.Identity()

    def _join(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path(y) + x if self.has_skip else y


class ConvBnAct(_Residual):
    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1,
                 skip: bool = False, act_layer: ModuleFactory = nn.ReLU, norm_layer: ModuleFactory = nn.BatchNorm2d,
                 drop_path: float = 0.0, pad_type: str = "") -> None:
        super().__init__()
        self.conv = _conv(in_chs, out_chs, kernel_size, stride, dilation, pad_type=pad_type)
        self.bn1 = norm_layer(out_chs)
        self.act1 = act_layer(inplace=True)
        self._init_skip(skip, stride, in_chs, out_chs, drop_path)

    def units(self) -> list[str | tuple[str, str]]:
        return [("conv", "bn1")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._join(self.act1(self.bn1(self.conv(x))), x)


class DepthwiseSeparable(_Residual):
    """Depthwise kxk -> BN -> act -> [SE] -> pointwise 1x1 -> BN [-> act]."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1,
                 pw_act: bool = False, skip: bool = True, se_layer: ModuleFactory | None = None,
                 act_layer: ModuleFactory = nn.ReLU, norm_layer: ModuleFactory = nn.BatchNorm2d,
                 drop_path: float = 0.0, pad_type: str = "") -> None:
        super().__init__()
        self.conv_dw = _conv(in_chs, in_chs, kernel_size, stride, dilation, groups=in_chs, pad_type=pad_type)
        self.bn1 = norm_layer(in_chs)
        self.act1 = act_layer(inplace=True)
        self.se = se_layer(in_chs) if se_layer is not None else nn.Identity()
        self.conv_pw = _conv(in_chs, out_chs, 1)
        self.bn2 = norm_layer(out_chs)
        self.act2 = act_layer(inplace=True) if pw_act else nn.Identity()
        self._init_skip(skip, stride, in_chs, out_chs, drop_path)

    def units(self) -> list[str | tuple[str, str]]:
        return [("conv_dw", "bn1"), *(["se"] if not isinstance(self.se, nn.Identity) else []), ("conv_pw", "bn2")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.act1(self.bn1(self.conv_dw(x))))
        return self._join(self.act2(self.bn2(self.conv_pw(y))), x)


class InvertedResidual(_Residual):
    """1x1 expand (x t) -> BN -> act -> depthwise kxk -> BN -> act -> [SE] -> linear 1x1 project -> BN."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1,
                 exp_ratio: float = 6.0, skip: bool = True, se_layer: ModuleFactory | None = None,
                 act_layer: ModuleFactory = nn.ReLU, norm_layer: ModuleFactory = nn.BatchNorm2d,
                 drop_path: float = 0.0, linear_bottleneck: bool = True, pad_type: str = "") -> None:
        super().__init__()
        mid = make_divisible(in_chs * exp_ratio)
        self.conv_pw = _conv(in_chs, mid, 1)
        self.bn1 = norm_layer(mid)
        self.act1 = act_layer(inplace=True)
        self.conv_dw = _conv(mid, mid, kernel_size, stride, dilation, groups=mid, pad_type=pad_type)
        self.bn2 = norm_layer(mid)
        self.act2 = act_layer(inplace=True)
        self.se = se_layer(mid) if se_layer is not None else nn.Identity()
        self.conv_pwl = _conv(mid, out_chs, 1)
        self.bn3 = norm_layer(out_chs)
        # MobileNetV2 sec. 3.2 / Table 3 ablation: a ReLU here destroys information in the thin bottleneck.
        self.act3 = nn.Identity() if linear_bottleneck else act_layer(inplace=True)
        self._init_skip(skip, stride, in_chs, out_chs, drop_path)

    def units(self) -> list[str | tuple[str, str]]:
        se = ["se"] if not isinstance(self.se, nn.Identity) else []
        return [("conv_pw", "bn1"), ("conv_dw", "bn2"), *se, ("conv_pwl", "bn3")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.bn1(self.conv_pw(x)))
        y = self.se(self.act2(self.bn2(self.conv_dw(y))))
        return self._join(self.act3(self.bn3(self.conv_pwl(y))), x)


class FusedMBConv(_Residual):
    """kxk expand conv (x t) -> BN -> act -> [SE] -> linear 1x1 project -> BN (EfficientNetV2 Fig. 2)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1,
                 exp_ratio: float = 4.0, skip: bool = True, se_layer: ModuleFactory | None = None,
                 act_layer: ModuleFactory = nn.ReLU, norm_layer: ModuleFactory = nn.BatchNorm2d,
                 drop_path: float = 0.0, pad_type: str = "") -> None:
        super().__init__()
        mid = make_divisible(in_chs * exp_ratio)
        self.conv_exp = _conv(in_chs, mid, kernel_size, stride, dilation, pad_type=pad_type)
        self.bn1 = norm_layer(mid)
        self.act1 = act_layer(inplace=True)
        self.se = se_layer(mid) if se_layer is not None else nn.Identity()
        self.conv_pwl = _conv(mid, out_chs, 1)
        self.bn2 = norm_layer(out_chs)
        self._init_skip(skip, stride, in_chs, out_chs, drop_path)

    def units(self) -> list[str | tuple[str, str]]:
        return [("conv_exp", "bn1"), *(["se"] if not isinstance(self.se, nn.Identity) else []), ("conv_pwl", "bn2")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.act1(self.bn1(self.conv_exp(x))))
        return self._join(self.bn2(self.conv_pwl(y)), x)


@dataclass(frozen=True)
class BlockSpec:
    """One row of an architecture table: ``repeats`` blocks of one kind; only the first one strides.

    ``kind``: "ds" depthwise-separable, "ir" inverted residual (MBConv), "er" Fused-MBConv, "cn" conv-BN-act.
    ``se_ratio`` is relative to the block's input channels or its expanded width, as the family's
    ``se_layer`` decides; ``act`` overrides the network's activation for this row (MobileNetV3's RE/HS).
    """

    kind: str
    out_chs: int
    repeats: int = 1
    kernel_size: int = 3
    stride: int = 1
    exp_ratio: float = 1.0
    se_ratio: float = 0.0
    act: str | None = None
    skip: bool = True
    pw_act: bool = False


_BLOCKS = {"ds": DepthwiseSeparable, "ir": InvertedResidual, "er": FusedMBConv, "cn": ConvBnAct}


class MobileNetBase(nn.Module):
    """Stem conv -> stages of mobile blocks -> [1x1 head conv] -> global pool -> classifier.

    ``head_after_pool`` puts the head conv after the pooling, without BN and with a bias (MobileNetV3's
    "efficient last stage", sec. 5.1); ``num_features=0`` means no head conv (MobileNet v1);
    ``pad_type="same"`` pads the stem and block convs as TensorFlow's "SAME" (``layers.padding``), which
    weights trained in TensorFlow need.
    """

    def __init__(
        self,
        stages: Sequence[Sequence[BlockSpec]],
        stem_chs: int = 32,
        num_features: int = 1280,
        num_classes: int = 1000,
        in_chans: int = 3,
        width: float = 1.0,
        depth: float = 1.0,
        fix_stem: bool = False,
        act_layer: str | ModuleFactory = "relu6",
        norm_layer: ModuleFactory | None = None,
        bn_eps: float = 1e-5,
        se_layer: SeFactory | None = None,
        head_after_pool: bool = False,
        output_stride: int = 32,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        linear_bottleneck: bool = True,
        pad_type: str = "",
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise PaperzooError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        norm = norm_layer or (lambda c: nn.BatchNorm2d(c, eps=bn_eps))
        act = get_act_layer(act_layer)
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.head_after_pool = head_after_pool

        def chs(c: int) -> int:
            return make_divisible(c * width)

        stem_chs = stem_chs if fix_stem else chs(stem_chs)
        self.conv_stem = _conv(in_chans, stem_chs, 3, 2, pad_type=pad_type)
        self.bn1 = norm(stem_chs)
        self.act1 = act(inplace=True)

        # EfficientNet scales each stage's repeats by ceil(depth * n).
        stages = [[replace(s, repeats=math.ceil(s.repeats * depth)) for s in stage] for stage in stages]
        n_blocks = sum(s.repeats for stage in stages for s in stage)
        in_chs, reduction, dilation, idx = stem_chs, 2, 1, 0
        self.feature_info: list[dict] = []
        if stages[0][0].stride > 1:  # the first stage downsamples: the stem's output is a feature level
            self.feature_info.append(dict(num_chs=stem_chs, reduction=2, module="bn1"))
        blocks = []
        for i, stage in enumerate(stages):
            layers = []
            for spec in stage:
                for j in range(spec.repeats):
                    stride = spec.stride if j == 0 else 1
                    block_dilation = dilation
                    if stride > 1 and reduction * stride > output_stride:
                        dilation *= stride
                        stride = 1
                    elif stride > 1:
                        reduction *= stride
                    out_chs = chs(spec.out_chs)
                    layers.append(self._block(spec, in_chs, out_chs, stride, block_dilation, act, norm, se_layer,
                                              drop_path_rate * idx / n_blocks, linear_bottleneck, pad_type))
                    in_chs = out_chs
                    idx += 1
            blocks.append(nn.Sequential(*layers))
            if i == len(stages) - 1 or stages[i + 1][0].stride > 1:
                self.feature_info.append(dict(num_chs=in_chs, reduction=reduction, module=f"blocks.{i}"))
        self.blocks = nn.Sequential(*blocks)
        self._level_ends = [int(f["module"].split(".")[1]) if f["module"] != "bn1" else -1 for f in self.feature_info]

        self.num_features = num_features or in_chs
        if not num_features:
            self.conv_head, self.bn2, self.act2 = nn.Identity(), nn.Identity(), nn.Identity()
        elif head_after_pool:
            self.conv_head = nn.Conv2d(in_chs, num_features, 1, bias=True)
            self.bn2, self.act2 = nn.Identity(), act(inplace=True)
        else:
            self.conv_head = _conv(in_chs, num_features, 1)
            self.bn2, self.act2 = norm(num_features), act(inplace=True)
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    @staticmethod
    def _block(spec: BlockSpec, in_chs: int, out_chs: int, stride: int, dilation: int, act: ModuleFactory,
               norm: ModuleFactory, se_layer: SeFactory | None, drop_path: float, linear_bottleneck: bool,
               pad_type: str = "") -> nn.Module:
        if spec.kind not in _BLOCKS:
            raise PaperzooError(f"unknown block kind '{spec.kind}' (known: {', '.join(_BLOCKS)})")
        kw = dict(stride=stride, dilation=dilation, act_layer=get_act_layer(spec.act) if spec.act else act,
                  norm_layer=norm, drop_path=drop_path, pad_type=pad_type)
        if spec.kind == "cn":
            return ConvBnAct(in_chs, out_chs, spec.kernel_size, skip=spec.skip, **kw)
        se = None
        if spec.se_ratio and se_layer is not None:
            def se(width: int, _in: int = in_chs, _r: float = spec.se_ratio) -> nn.Module:
                return se_layer(width, _in, _r)
        if spec.kind == "ds":
            return DepthwiseSeparable(in_chs, out_chs, spec.kernel_size, pw_act=spec.pw_act or not linear_bottleneck,
                                      skip=spec.skip, se_layer=se, **kw)
        if spec.kind == "ir":
            return InvertedResidual(in_chs, out_chs, spec.kernel_size, exp_ratio=spec.exp_ratio, skip=spec.skip,
                                    se_layer=se, linear_bottleneck=linear_bottleneck, **kw)
        return FusedMBConv(in_chs, out_chs, spec.kernel_size, exp_ratio=spec.exp_ratio, skip=spec.skip, se_layer=se, **kw)

    def _init_weights(self) -> None:
        # The TF reference init of MnasNet/EfficientNet: conv ~ N(0, 2/fan_out) with fan_out per group,
        # dense ~ U(-1/sqrt(out), 1/sqrt(out)), BN as identity.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.weight.shape[0])
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.act1(self.bn1(self.conv_stem(x))))
        if not self.head_after_pool:
            x = self.act2(self.bn2(self.conv_head(x)))
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3), keepdim=True)
        if self.head_after_pool:
            x = self.act2(self.conv_head(x))
        x = x.flatten(1)
        if self.drop_rate > 0:
            x = F.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        """Feature maps at ``indices`` of ``feature_info`` (the ends of the stages before each downsampling)."""
        wanted = {self._level_ends[i] for i in indices}
        out = []
        x = self.act1(self.bn1(self.conv_stem(x)))
        if -1 in wanted:
            out.append(x)
        for i, stage in enumerate(self.blocks):
            if i > max(wanted):
                break
            x = stage(x)
            if i in wanted:
                out.append(x)
        return out

    def prune_for_features(self, max_index: int) -> list[str]:
        """Drop the head and the stages after feature level ``max_index``; return the removed prefixes."""
        last = self._level_ends[max_index]
        removed = ["conv_head", "bn2", "classifier"] + [f"blocks.{i}" for i in range(last + 1, len(self.blocks))]
        self.conv_head, self.bn2, self.act2, self.classifier = nn.Identity(), nn.Identity(), nn.Identity(), nn.Identity()
        del self.blocks[last + 1:]
        return removed


# ------------------------------------------------------------------------------------------ converters
def timm_converter(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """timm names every tensor as we do, except its squeeze-excite convs (conv_reduce/conv_expand)."""
    out = {}
    for k, v in state_dict.items():
        k = re.sub(r"\.se\.conv_reduce\.", ".se.fc1.", k)
        out[re.sub(r"\.se\.conv_expand\.", ".se.fc2.", k)] = v
    return out


def _rename(state_dict: dict[str, torch.Tensor], prefixes: dict[str, str]) -> dict[str, torch.Tensor]:
    """Rename keys by their longest module prefix found in ``prefixes``; unknown keys are kept (and reported
    by load_weights as not in the model)."""
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            head = ".".join(parts[:cut])
            if head in prefixes:
                key = ".".join([prefixes[head], *parts[cut:]])
                break
        out[key] = value
    return out


def torchvision_converter(
    nested: bool, container: Callable[[nn.Module], str] = lambda b: "block", split_last: bool = False,
    head: str = "conv", classifier: str = "classifier.1",
) -> Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]:
    """A key map from torchvision's positional names: ``features.0`` is the stem; blocks follow as
    ``features.{1+n}`` (MobileNetV2/V3, ``nested=False``) or ``features.{1+stage}.{j}`` (EfficientNet);
    inside a block, unit k of our ``units()`` is ``{container}.{k}`` (conv ``.0``, BN ``.1``; MobileNetV2 keeps
    its last conv and BN as two positions, ``split_last``); after the blocks comes the head conv
    (``head="conv"``) or MobileNetV3's linear head (``head="linear"``, reshaped to a 1x1 conv)."""

    def convert(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
        prefixes = {"features.0.0": "conv_stem", "features.0.1": "bn1"}
        n = 1
        for i, stage in enumerate(model.blocks):
            for j, block in enumerate(stage):
                tv = f"features.{i + 1}.{j}" if nested else f"features.{n}"
                inner = container(block)
                units = block.units()
                if not inner:  # the block is itself one conv-BN(-act) unit: conv at .0, BN at .1
                    (conv, bn), = units
                    prefixes[f"{tv}.0"], prefixes[f"{tv}.1"] = f"blocks.{i}.{j}.{conv}", f"blocks.{i}.{j}.{bn}"
                    units = []
                for k, unit in enumerate(units):
                    tv_k = f"{tv}.{inner}.{k}"
                    ours = f"blocks.{i}.{j}"
                    if unit == "se":
                        prefixes[tv_k] = f"{ours}.se"
                    elif split_last and k == len(units) - 1:
                        prefixes[tv_k], prefixes[f"{tv}.{inner}.{k + 1}"] = f"{ours}.{unit[0]}", f"{ours}.{unit[1]}"
                    else:
                        prefixes[f"{tv_k}.0"], prefixes[f"{tv_k}.1"] = f"{ours}.{unit[0]}", f"{ours}.{unit[1]}"
                n += 1
        last = len(model.blocks) + 1 if nested else n
        state = dict(state_dict)
        if head == "conv":
            prefixes.update({f"features.{last}.0": "conv_head", f"features.{last}.1": "bn2", classifier: "classifier"})
        else:
            prefixes.update({"classifier.0": "conv_head", classifier: "classifier"})
            if "classifier.0.weight" in state:
                state["classifier.0.weight"] = state["classifier.0.weight"].flatten(1)[:, :, None, None]
        return _rename(state, prefixes)

    return convert
