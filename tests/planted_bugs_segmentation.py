"""Mutation checks for section E's paper checks (FCN, U-Net, Segment Anything, MODNet): each entry plants one bug,
runs the check that must catch it, restores the file and prints CAUGHT or MISSED.

    PYTHONPATH=src python tests/planted_bugs_segmentation.py [INDEX ...]   # from the repository root

Not part of the suite (it edits source files while it runs)."""
import os
import shutil
import subprocess
import sys

FCN, UNET = "src/paperzoo/models/segmentation/fcn.py", "src/paperzoo/models/segmentation/unet.py"
SAM, MOD, MAT = ("src/paperzoo/models/segmentation/sam.py", "src/paperzoo/models/segmentation/modnet.py",
                 "src/paperzoo/tasks/matting.py")
T = "tests/models/"
PLANTS = [
    (FCN, 'w.reshape(w.shape[0], -1, k, k)', 'w.reshape(w.shape[0], k, k, -1).permute(0, 3, 1, 2)',
     T + "test_fcn.py::test_convolutionalized_vgg16_gives_the_classifier_scores", "fc6 flattened in the wrong order"),
    (FCN, 'self.aux_classifier(c3), size=size, mode="bilinear", align_corners=False',
     'self.aux_classifier(c3), size=size, mode="bilinear", align_corners=True',
     T + "test_fcn.py::test_fcn_resnet50_equals_torchvision", "aux head upsampled with align_corners"),
    (FCN, "center = factor - 1 if size % 2 == 1 else factor - 0.5", "center = factor - 1",
     T + "test_fcn.py::test_upsampling_starts_as_bilinear_interpolation", "bilinear kernel off-centre"),
    (FCN, "self.fc6 = nn.Conv2d(c, fc_dim, fc6_kernel)", "self.fc6 = nn.Conv2d(c, fc_dim, fc6_kernel - 1)",
     T + "test_fcn.py::test_fcn_vgg16_parameters_match_table1", "fc6 window 6x6"),
    (FCN, "up4 = up2 - 12", "up4 = up2 - 8", T + "test_fcn.py::test_crop_offsets_are_the_released_nets",
     "wrong deconvolution offset in the crop arithmetic"),
    (UNET, "d1, d2 = dist[0], dist[1]", "d1, d2 = dist[0], dist[0]",
     T + "test_unet.py::test_weight_map_two_cells_by_hand", "eq. 2 with d2 = d1"),
    (UNET, "pad = 1 if padding else 0", "pad = 1", T + "test_unet.py::test_valid_net_maps_572_to_388_through_fig1_sizes",
     "padded convolutions in the paper's net"),
    (UNET, 'x = F.pad(x, step, mode="reflect")', 'x = F.pad(x, step, mode="replicate")',
     T + "test_unet.py::test_overlap_tile_is_the_valid_net_on_a_mirrored_input", "overlap-tile replicates instead of mirroring"),
    (UNET, "generator=generator) * self.sigma", "generator=generator) * self.sigma * 0.8",
     T + "test_unet.py::test_elastic_deformation_statistics", "elastic displacements 20% too small"),
    (UNET, "return (ce * weights * keep).sum()", "return (ce * keep).sum()",
     T + "test_unet.py::test_weighted_cross_entropy_is_eq1", "eq. 1 ignores the weight map"),
    (SAM, "rel_pos[idx[:, None] - idx[None, :] + size - 1]", "rel_pos[idx[None, :] - idx[:, None] + size - 1]",
     T + "test_segment_anything.py::test_whole_model_equals_segment_anything", "relative positions reversed"),
    (SAM, "x = F.pad(x, (0, 0, 0, pw, 0, ph))", "x = F.pad(x, (0, 0, pw, 0, ph, 0))",
     T + "test_segment_anything.py::test_whole_model_equals_segment_anything", "windows padded at the top-left"),
    (SAM, "xy = (xy.float() + 0.5) /", "xy = (xy.float() + 0.0) /",
     T + "test_segment_anything.py::test_released_vit_b_decoder_equals_segment_anything", "prompts not shifted to pixel centres"),
    (SAM, "attention_downsample_rate, i == 0)", "attention_downsample_rate, i == 1)",
     T + "test_segment_anything.py::test_released_vit_b_decoder_equals_segment_anything", "positional encodings skipped in the wrong layer"),
    (SAM, "keep = slice(1, None) if multimask_output else slice(0, 1)", "keep = slice(0, 3) if multimask_output else slice(0, 1)",
     T + "test_segment_anything.py::test_whole_model_equals_segment_anything", "multimask output includes the single-output token"),
    (SAM, 'batched_nms(boxes.float(), out["iou_predictions"].float()', 'batched_nms(boxes.float(), out["stability_scores"].float()',
     T + "test_segment_anything.py::test_automatic_masks_equal_the_reference_generator", "NMS ranks by stability"),
    (SAM, "inner = (logits > threshold + offset)", "inner = (logits > threshold + 2 * offset)",
     T + "test_segment_anything.py::test_stability_score_by_hand", "stability cut-off doubled"),
    (SAM, "device=self.device) * s.repeat(2)", "device=self.device)",
     T + "test_segment_anything.py::test_predictor_embeds_once_and_equals_sam_predictor", "predictor boxes not scaled to the input"),
    (MOD, "torch.cat([self.bnorm(x[:, :self.split]), self.inorm(x[:, self.split:])], 1)",
     "torch.cat([self.inorm(x[:, :self.split]), self.bnorm(x[:, self.split:])], 1)",
     T + "test_modnet.py::test_outputs_equal_the_official_code", "IBNorm halves swapped"),
    (MOD, 'parts = ("conv_dw", "bn1", "conv_pw", "bn2") if s == 0', 'parts = ("conv_dw", "bn2", "conv_pw", "bn1") if s == 0',
     T + "test_modnet.py::test_outputs_equal_the_official_code", "official key map swaps two BatchNorms"),
    (MOD, 'key = key.removeprefix("lr_branch.") if key.startswith("lr_branch.backbone.") else key',
     'key = "skip" if key.startswith("lr_branch.backbone.") else key',
     T + "test_modnet.py::test_outputs_equal_the_official_code", "the encoder's later copy ignored"),
    (MOD, "comp = F.l1_loss(image * matte, image * alpha) + 4.0", "comp = F.l1_loss(image * matte, image * alpha) + 2.0",
     T + "test_modnet.py::test_losses_equal_the_official_trainer", "compositional boundary weight 2"),
    (MOD, "side = int((h + w) / 2 * 0.05)", "side = int((h + w) / 2 * 0.1)",
     T + "test_modnet.py::test_losses_equal_the_official_trainer", "SOC boundary band twice as wide"),
    (MAT, "theta: float = 0.15", "theta: float = 0.6", "tests/tasks/test_matting.py::test_matting_metrics_by_hand",
     "connectivity threshold 0.6"),
    (MAT, "return ((pred - true) ** 2).mean((1, 2))", "return ((pred - true) ** 2).sum((1, 2)) / 1000",
     "tests/tasks/test_matting.py::test_matting_metrics_by_hand", "MSE summed"),
]
only = sys.argv[1:]
env = {**os.environ, "OMP_NUM_THREADS": "1"}
for i, (path, old, new, test, what) in enumerate(PLANTS):
    if only and str(i) not in only:
        continue
    text = open(path).read()
    assert old in text, (path, old)
    shutil.copy(path, "/tmp/plant_backup_seg")
    try:
        open(path, "w").write(text.replace(old, new, 1))
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", test], capture_output=True, text=True, env=env)
        last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-200:]
        print(f"[{i}] [{'CAUGHT' if r.returncode != 0 else 'MISSED'}] {what}: {test} -> {last}", flush=True)
    finally:
        shutil.copy("/tmp/plant_backup_seg", path)
