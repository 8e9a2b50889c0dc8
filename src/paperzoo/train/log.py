"""What a run prints and writes on rank 0: a rich progress bar on a terminal, plain periodic lines otherwise,
metrics as JSONL rows (and TensorBoard if asked)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


class RunLog:
    """Rank-0 output: a rich progress bar on a terminal, plain periodic lines otherwise, and JSONL rows."""

    def __init__(self, out: Path | None, enabled: bool, quiet: bool, total_steps: int, tensorboard: bool) -> None:
        self.enabled = enabled
        self.quiet = quiet or not enabled
        self.file = None
        self.tb = None
        if enabled and out is not None:
            out.mkdir(parents=True, exist_ok=True)
            self.file = (out / "metrics.jsonl").open("a")
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self.tb = SummaryWriter(str(out / "tensorboard"))
                except ImportError:
                    print("tensorboard is not installed; logging to metrics.jsonl only", file=sys.stderr)
        self.progress = None
        if not self.quiet and sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False)
            self.task = self.progress.add_task("train", total=total_steps, info="")
            self.progress.start()

    def row(self, row: dict[str, Any]) -> None:
        if self.file is not None:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()
        if self.tb is not None:
            step = row.get("step", 0)
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(f"{row.get('kind', 'train')}/{k}", v, step)

    def advance(self, step: int, text: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, info=text)

    def line(self, text: str) -> None:
        if self.quiet:
            return
        if self.progress is not None:
            self.progress.console.print(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()
