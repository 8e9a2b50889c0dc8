"""Regularisers of section C: stochastic depth, DropBlock, Group Normalization and label smoothing, each
against its paper's equations and an independent implementation (timm, PyTorch)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import paperzoo as pz
from paperzoo.layers import DropPath, drop_block_2d, dropblock_gamma, group_norm_reference, linear_drop_rates
from paperzoo.train.losses import label_smoothing_reference


# ------------------------------------------------------------------------------------- stochastic depth
@pytest.mark.paper("stochastic-depth")
def test_linear_decay_rule(record_property) -> None:
    """Eq. 4: p_l = 1 - l/L (1 - p_L) survives; with p_L = 0.5 the last of 54 blocks survives half the time."""
    L, p_last = 54, 0.5
    survival = [1 - d for d in linear_drop_rates(1 - p_last, L)]
    record_property("max_abs_diff_survival_vs_eq_4",
                    max(abs(s - (1 - l / L * (1 - p_last))) for l, s in enumerate(survival, start=1)))
    record_property("survival_last_block", survival[-1])
    assert survival == pytest.approx([1 - l / L * (1 - p_last) for l in range(1, L + 1)])
    assert survival[-1] == pytest.approx(0.5) and survival[0] == pytest.approx(1 - 0.5 / 54)
    # the expected depth of the paper's 110-layer ResNet: (3L - 1) / 4 ~ 40 residual blocks of 54 (section 3)
    record_property("expected_depth_sum_of_survival", sum(survival))
    record_property("expected_depth_formula_3L_minus_1_over_4", (3 * L - 1) / 4)
    assert sum(survival) == pytest.approx((3 * L - 1) / 4)
    model = pz.create_model("resnet110_cifar", drop_path_rate=0.5)
    rates = [b.drop_path.drop_prob for stage in model.stages for b in stage]
    record_property("max_abs_diff_resnet110_drop_rates_vs_linear_rule",
                    max(abs(a - b) for a, b in zip(rates, linear_drop_rates(0.5, L))))
    assert rates == pytest.approx(linear_drop_rates(0.5, L))


@pytest.mark.paper("stochastic-depth")
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drop_path_drops_whole_samples_and_rescales_like_timm(p: float, record_property) -> None:
    """A sample's branch is dropped with probability p and kept ones are scaled by 1/(1-p), so E[out] = x;
    timm's DropPath has the same distribution; at eval time both are the identity."""
    from timm.layers import DropPath as TimmDropPath

    x = torch.ones(40_000, 3, 2, 2)
    ours, theirs = DropPath(p).train()(x), TimmDropPath(p).train()(x)
    record_property("target_drop_fraction", p)
    for name, out in (("ours", ours), ("timm", theirs)):
        per_sample = out.flatten(1)
        record_property(f"num_partially_dropped_samples_{name}", int((per_sample != per_sample[:, :1]).any(1).sum()))
        assert torch.all(per_sample == per_sample[:, :1])            # the whole sample, not single units
        dropped = (per_sample[:, 0] == 0).float().mean()
        record_property(f"empirical_drop_fraction_{name}", float(dropped))
        assert float(dropped) == pytest.approx(p, abs=4 * (p * (1 - p) / 40_000) ** 0.5)
        record_property(f"max_abs_diff_kept_vs_1_over_1_minus_p_{name}",
                        float((per_sample[per_sample[:, 0] > 0] - 1 / (1 - p)).abs().max()))
        assert torch.allclose(per_sample[per_sample[:, 0] > 0], torch.tensor(1 / (1 - p)))
        record_property(f"mean_output_{name}", float(out.mean()))
        assert float(out.mean()) == pytest.approx(1.0, abs=0.02)
    record_property("max_abs_diff_eval_output_vs_input", float((DropPath(p).eval()(x) - x).abs().max()))
    assert torch.equal(DropPath(p).eval()(x), x)


