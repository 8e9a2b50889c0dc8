"""The evaluators' ``synchronize`` under torch.distributed (gloo, two processes): each rank sees half the
images, and after synchronising both report what one process seeing everything reports."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from paperzoo.metrics import PCK, CocoEvaluator, MeanIoU

SRC = Path(__file__).resolve().parents[2] / "src"

# the batches: 4 images; rank r evaluates images r and r + 2 (DistributedSampler's order), rank 1 also a
# repeat of image 0 (the sampler's padding), which the COCO evaluator must count once
BATCHES = textwrap.dedent('''
    import torch
    from torchvision import tv_tensors

    def batches():
        g = torch.Generator().manual_seed(0)
        out = []
        for i in range(4):
            xy = torch.randint(0, 60, (3, 2), generator=g).float()
            boxes = torch.cat([xy, xy + torch.randint(8, 40, (3, 2), generator=g)], 1)
            kp = boxes[:, None, :2] + torch.rand(3, 4, 2, generator=g) * 8
            t = {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(100, 100)),
                 "labels": torch.randint(1, 3, (3,), generator=g), "image_id": i, "iscrowd": torch.zeros(3, dtype=torch.long),
                 "keypoints": tv_tensors.KeyPoints(kp, canvas_size=(100, 100)),
                 "visibility": torch.randint(0, 3, (3, 4), generator=g)}
            noisy = boxes + torch.randn(3, 4, generator=g) * 3
            pred = {"boxes": noisy, "scores": torch.rand(3, generator=g), "labels": t["labels"].clone(),
                    "keypoints": kp + torch.randn(3, 4, 2, generator=g) * 2}
            seg_t = torch.randint(0, 3, (1, 6, 6), generator=g)
            seg_p = torch.randn(1, 3, 6, 6, generator=g)
            out.append((pred, t, seg_p, seg_t))
        return out
''')

WORKER = BATCHES + textwrap.dedent('''
    import json, sys
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from paperzoo.metrics import PCK, CocoEvaluator, MeanIoU

    def run(rank, init, out):
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
        evs = [CocoEvaluator(), MeanIoU(3), PCK()]
        data = batches()
        mine = [rank, rank + 2] + ([0] if rank == 1 else [])
        for i in mine:
            pred, t, seg_p, seg_t = data[i]
            evs[0].update([pred], (torch.zeros(1, 3, 100, 100), [t]))
            if i != 0 or rank == 0:  # sums over pixels / keypoints: feed each image once
                evs[1].update(seg_p, (None, seg_t))
                evs[2].update([pred], (None, [t]))
        result = {}
        for ev in evs:
            ev.synchronize()
            result.update(ev.compute())
        if rank == 0:
            with open(out, "w") as f:
                json.dump(result, f)
        dist.destroy_process_group()

    if __name__ == "__main__":
        mp.spawn(run, args=(sys.argv[1], sys.argv[2]), nprocs=2)
''')


@pytest.mark.slow  # three Python processes importing torch: ~40 s on two shared cores
def test_synchronize_across_two_processes_equals_one(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "result.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, str(script), f"file://{tmp_path / 'init'}", str(out)],
                          capture_output=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    two = json.loads(out.read_text())
    namespace: dict = {}
    exec(BATCHES, namespace)
    evs = [CocoEvaluator(), MeanIoU(3), PCK()]
    for pred, t, seg_p, seg_t in namespace["batches"]():
        evs[0].update([pred], (torch.zeros(1, 3, 100, 100), [t]))
        evs[1].update(seg_p, (None, seg_t))
        evs[2].update([pred], (None, [t]))
    one = {k: v for ev in evs for k, v in ev.compute().items()}
    assert one.keys() == two.keys()
    assert 0 < one["map_50"] < 1 and 0 < one["miou"] < 1 and 0 < one["pck"] < 1  # not degenerate
    for k in one:
        assert abs(one[k] - two[k]) < 1e-12, (k, one[k], two[k])
