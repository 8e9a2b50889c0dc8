"""Planted bugs for the checks of section I (KD, ESKD, OFD, BYOL, RAFT, FNC): each entry plants one bug, runs the check
that must catch it, restores the file and prints CAUGHT or MISSED (same format as tests/planted_bugs.py).

    python tests/planted_bugs_distill_ssl.py [INDEX ...]   # from the repository root

Not part of the suite (it edits source files while it runs)."""
import os, shutil, subprocess, sys
D, S, B, F, R, T = ("src/paperzoo/tasks/distillation.py", "src/paperzoo/tasks/ssl.py", "src/paperzoo/tasks/byol.py",
                    "src/paperzoo/tasks/fnc.py", "src/paperzoo/tasks/raft.py", "tests/tasks/")
PLANTS = [
 (D, 'reduction="batchmean", log_target=True) * (t * t)', 'reduction="batchmean", log_target=True) * t',
  T + "test_kd.py", "KD: soft term scaled by T instead of T^2"),
 (D, "F.log_softmax(teacher_logits.float() / t, 1),", "F.log_softmax(teacher_logits.float(), 1),",
  T + "test_kd.py", "KD: teacher not softened by T"),
 (D, '    return found[epoch] / "model.safetensors"', '    return found[max(found)] / "model.safetensors"',
  T + "test_eskd.py", "ESKD: the final teacher instead of the chosen epoch's"),
 (D, '        if state.get("batch_in_epoch", 1) == 0:', '        if True:',
  T + "test_eskd.py::test_the_teacher_is_the_checkpoint_of_the_chosen_epoch", "ESKD: mid-epoch checkpoints taken as epoch ends"),
 (D, "    margin = m - s * pdf / cdf.clamp_min(1e-300)", "    margin = m + s * pdf / cdf.clamp_min(1e-300)",
  T + "test_ofd.py", "OFD: margin sign"),
 (D, "    keep = (source > target) | (target > 0)", "    keep = (source < target) | (target > 0)",
  T + "test_ofd.py", "OFD: partial L2 skips the wrong side"),
 (D, "    target = torch.max(target, margin)\n    keep", "    keep", T + "test_ofd.py", "OFD: no margin ReLU on the teacher"),
 (D, "m) / 2 ** (n - i - 1)", "m) / 2 ** i", T + "test_ofd.py::test_positions_are_the_stage_outputs_before_relu",
  "OFD: stage weights reversed"),
 (S, "nn.ReLU(inplace=True),\n", "nn.GELU(),\n", T + "test_byol.py::test_projector_and_predictor_equal_lightlys_heads",
  "BYOL heads: wrong activation"),
 (B, "regression_loss(q2, z1.detach())", "regression_loss(q2, z2.detach())",
  T + "test_byol.py::test_symmetric_loss_equals_lightlys_negative_cosine_similarity", "BYOL: symmetrised term regresses its own view"),
 (S, "torch._foreach_add_(t, o, alpha=1.0 - tau)", "torch._foreach_add_(t, o, alpha=tau)",
  T + "test_byol.py::test_momentum_schedule_and_update_equal_lightly", "BYOL: EMA weights swapped"),
 (B, "(math.cos(math.pi * min(step, total_steps) / total_steps) + 1) / 2", "(math.cos(math.pi * min(step, total_steps) / total_steps / 2) + 1) / 2",
  T + "test_byol.py::test_momentum_schedule_and_update_equal_lightly", "BYOL: tau schedule a quarter cosine"),
 (B, '            self.target_encoder.load_state_dict(state["target_encoder"])', "            pass",
  T + "test_byol.py::test_resume_restores_target_heads_and_momentum_schedule", "BYOL: resume does not restore the target"),
 (B, "        self.tau = target_momentum(trainer.step + 1", "        tau = target_momentum(trainer.step + 1",
  T + "test_byol.py::test_task_step_updates_the_target_as_lightly_after_the_online_step", "BYOL: tau never advances"),
 (F, "positive = (torch.arange(2 * n, device=z.device) + n) % (2 * n)", "positive = (torch.arange(2 * n, device=z.device) + 1) % (2 * n)",
  T + "test_fnc.py::test_nt_xent_equals_a_hand_computation_and_lightly", "SimCLR: wrong positive"),
 (F, 'score = per_view.amax(1) if aggregate == "max" else per_view.mean(1)', 'score = per_view.mean(1) if aggregate == "max" else per_view.amax(1)',
  T + "test_fnc.py::test_false_negatives_are_the_negatives_closest_to_the_support_views", "FNC: aggregations swapped"),
 (F, "negative = image[:, None] != image[None, :]", "negative = torch.ones_like(image[:, None] != image[None, :])",
  T + "test_fnc.py::test_false_negatives_are_the_negatives_closest_to_the_support_views", "FNC: the anchor's own views can be flagged"),
 (F, "return -(log_prob.masked_fill(~positives, 0.0).sum(1) / positives.sum(1)).mean()", "return -(log_prob.masked_fill(~positives, 0.0).sum(1)).mean()",
  T + "test_fnc.py::test_elimination_and_attraction_follow_the_papers_equations", "FNC attraction: not averaged over positives"),
 (F, 'return (torch.logsumexp(logits.masked_fill(flagged, float("-inf")), 1) - pos).mean()', "return (torch.logsumexp(logits, 1) - pos).mean()",
  T + "test_fnc.py::test_elimination_and_attraction_follow_the_papers_equations", "FNC elimination: nothing eliminated"),
 (R, "    return alpha * align - beta * cross, align, cross", "    return alpha * align + beta * cross, align, cross",
  T + "test_raft.py", "RAFT: runs towards the teacher"),
 (R, "    return (_sq(p1, t1.detach()).mean() + _sq(p2, t2.detach()).mean()) / 2", "    return (_sq(p1, t2.detach()).mean() + _sq(p2, t1.detach()).mean()) / 2",
  T + "test_raft.py::test_raft_terms_on_a_hand_case", "RAFT: cross-model term on the other view"),
 (R, "    return _sq(p1, t2), 2 * _sq(p1, p2) + 2 * _sq(p2, t2)", "    return _sq(p1, t2), _sq(p1, p2) + _sq(p2, t2)",
  T + "test_raft.py::test_byol_loss_is_bounded_by_twice_alignment_plus_cross_model", "RAFT: bound without the factor 2"),
]
only = sys.argv[1:]
python = sys.executable if os.path.exists(sys.executable) else ".venv/bin/python"
for i, (path, old, new, test, what) in enumerate(PLANTS):
    if only and str(i) not in only:
        continue
    text = open(path).read()
    assert old in text, (path, old)
    shutil.copy(path, "/tmp/plant_backup")
    try:
        open(path, "w").write(text.replace(old, new, 1))
        r = subprocess.run([python, "-m", "pytest", "-q", "-x", test], capture_output=True, text=True)
        last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-200:]
        print(f"[{'CAUGHT' if r.returncode != 0 else 'MISSED'}] {what}: {test} -> {last}", flush=True)
    finally:
        shutil.copy("/tmp/plant_backup", path)
