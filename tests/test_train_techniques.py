"""The training techniques of section C as engine options: config keys, composition, exact resume."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import paperzoo as pz
from paperzoo.config import apply_overrides
from paperzoo.errors import ConfigError, PaperzooError
from paperzoo.optim import SAM, Lookahead
from paperzoo.train import TrainConfig, Trainer
from paperzoo.train.callbacks import EpochEnd
from paperzoo.train.callbacks.dropblock import DropBlockSchedule
from paperzoo.train.callbacks.mixing import Mixing
from paperzoo.train.callbacks.swa import SWA
from paperzoo.train.tricks import apply_bag_of_tricks, zero_gamma_init

EVERYTHING = ["optimizer=adamw", "lr=0.01", "weight_decay=0.05", "lookahead=true", "lookahead.k=3", "sam.rho=0.05",
              "mixup.alpha=0.2", "cutmix.alpha=1.0", "dropblock.drop_prob=0.2", "dropblock.block_size=3",
              "randaugment.n=2", "randaugment.m=9", "schedule=sgdr", "sgdr.t0=0.5", "warmup_epochs=0.25",
              "label_smoothing=0.1", "swa.start=1", "swa.lr=0.005", "zero_gamma=true", "weight_decay_norm=0.05"]


def _cfg(*overrides: str, **kw) -> TrainConfig:
    return apply_overrides(TrainConfig(epochs=2, batch_size=16, lr=0.05, log_every=2), [*overrides, *(f"{k}={v}" for k, v in kw.items())])


def test_config_keys_compose_sam_over_lookahead_over_adamw() -> None:
    cfg = _cfg(*EVERYTHING)
    assert cfg.lookahead.enabled and cfg.lookahead.k == 3 and cfg.sam.rho == 0.05 and cfg.swa.start == 1
    t = Trainer(pz.create_model("resnet20_cifar", num_classes=8), [(torch.zeros(3, 16, 16), 0)] * 32, config=cfg, quiet=True)
    assert isinstance(t.optimizer, SAM) and isinstance(t.optimizer.inner, Lookahead)
    assert isinstance(t.optimizer.inner.inner, torch.optim.AdamW)
    assert len(t.callback(DropBlockSchedule).blocks) == 6  # the blocks of the last two stages of a ResNet-20
    assert t.optimizer.param_groups is t.optimizer.inner.inner.param_groups
    with pytest.raises(PaperzooError, match="unknown optimizer .adamx."):
        Trainer(pz.create_model("resnet20_cifar"), [(torch.zeros(3, 8, 8), 0)] * 32, config=_cfg(optimizer="adamx"))
    with pytest.raises(ConfigError, match="SAM with amp=fp16"):
        Trainer(pz.create_model("resnet20_cifar"), [(torch.zeros(3, 8, 8), 0)] * 32, config=_cfg("sam.rho=0.1", amp="fp16"))


def test_bag_of_tricks_turns_on_the_papers_tricks() -> None:
    cfg = apply_bag_of_tricks(_cfg(epochs=120, schedule="step", decay_bias_and_norm=True))
    assert (cfg.warmup_epochs, cfg.schedule, cfg.zero_gamma, cfg.decay_bias_and_norm) == (5.0, "cosine", True, False)
    assert (cfg.label_smoothing, cfg.mixup.alpha) == (0.1, 0.2)
    assert apply_bag_of_tricks(cfg) == cfg  # idempotent: a resumed run expands to the same recipe
    t = Trainer(pz.create_model("resnet20_cifar", num_classes=8), [(torch.zeros(3, 8, 8), 0)] * 32,
                config=_cfg("bag_of_tricks=true"), quiet=True)
    assert t.cfg.zero_gamma and t.callback(Mixing) is not None and t.task.label_smoothing == 0.1


@pytest.mark.paper("bag-of-tricks")
def test_zero_gamma_zeroes_the_last_norm_of_every_residual_block(record_property) -> None:
    """Zero-gamma (bag of tricks, section 3.1): the last BN of each residual block starts at gamma = 0."""
    cifar = pz.create_model("resnet20_cifar")
    zeroed = zero_gamma_init(cifar)
    record_property("num_zeroed_norms_resnet20", zeroed)
    assert zeroed == 9
    for block in (b for stage in cifar.stages for b in stage):
        assert torch.all(block.bn2.weight == 0) and torch.all(block.bn1.weight == 1)
    assert zero_gamma_init(pz.create_model("plain20_cifar")) == 0  # no shortcut, nothing to zero
    r50 = pz.create_model("resnet50")
    zeroed = zero_gamma_init(r50)
    record_property("num_zeroed_norms_resnet50", zeroed)
    assert zeroed == 16
    assert all(torch.all(b.bn3.weight == 0) for stage in r50.stages for b in stage)
    x = torch.randn(2, 3, 32, 32)
    block = cifar.layer1[0].eval()
    inp = torch.relu(x[:, :1].expand(2, 16, 32, 32))
    record_property("max_abs_diff_zero_gamma_block_vs_identity", float((block(inp) - inp).detach().abs().max()))
    torch.testing.assert_close(block(inp), inp)


def test_everything_at_once_resumes_exactly(tiny_shapes, tmp_path: Path) -> None:
    """SAM over Lookahead over AdamW with mixup+CutMix, drop-path, DropBlock, RandAugment, SGDR, label
    smoothing and SWA: resuming from a mid-epoch checkpoint in a fresh process state gives identical
    weights and an identical SWA average."""
    train, val = tiny_shapes
    cfg = dict(epochs=3, checkpoint_every=3, keep_checkpoints=100)

    def trainer(out: Path) -> Trainer:
        model = pz.create_model("resnet20_cifar", num_classes=8, drop_path_rate=0.2)
        return Trainer(model, train, val, _cfg(*EVERYTHING, **cfg), out=out, quiet=True)

    torch.manual_seed(1)
    full = trainer(tmp_path / "a")
    full.fit()
    assert full.callback(SWA).n_averaged == 2 and "swa_val_acc" in full.history[-1]
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "a" / "checkpoints" / "step-000000006", tmp_path / "b" / "checkpoints" / "step-000000006")
    torch.manual_seed(123)  # a restarted process starts from unrelated RNG state
    resumed = trainer(tmp_path / "b")
    resumed.fit(resume=True)
    for (k, v), w in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(v, w), k
    for (k, v), w in zip(full.callback(SWA).average.state_dict().items(), resumed.callback(SWA).average.state_dict().values()):
        assert torch.equal(v, w), k
    assert full.optimizer.inner.fast_steps == resumed.optimizer.inner.fast_steps == 12
    assert full.history[-1]["swa_val_loss"] == resumed.history[-1]["swa_val_loss"]


def test_dropblock_keep_prob_is_scheduled(tiny_shapes) -> None:
    train, _ = tiny_shapes
    t = Trainer(pz.create_model("resnet20_cifar", num_classes=8), train,
                config=_cfg("dropblock.drop_prob=0.3", "dropblock.block_size=3", epochs=2), quiet=True)
    ramps = []
    t.callbacks.append(EpochEnd(lambda tr, row: ramps.append(tr.callback(DropBlockSchedule).blocks[0].ramp)))
    t.fit()
    assert ramps == pytest.approx([3 / 8, 7 / 8])  # set before each step: step / total_steps


@pytest.mark.paper("bag-of-tricks")
def test_training_ladder_adds_one_trick_per_rung(tmp_path: Path, record_property) -> None:
    """The ladder's rungs are the paper's training refinements, cumulative, and each trains (smoke size)."""
    from paperzoo.reproduce.bag_of_tricks import LADDER_SMOKE, LadderConfig, ladder, run_training_ladder

    rungs = ladder(120)
    record_property("num_rungs", len(rungs))
    record_property("num_rungs_extending_previous", sum(a == b[:len(a)] for (_, a), (_, b) in zip(rungs, rungs[1:])))
    assert [n for n, _ in rungs] == ["baseline (step decay)", "+ linear warmup", "+ zero gamma", "+ no bias decay",
                                     "+ cosine decay", "+ label smoothing", "+ mixup"]
    assert all(a == b[:len(a)] for (_, a), (_, b) in zip(rungs, rungs[1:]))  # each rung keeps the previous tricks
    last = apply_overrides(TrainConfig(epochs=120), rungs[-1][1])
    assert (last.warmup_epochs, last.zero_gamma, last.decay_bias_and_norm, last.schedule, last.label_smoothing,
            last.mixup.alpha) == (5.0, True, False, "cosine", 0.1, 0.2)
    result = run_training_ladder(tmp_path, LadderConfig(**LADDER_SMOKE))
    record_property("num_rungs_trained", len(result["rows"]))
    assert len(result["rows"]) == 7 and (tmp_path / result["figure"]).exists()


def test_show_lists_code_of_module_level_entry_points(capsys) -> None:
    """`paperzoo show` finds the file of an entry point that is an attribute of a module (train/callbacks/swa.py's SWA)."""
    from paperzoo.cli import main

    main(["show", "swa"])
    assert "paperzoo/train/callbacks/swa.py" in capsys.readouterr().out
