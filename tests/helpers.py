"""Helpers for reference-equivalence tests."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def perturb_(model: nn.Module, seed: int = 0, scale: float = 0.1) -> nn.Module:
    """Move every float tensor of ``model`` away from its initial value, so that zero-initialised gammas,
    unit norm weights and empty running statistics all take part in an equivalence check."""
    g = torch.Generator().manual_seed(seed)
    for name, t in model.state_dict().items():
        if not t.is_floating_point():
            continue
        noise = torch.randn(t.shape, generator=g, dtype=torch.float32).to(t.dtype)
        if name.endswith("running_var"):
            t.copy_(torch.rand(t.shape, generator=g) + 0.5)
        elif name.endswith("running_mean"):
            t.copy_(noise * scale)
        else:
            std = float(t.float().std()) if t.numel() > 1 else 0.0
            t.add_(noise * scale * (std if std > 0 else 1.0))
    return model


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs(model: nn.Module, x: torch.Tensor) -> float:
    """Multiply-accumulates of one forward pass (torch's FLOP counter counts 2 FLOPs per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2


def strict_load(record_property, model: nn.Module, state: dict, source: str) -> int:
    """``load_weights`` strictly (it raises, listing the keys, on any name or shape that does not match) and record
    how many of the model's tensors it filled (BatchNorm counters aside); returns that count."""
    import paperzoo as pz

    pz.load_weights(model, state, source=source)
    filled = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    assert filled
    record_property(f"num_tensors_loaded_strictly_from_{source}", len(filled))
    return len(filled)