# ------------------------------------------------------------------------------------- DropBlock
@pytest.mark.paper("dropblock")
def test_gamma_is_equation_1(record_property) -> None:
    """gamma = (1 - keep_prob) / block_size^2 * feat_size^2 / (feat_size - block_size + 1)^2."""
    record_property("max_abs_diff_gamma_vs_eq_1", max(abs(dropblock_gamma(0.1, 7, 56, 56) - 0.1 / 49 * 56**2 / 50**2),
                                                      abs(dropblock_gamma(0.1, 1, 14, 14) - 0.1),
                                                      abs(dropblock_gamma(0.2, 9, 7, 7) - 0.2 / 49 * 49 / 1)))
    assert dropblock_gamma(0.1, 7, 56, 56) == pytest.approx(0.1 / 49 * 56**2 / 50**2)
    assert dropblock_gamma(0.1, 1, 14, 14) == pytest.approx(0.1)  # block_size 1: dropout
    assert dropblock_gamma(0.2, 9, 7, 7) == pytest.approx(0.2 / 49 * 49 / 1)  # block clipped to the map


@pytest.mark.paper("dropblock")
@pytest.mark.parametrize("block_size,p", [(3, 0.2), (5, 0.1)])
def test_dropblock_statistics_and_block_structure(block_size: int, p: float, record_property) -> None:
    """Seeds fall at rate gamma only where a whole block fits: an interior unit is dropped with probability
    1 - (1 - gamma)^(bs^2), a corner unit with probability gamma. Every dropped region is a union of whole
    bs x bs squares inside the map, masks differ per channel, and kept units are scaled by count/count_ones."""
    torch.manual_seed(0)
    x = torch.ones(256, 16, 32, 32)
    out = drop_block_2d(x, p, block_size)
    dropped = (out == 0).float()
    gamma = dropblock_gamma(p, block_size, 32, 32)
    bs = block_size
    interior = dropped[..., bs:-bs, bs:-bs].mean()
    record_property("empirical_interior_drop_fraction", float(interior))
    record_property("target_interior_drop_fraction", 1 - (1 - gamma) ** (bs * bs))
    assert float(interior) == pytest.approx(1 - (1 - gamma) ** (bs * bs), rel=0.05)
    corners = dropped[..., [0, 0, -1, -1], [0, -1, 0, -1]].mean()
    record_property("empirical_corner_drop_fraction", float(corners))
    record_property("target_corner_drop_fraction_gamma", gamma)
    assert 0.4 * gamma < float(corners) < 1.6 * gamma  # sampling seeds everywhere would give ~(bs//2+1)^2 gamma
    # union of whole squares: eroding by the block and dilating back gives the mask exactly
    full = -F.max_pool2d(-dropped, bs, stride=1)                  # 1 where a whole bs x bs square is dropped
    rebuilt = F.max_pool2d(F.pad(full, (bs - 1,) * 4), bs, stride=1)
    record_property("num_units_mask_vs_union_of_squares_differ", int((rebuilt != dropped).sum()))
    assert torch.equal(rebuilt, dropped)
    record_property("fraction_units_channel_0_vs_1_masks_differ", float((dropped[:, 0] != dropped[:, 1]).float().mean()))
    assert not torch.equal(dropped[:, 0], dropped[:, 1])          # one mask per channel (Algorithm 1)
    kept = out[out > 0]
    record_property("max_abs_diff_kept_vs_count_over_count_ones",
                    float((kept - x.numel() / float((out > 0).sum())).abs().max()))
    assert torch.allclose(kept, torch.tensor(x.numel() / float((out > 0).sum())))
    assert torch.equal(drop_block_2d(x, p, bs, training=False), x)


@pytest.mark.paper("dropblock")
def test_dropblock_matches_timm_in_expectation(record_property) -> None:
    """timm's DropBlock2d (per-channel masks) keeps E[out] = x and drops interior units at the same rate;
    it differs at the border, where it also lets blocks hang off the map."""
    from timm.layers import DropBlock2d as TimmDropBlock

    torch.manual_seed(1)
    x = torch.ones(128, 16, 32, 32)
    ours = drop_block_2d(x, 0.1, 5)
    theirs = TimmDropBlock(0.1, 5, couple_channels=False).train()(x)
    record_property("mean_output_ours", float(ours.mean()))
    record_property("mean_output_timm", float(theirs.mean()))
    assert float(ours.mean()) == pytest.approx(1.0, abs=1e-5) and float(theirs.mean()) == pytest.approx(1.0, abs=1e-5)
    a = (ours[..., 5:-5, 5:-5] == 0).float().mean()
    b = (theirs[..., 5:-5, 5:-5] == 0).float().mean()
    record_property("interior_drop_fraction_ours", float(a))
    record_property("interior_drop_fraction_timm", float(b))
    assert float(a) == pytest.approx(float(b), rel=0.05)


