"""Mutation checks for the mended paper checks (issue: "a check counts only if it fails on a planted bug").

    python tests/planted_bugs.py [INDEX ...]   # from the repository root

Each entry plants one bug in the package, runs the check that must catch it, restores the file and prints
CAUGHT or MISSED. Not part of the suite (it edits source files while it runs)."""
import shutil, subprocess, sys
PLANTS = [
 ("src/paperzoo/optim/lookahead.py",
  "        if self.slow is None:\n            self.slow = [p.detach().clone() for p in self.params()]\n        loss = self.inner.step(closure)\n",
  "        loss = self.inner.step(closure)\n        if self.slow is None:\n            self.slow = [p.detach().clone() for p in self.params()]\n",
  "tests/optim/test_lookahead.py::test_first_synchronisation_pulls_towards_the_initial_weights", "Lookahead: slow weights start one inner step late"),
 ("src/paperzoo/train/callbacks/swa.py", "if epoch > self.cfg.start and", "if epoch >= self.cfg.start and",
  "tests/test_schedules.py::test_engine_swa_is_algorithm_1_running_average", "SWA: averaging starts one epoch early"),
 ("src/paperzoo/train/callbacks/swa.py", "        update_bn(trainer.loader(", "        (lambda *a: None)(trainer.loader(",
  "tests/test_schedules.py::test_engine_swa_recomputes_batchnorm_statistics", "SWA: BatchNorm statistics not recomputed"),
 ("src/paperzoo/train/optimizers.py", "opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)", "opt = torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas)",
  "tests/optim/test_adamw.py::test_engine_optimizers_decay_as_the_paper_says", "optimizer=adamw builds Adam (L2 decay)"),
 ("src/paperzoo/train/optimizers.py", "param_groups(model, weight_decay, cfg.decay_bias_and_norm)", "param_groups(model, weight_decay, True)",
  "tests/optim/test_adamw.py::test_engine_optimizers_decay_as_the_paper_says", "biases decayed too"),
 ("src/paperzoo/optim/swd.py", "1 - lr * wd * (1 - damp) / (1 - mu)", "1 - lr * wd * (1 - damp)",
  "tests/optim/test_swd.py::test_sgds_decay_is_stable_under_momentum", "SGDS: decay not divided by 1 - beta1"),
 ("src/paperzoo/catalog/checks.py", "        if report.skipped:", "        if False:",
  "tests/test_paper_checks.py", "plugin: skipped checks no longer fail"),
 ("src/paperzoo/catalog/checks.py", "if report.passed and not self.asserts[item.nodeid] and not item.user_properties:", "if False:",
  "tests/test_paper_checks.py", "plugin: checks that assert nothing pass"),
 ("src/paperzoo/train/engine.py", "        return self.task.train_step(self, batch)", "        return self.standard_step(batch)",
  "tests/tasks/test_own_step.py", "Trainer ignores the task's own step"),
 ("src/paperzoo/train/engine.py", "        return self.task.train_step(self, batch)", "        self.task.train_step(self, batch)\n        return self.standard_step(batch)",
  "tests/tasks/test_own_step.py", "Trainer adds its standard step to the task's"),
 ("src/paperzoo/train/engine.py", "        self.task.load_state_dict(state.get(\"task\", {}))", "        pass",
  "tests/tasks/test_own_step.py", "resume does not restore the task's own networks and optimizer"),
]
only = sys.argv[1:]
for i, (path, old, new, test, what) in enumerate(PLANTS):
    if only and str(i) not in only:
        continue
    text = open(path).read()
    assert old in text, (path, old)
    shutil.copy(path, "/tmp/plant_backup")
    try:
        open(path, "w").write(text.replace(old, new, 1))
        r = subprocess.run([".venv/bin/python", "-m", "pytest", "-q", "-x", test], capture_output=True, text=True)
        last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-200:]
        print(f"[{'CAUGHT' if r.returncode != 0 else 'MISSED'}] {what}: {test} -> {last}")
    finally:
        shutil.copy("/tmp/plant_backup", path)
