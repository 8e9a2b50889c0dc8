"""MicroNet (Li et al., 2020): the official configurations' cost table and the Dynamic Shift-Max equation.

No library implements MicroNet; the checks are the official repository's parameter and MAdds table
(README: M0-M3 = 1.0/1.8/2.4/2.6M parameters, 4/6/12/21M MAdds) and eq. 6 evaluated by hand."""
from __future__ import annotations

import pytest
import torch
from helpers import macs, n_params

import paperzoo as pz
from paperzoo.models.classification.micronet import ChannelShuffle, DynamicShiftMax, shuffle_index


def madds(model: torch.nn.Module, size: int = 224) -> float:
    """Conv and FC multiply-adds plus Dynamic Shift-Max's K * J multiplies per output element."""
    extra = []

    def hook(m: DynamicShiftMax, inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        extra.append(m.k * 2 * out.numel())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, DynamicShiftMax)]
    total = macs(model.eval(), torch.randn(1, 3, size, size)) + sum(extra)
    for h in handles:
        h.remove()
    return total


@pytest.mark.paper("micronet")
@pytest.mark.parametrize("name, params_m, madds_m", [
    ("micronet_m0", 1.0, 4), ("micronet_m1", 1.8, 6), ("micronet_m2", 2.4, 12), ("micronet_m3", 2.6, 21),
])
def test_cost_matches_official_table(name: str, params_m: float, madds_m: int) -> None:
    """Parameters to the printed digit; MAdds within 7% (M0 4.05, M1 6.12, M2 12.7, M3 20.8)."""
    model = pz.create_model(name)
    assert round(n_params(model) / 1e6, 1) == params_m
    assert abs(madds(model) / 1e6 - madds_m) / madds_m < 0.07


@pytest.mark.paper("micronet")
@pytest.mark.parametrize("k", [1, 2])
def test_dynamic_shift_max_equation(k: int) -> None:
    """Eq. 6 on a 1x8x2x2 input with G = 2 groups, written out channel by channel:
    y_i = max_k (a^k_{i,0} x_i + a^k_{i,1} x_{C(i)}), C(i) = next group, next position in the group."""
    torch.manual_seed(0)
    dsm = DynamicShiftMax(8, groups=2, k=k, reduction=2, init_a=(1.0, 0.5), init_b=(0.0, 0.5)).eval()
    for p in dsm.parameters():
        p.data.normal_(0, 0.5)
    x = torch.randn(1, 8, 2, 2)
    pooled = x.mean((2, 3))
    s = torch.clamp(dsm.fc2(torch.relu(dsm.fc1(pooled))) / 6 + 0.5, 0, 1)  # hard sigmoid
    a = (s - 0.5) * 4  # range [-2, 2] (act_max = 2)
    init = [(1.0, 0.0), (0.5, 0.5)]
    expected = torch.empty_like(x)
    for i in range(8):
        g, p = divmod(i, 4)
        src = ((g + 1) % 2) * 4 + (p + 1) % 4
        fusions = [(a[0, (2 * kk) * 8 + i] + init[kk][0]) * x[0, i] + (a[0, (2 * kk + 1) * 8 + i] + init[kk][1]) * x[0, src]
                   for kk in range(k)]
        expected[0, i] = torch.stack(fusions).max(0).values
    with torch.no_grad():
        assert torch.allclose(dsm(x), expected, atol=1e-6)


def test_dynamic_shift_max_starts_near_identity() -> None:
    """With zero hyper-function weights the coefficients are the initial values: K = 1, a = (1, 0) is x."""
    dsm = DynamicShiftMax(12, groups=3, k=1)
    torch.nn.init.zeros_(dsm.fc2.weight)
    torch.nn.init.zeros_(dsm.fc2.bias)
    x = torch.randn(2, 12, 3, 3)
    assert torch.allclose(dsm(x), x)


def test_channel_shuffle_is_shufflenets() -> None:
    """shuffle with g groups: (g, C/g) -> (C/g, g); two shuffles compose into one permutation."""
    assert shuffle_index(6, 2).tolist() == [0, 3, 1, 4, 2, 5]
    x = torch.arange(12.0).view(1, 12, 1, 1)
    once = ChannelShuffle(12, 3)(ChannelShuffle(12, 4)(x))
    assert torch.equal(ChannelShuffle(12, 4, 3)(x), once)


def test_micro_factorized_convs_are_sparse() -> None:
    """Sec. 3: the pointwise factors are grouped 1x1 convs (C_in * C_out / G weights) and the depthwise
    kxk conv is a kx1 and a 1xk depthwise conv (2k weights per channel instead of k^2)."""
    model = pz.create_model("micronet_m1")
    block = model.blocks[4]  # Micro-Block-B/C: 32 -> 192 -> 64 with groups 8 and 8
    assert block.layers.pw1[0].groups == 8 and block.layers.pw1[0].weight.numel() == 32 * 192 // 8
    dw = block.layers.dw
    assert dw[0].kernel_size == (5, 1) and dw[2].kernel_size == (1, 5) and dw[0].groups == 192


def test_features_and_kwargs() -> None:
    m = pz.create_model("micronet_m0", num_classes=5, in_chans=1, drop_path_rate=0.1)
    assert m(torch.randn(2, 1, 64, 64)).shape == (2, 5)
    f = pz.create_model("micronet_m2", features_only=True)
    feats = f(torch.randn(1, 3, 64, 64))
    assert [t.shape[1] for t in feats] == f.feature_info.channels() == [12, 24, 64, 768]
    assert [64 // t.shape[-1] for t in feats] == f.feature_info.reduction() == [4, 8, 16, 32]