# ------------------------------------------------------------------------------------- GroupNorm
@pytest.mark.paper("groupnorm")
@pytest.mark.parametrize("shape,groups", [((2, 32, 7, 5), 32), ((3, 32, 6, 6), 8), ((2, 12, 5), 3), ((1, 16, 4, 4, 3), 1)])
def test_group_norm_reference_equals_torch(shape: tuple[int, ...], groups: int, record_property) -> None:
    """The paper's GN (Figure 3) against torch.nn.GroupNorm, with a non-trivial affine transform; G = C is
    Instance Norm and G = 1 Layer Norm (section 3.1)."""
    x = torch.randn(shape, dtype=torch.float64) * 3 + 1
    gn = torch.nn.GroupNorm(groups, shape[1], eps=1e-5).double()
    torch.nn.init.normal_(gn.weight)
    torch.nn.init.normal_(gn.bias)
    ours = group_norm_reference(x, groups, gn.weight, gn.bias, eps=1e-5)
    record_property("max_abs_diff_vs_torch_GroupNorm", float((ours - gn(x)).detach().abs().max()))
    torch.testing.assert_close(ours, gn(x), rtol=1e-12, atol=1e-12)


@pytest.mark.paper("groupnorm")
def test_group_norm_is_independent_of_the_batch(record_property) -> None:
    """GN's statistics are per sample: normalising a sample alone or inside a batch gives the same output."""
    x = torch.randn(8, 16, 5, 5)
    whole = group_norm_reference(x, 4)
    record_property("max_abs_diff_alone_vs_in_batch", float((group_norm_reference(x[3:4], 4) - whole[3:4]).abs().max()))
    torch.testing.assert_close(group_norm_reference(x[3:4], 4), whole[3:4])


# ------------------------------------------------------------------------------------- label smoothing
@pytest.mark.paper("label-smoothing")
@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.4])
def test_label_smoothing_reference_equals_torch(epsilon: float, record_property) -> None:
    """q' = (1 - eps) delta + eps / K against F.cross_entropy(label_smoothing=eps), for class indices and
    for soft targets (mixup's), and the paper's decomposition H(q', p) = (1 - eps) H(q, p) + eps H(u, p)."""
    torch.manual_seed(0)
    logits = torch.randn(16, 10, dtype=torch.float64) * 3
    labels = torch.randint(10, (16,))
    record_property("abs_diff_vs_torch_cross_entropy_class_indices",
                    float((label_smoothing_reference(logits, labels, epsilon)
                           - F.cross_entropy(logits, labels, label_smoothing=epsilon).float()).abs()))
    torch.testing.assert_close(label_smoothing_reference(logits, labels, epsilon),
                               F.cross_entropy(logits, labels, label_smoothing=epsilon).float(), rtol=1e-6, atol=1e-7)
    soft = torch.softmax(torch.randn(16, 10, dtype=torch.float64), 1)
    record_property("abs_diff_vs_torch_cross_entropy_soft_targets",
                    float((label_smoothing_reference(logits, soft, epsilon)
                           - F.cross_entropy(logits, soft, label_smoothing=epsilon).float()).abs()))
    torch.testing.assert_close(label_smoothing_reference(logits, soft, epsilon),
                               F.cross_entropy(logits, soft, label_smoothing=epsilon).float(), rtol=1e-6, atol=1e-7)
    uniform = torch.full((16, 10), 0.1, dtype=torch.float64)
    split = (1 - epsilon) * F.cross_entropy(logits, labels) + epsilon * F.cross_entropy(logits, uniform)
    record_property("abs_diff_vs_decomposition_1_minus_eps_Hqp_plus_eps_Hup",
                    float((label_smoothing_reference(logits, labels, epsilon) - split.float()).abs()))
    torch.testing.assert_close(label_smoothing_reference(logits, labels, epsilon), split.float(), rtol=1e-6, atol=1e-7)
