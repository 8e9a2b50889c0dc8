"""Ours vs timm for one representative model per backbone paper, written to docs/benchmarks/*.md.

    python benchmarks/models.py                      # CPU, eager: every family below
    python benchmarks/models.py --family transformers --device cuda --batch-size 64

Each model and timm's model of the same architecture are measured alternately in one process
(``paperzoo.bench.bench``), so machine noise hits both alike; the ratio ours/timm is what the issue's
target (>= 1.0x) refers to. Absolute images/s on a shared 2-core machine are only indicative.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from paperzoo.bench import bench, ratios  # noqa: E402

FAMILIES = {
    "cnn": (160, 4, [
        "resnet50", "resnet50d", "seresnet50", "skresnet18", "resnetblur50", "resnetrs50", "resnetv2_50x1_bit",
        "vgg16_bn", "densenet121", "mobilenetv1_100", "mobilenetv2_100", "mobilenetv3_large_100", "efficientnet_b0",
        "efficientnetv2_s",
    ]),
    "transformers": (None, 2, [
        "vit_small_patch16_224", "vit_base_patch16_224", "deit_small_distilled_patch16_224",
        "swin_tiny_patch4_window7_224", "swinv2_tiny_window8_256", "convnext_tiny",
    ]),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=sorted(FAMILIES), action="append")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks")
    args = ap.parse_args()
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}"
               if args.device == "cpu" else torch.cuda.get_device_name(0) + f", torch {torch.__version__}")
    for family in args.family or sorted(FAMILIES):
        size, batch, names = FAMILIES[family]
        batch = args.batch_size or batch
        t0 = time.perf_counter()
        results = bench(names, vs="timm", batch_size=batch, image_size=size, device=args.device, iters=args.iters,
                        rounds=args.rounds, memory=args.device == "cpu" or args.device.startswith("cuda"))
        r = ratios(results)
        by = {(x.model, x.impl): x for x in results}
        lines = [
            f"| model | params (M) | GMACs | infer img/s ours | timm | train img/s ours | timm | peak MB ours | timm "
            "| ours/timm infer | ours/timm train |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name in names:
            o, t = by[(name, "paperzoo")], by[(name, "timm")]
            mem = lambda v: "n/a" if v is None else f"{v:.0f}"  # noqa: E731
            lines.append(f"| {name} | {o.params_m:.2f} | {o.gmacs:.3f} | {o.infer_img_s:.1f} | {t.infer_img_s:.1f} | "
                         f"{o.train_img_s:.1f} | {t.train_img_s:.1f} | {mem(o.peak_mem_mb)} | {mem(t.peak_mem_mb)} | "
                         f"{r[name]['infer']:.2f}x | {r[name]['train']:.2f}x |")
        size_txt = f"{size}x{size}" if size else "each model's native size"
        text = "\n".join([
            f"## {family} on {args.device}: ours vs timm", "",
            f"Machine: {machine}. Eager mode, batch {batch}, input {size_txt}, median of {args.rounds} alternating rounds "
            f"of {args.iters} steps; measured {time.strftime('%Y-%m-%d')} in {time.perf_counter() - t0:.0f} s by "
            f"`python benchmarks/models.py --family {family} --device {args.device}`.", "",
            *lines, "",
        ])
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"{family}-{args.device.split(':')[0]}.md"
        path.write_text(text)
        print(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
