"""Segment Anything in miniature: promptable segmentation, ambiguity-aware outputs, and amortised prompting
(the paper's sec. 3, Fig. 4 and sec. 7.1 / Fig. 9).

The paper's claims tested here: (1) predicting three masks for one point and back-propagating only the best
("ambiguity-aware") gives a much better best-of-three mask than a single-output model trained the same way;
(2) a box, which is less ambiguous than one point, gives better masks; (3) once the image is embedded, a prompt is
answered in a small fraction of the embedding's time (the encoder runs once, the prompt encoder and mask decoder
per prompt: ~50 ms in a browser against the image encoder's ~0.15 s on an A100). In miniature small SAMs (a
4-block ViT on 64 px scenes, a 64-wide two-way decoder) are trained from scratch on the synthetic scenes'
instance masks with the paper's loss (focal + dice 20:1, IoU-head MSE), two seeds per arm; latency is timed on the
released ViT-B architecture (random weights) at 1024 px.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..models.segmentation.sam import SamPredictor, build_sam
from ..registry import create_model
from ..tasks.promptable import PromptableSegmentationTask, interior_points
from ..train import evaluate
from ._kit import Data, all_of, beats, fit, per_seed, plots, run_arms, seeded, spread
from .report import Report

CLAIM = ("A promptable segmenter answers points and boxes with masks; three ambiguity-aware outputs (only the best "
         "one's loss back-propagated) beat a single output, boxes beat single points, and after one image embedding "
         "each prompt costs a small fraction of it (~50 ms per prompt against the ViT-H encoder's ~0.15 s on an A100) "
         "(Kirillov et al., sec. 3, Fig. 4, sec. 7.1).")


@dataclass
class Config:
    data: Data = field(default_factory=lambda: Data(
        kind="instances", image_size=64, train_size=2000, test_size=200, preset="easy", scale=(0.25, 0.55),
        knobs={"min_objects": 1, "max_objects": 3, "occlusion": 0.2}))
    embed_dim: int = 64
    depth: int = 4
    patch: int = 8  # 8 x 8 tokens at 64 px (16 px patches and 64 x 64 tokens at 1024 px in the paper)
    window: int = 4
    prompt_dim: int = 64
    steps: int = 500
    batch_size: int = 8
    lr: float = 2e-3
    latency_model: str = "sam_vit_b"  # the released architecture whose encoder/decoder split is timed ("" : the miniature)
    latency_prompts: int = 16
    latency_repeats: int = 1
    seeds: tuple[int, ...] = (0, 1)


SMOKE = dict(data=dict(train_size=16, test_size=8), embed_dim=32, depth=2, prompt_dim=32, steps=3, batch_size=4,
             latency_model="", latency_prompts=2, latency_repeats=1, seeds=(0,))
FULL = dict(data=dict(image_size=256, train_size=20000, test_size=1000, knobs={"max_objects": 8}), embed_dim=192,
            depth=8, patch=16, window=8, prompt_dim=128, steps=20000, batch_size=16, seeds=(0, 1, 2))


def _small(cfg: Config):
    return build_sam(cfg.embed_dim, cfg.depth, 4, (cfg.depth // 2 - 1, cfg.depth - 1), img_size=cfg.data.image_size,
                     patch_size=cfg.patch, window_size=cfg.window, prompt_dim=cfg.prompt_dim, decoder_heads=4,
                     decoder_mlp_dim=4 * cfg.prompt_dim)


@torch.no_grad()
def latency(model, prompts: int, repeats: int, seed: int) -> dict[str, float]:
    """Milliseconds of one image embedding and of one point prompt answered on it (a batch of ``prompts`` prompts
    timed together, divided), medians of ``repeats``."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    size = model.img_size
    image = torch.rand(3, size, size, generator=g) * 255
    pred = SamPredictor(model)
    enc, dec = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pred.set_image(image)
        enc.append(1000 * (time.perf_counter() - t0))
        pts = torch.rand(prompts, 1, 2, generator=g) * size
        t0 = time.perf_counter()
        pred.predict(pts, torch.ones(prompts, 1), multimask_output=True)
        dec.append(1000 * (time.perf_counter() - t0) / prompts)
    return {"embed_ms": sorted(enc)[len(enc) // 2], "prompt_ms": sorted(dec)[len(dec) // 2]}


def _examples(out: Path, model, test, n: int = 4) -> str:
    """Image with the prompt point, the three point masks, the box mask, for the first ``n`` instances."""
    from torchvision.utils import draw_segmentation_masks

    plt = plots.pyplot()
    task = PromptableSegmentationTask()
    images, target = task.collate([test[i] for i in range(min(len(test), 8))])
    masks, index = target["masks"][:n], target["image_index"][:n]
    model.eval()
    with torch.no_grad():
        emb, scale = task._embed(model, images)
        pts = interior_points(masks)[:, None]
        low, iou = model.decode(emb[index], pts * scale, torch.ones(len(masks), 1, dtype=torch.long))
        multi = task._masks(model, low, tuple(masks.shape[-2:]), scale) > 0
        lowb, _ = model.decode(emb[index], boxes=target["boxes"][:n] * scale, multimask_output=False)
        box = task._masks(model, lowb, tuple(masks.shape[-2:]), scale)[:, 0] > 0
    fig, axes = plt.subplots(len(masks), 6, figsize=(9, 1.6 * len(masks)), squeeze=False)
    for r in range(len(masks)):
        img = (images[index[r]] * 255).to(torch.uint8)
        panels = [("truth", masks[r]), *((f"mask {k + 1} (IoU^ {iou[r, k]:.2f})", multi[r, k]) for k in range(3)),
                  ("box prompt", box[r])]
        axes[r][0].imshow(img.permute(1, 2, 0).numpy())
        axes[r][0].plot(*pts[r, 0].tolist(), "r+", ms=10)
        axes[r][0].set_title("point", fontsize=7)
        for c, (title, m) in enumerate(panels, 1):
            axes[r][c].imshow(draw_segmentation_masks(img, m[None], alpha=0.6, colors="yellow").permute(1, 2, 0).numpy())
            axes[r][c].set_title(title, fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return plots._save(fig, out, "sam_examples.png")


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()
    recipe = dict(batch_size=cfg.batch_size, optimizer="adamw", lr=cfg.lr, weight_decay=0.1, schedule="cosine")

    def arm(multimask: bool):
        def train_one(seed: int):
            task = PromptableSegmentationTask(multimask=multimask, seed=seed)
            model = seeded(seed, lambda: _small(cfg))
            r = fit("sam", model, train, None, seed=seed, steps=cfg.steps, task=task, warmup_fraction=0.05,
                    clip_grad=1.0, **recipe)
            r.metrics.update(evaluate(model, test, task, batch_size=16))
            return r
        return train_one

    runs = run_arms({"3 outputs (ambiguity-aware)": arm(True), "1 output": arm(False)}, cfg.seeds)
    amb, one = runs["3 outputs (ambiguity-aware)"], runs["1 output"]
    pct = lambda rs, key: [100 * r.metrics[key] for r in rs]  # noqa: E731
    oracle, single = pct(amb, "miou_point_oracle"), pct(one, "miou_point_single")
    ranked, box = pct(amb, "miou_point"), pct(amb, "miou_box")

    lat = []
    for seed in cfg.seeds:
        model = seeded(seed, lambda: create_model(cfg.latency_model)) if cfg.latency_model else amb[0].model
        lat.append(latency(model, cfg.latency_prompts, cfg.latency_repeats, seed))
    embed_ms, prompt_ms = [x["embed_ms"] for x in lat], [x["prompt_ms"] for x in lat]
    decision = all_of(
        [beats(oracle, single, a_name="best of 3 outputs", b_name="single-output model", metric="one-point mIoU (%)"),
         beats(box, ranked, a_name="box prompt", b_name="one point (IoU-ranked)", metric="mIoU (%)"),
         beats(prompt_ms, embed_ms, a_name="one prompt", b_name="one image embedding", metric="ms",
               lower_is_better=True)],
        claim="ambiguity-aware outputs beat a single output, boxes beat points, and a prompt is cheaper than an embedding")
    rows = [
        {"arm / prompt": "3 outputs: best of 3 (oracle), one point", "mIoU (%)": spread(oracle), "per seed": per_seed(oracle)},
        {"arm / prompt": "3 outputs: ranked by the IoU head, one point", "mIoU (%)": spread(ranked), "per seed": per_seed(ranked)},
        {"arm / prompt": "3 outputs: box", "mIoU (%)": spread(box), "per seed": per_seed(box)},
        {"arm / prompt": "1 output: one point", "mIoU (%)": spread(single), "per seed": per_seed(single)},
        {"arm / prompt": "1 output: box", "mIoU (%)": spread(pct(one, "miou_box")), "per seed": per_seed(pct(one, "miou_box"))},
    ]
    where = cfg.latency_model or "the miniature"
    figures = [plots.bars(out, "sam_miou.png", {"best of 3": oracle, "IoU-ranked": ranked, "box": box, "1 output": single},
                          "one-point and box prompts on held-out scenes", ylabel="mIoU (%)"),
               plots.bars(out, "sam_latency.png", {"image embedding": embed_ms, "one prompt": prompt_ms},
                          f"{where}: CPU milliseconds", ylabel="ms"),
               _examples(out, amb[0].model, test)]
    return Report(
        slug="segment-anything",
        claim=CLAIM,
        setup=(f"Small SAMs (ViT of {cfg.depth} blocks, width {cfg.embed_dim}, {cfg.patch}-px patches, {cfg.window}x"
               f"{cfg.window} windows with global attention in two blocks; prompt width {cfg.prompt_dim}) trained from "
               f"scratch on {cfg.data.describe(train, test)}: {cfg.steps} AdamW steps of batch {cfg.batch_size}, lr "
               f"{cfg.lr:g} (cosine), seeds {list(cfg.seeds)}; every instance of a batch is prompted by one uniformly drawn "
               "point or (half the steps) its jittered box; focal + dice (20:1) and IoU MSE. The single-output arm trains "
               "its one mask on points as well. Test prompts: the most interior point of each instance and its exact "
               f"box. Latency: {where} on this CPU, one image embedding vs one point prompt ({cfg.latency_prompts} "
               f"prompts batched on one embedding), median of {cfg.latency_repeats}."),
        columns=["arm / prompt", "mIoU (%)", "per seed"],
        rows=rows,
        tables=[{"title": "Latency (ms, CPU)", "columns": ["seed", "image embedding", "one prompt"],
                 "rows": [{"seed": s, "image embedding": f"{x['embed_ms']:.1f}", "one prompt": f"{x['prompt_ms']:.2f}"}
                          for s, x in zip(cfg.seeds, lat)]}],
        decision=decision,
        differences=[
            "No SA-1B, no MAE pre-training, no data engine: small models trained from scratch on synthetic shapes.",
            "One prompting round per step (the paper simulates 11 interactive rounds with mask prompts).",
            "Latency on a CPU with random weights (the paper: an A100 for the encoder, a browser for the decoder).",
        ],
        figures=figures,
        results={"oracle": oracle, "ranked": ranked, "box": box, "single": single, "latency": lat},
    )
