"""The ``paperzoo`` command. Mistakes a user can make (unknown names, missing files, bad options) print one
line and exit with status 2; there is no traceback unless something is really broken."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .errors import PaperzooError

console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)

STATUS_STYLE = {"planned": "dim", "partial": "yellow", "implemented": "cyan", "verified": "bold green"}
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT, no_args_is_help=True)
@click.version_option(package_name="paperzoo")
def app() -> None:
    """76 computer-vision papers: implemented, verified against references, reproducible in miniature."""


# ------------------------------------------------------------------------------------------- catalog
@app.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
@click.option("--status", default=None, help="Only papers with this status.")
@click.option("--category", default=None, help="Only papers of this category.")
def list_papers(as_json: bool, status: str | None, category: str | None) -> None:
    """The catalog of all 76 papers with their computed status."""
    from .catalog import CATEGORIES, STATUSES, counts, papers
    from .errors import unknown

    if status is not None and status not in STATUSES:
        raise unknown("status", status, STATUSES)
    if category is not None and category not in CATEGORIES:
        raise unknown("category", category, CATEGORIES)
    entries = papers(category=category, status=status)
    if as_json:
        rows = [dict(slug=p.slug, arxiv=p.arxiv, title=p.title, year=p.year, category=p.category, summary=p.summary,
                     status=p.status, models=list(p.models), objects=list(p.objects), reproduction=p.reproduction,
                     verify=p.verify, reproduce=p.reproduce,
                     checks=[dict(test=c.test, slow=c.slow, passed=c.passed, figures=dict(c.figures)) for c in p.checks])
                for p in entries]
        print(json.dumps(rows, indent=1))
        return
    table = Table(show_lines=False, header_style="bold", expand=False)
    table.add_column("slug", no_wrap=True)
    table.add_column("arXiv", no_wrap=True, min_width=10)
    table.add_column("year", no_wrap=True)
    table.add_column("title", ratio=1, min_width=24, overflow="fold")
    table.add_column("status", no_wrap=True, min_width=11)
    last = None
    for p in entries:
        if p.category != last:
            table.add_row("", "", "", f"[bold]{CATEGORIES[p.category]}[/bold]", "")
            last = p.category
        table.add_row(p.slug, p.arxiv, str(p.year), p.title, f"[{STATUS_STYLE[p.status]}]{p.status}[/]")
    console.print(table)
    c = counts()
    console.print(f"{len(entries)} papers shown; " + ", ".join(f"{c[s]} {s}" for s in STATUSES) + " (of 76)")


@app.command()
@click.argument("slug")
def show(slug: str) -> None:
    """One paper's card: summary, link, entry points, verification and reproduction."""
    from .catalog import paper, resolves
    from .registry import model_source

    p = paper(slug)
    console.print(f"[bold]{p.title}[/bold] ({p.year})")
    console.print(f"{p.url}   slug [bold]{p.slug}[/bold]   status [{STATUS_STYLE[p.status]}]{p.status}[/]")
    console.print()
    console.print(p.summary)
    console.print()
    console.print("[bold]Entry points[/bold]")
    files = set()
    for ep in p.entry_points:
        ok = resolves(ep)
        mark = "[green]✓[/green]" if ok else "[dim]·[/dim]"
        kind = "model" if "." not in ep else ("reproduction" if ep == p.reproduction else "object")
        console.print(f"  {mark} {ep} [dim]({kind})[/dim]")
        if ok and kind == "model":
            files.add(Path(model_source(ep)).resolve())
        elif ok:
            files.add(_module_file(ep))
    files.discard(None)
    if files:
        console.print("[bold]Code[/bold]")
        root = Path(__file__).resolve().parent.parent
        for f in sorted(files):
            console.print(f"  {f.relative_to(root) if f.is_relative_to(root) else f}")
    console.print("[bold]Verified against[/bold]")
    console.print(f"  {p.verify}")
    console.print("[bold]Checks[/bold] (tests that compare the code with a reference or the paper; the last full run)")
    for c in p.checks:
        mark = ("[green]passed[/green]" if c.passed else "[red]not passed[/red]") if not c.slow else \
            ("[green]passed[/green] [dim](slow)[/dim]" if c.passed else "[dim]slow: not in the default run[/dim]")
        console.print(f"  {mark} {c.test}")
        if c.doc:
            console.print(f"      [dim]{c.doc}[/dim]")
        for name, value in c.figures:
            console.print(f"      {name} = {_fmt(value)}")
    if not p.checks:
        console.print("  [dim](no check yet)[/dim]")
    console.print("[bold]Reproduce[/bold]")
    console.print(f"  claim: {p.reproduce}")
    console.print(f"  run:   paperzoo reproduce {p.slug} --out runs/{p.slug}")


@app.command()
@click.argument("pattern", default="*")
@click.option("--paper", "paper_slug", default=None, help="Only models of this paper.")
def models(pattern: str, paper_slug: str | None) -> None:
    """Registered model names (PATTERN: shell-style, e.g. 'resnet*') with their paper and references."""
    from .catalog import paper
    from .registry import list_models, model_meta

    if paper_slug:
        paper(paper_slug)
    names = list_models(pattern, paper=paper_slug)
    if not names:
        raise PaperzooError(f"no model matches '{pattern}'")
    table = Table(header_style="bold")
    for col in ("model", "paper", "input", "paper params (M)", "paper GFLOPs", "references"):
        table.add_column(col)
    for n in names:
        m = model_meta(n)
        table.add_row(n, m.paper, "x".join(map(str, m.input_size)), _num(m.paper_params_m), _num(m.paper_gflops),
                      ", ".join(f"{k}:{v}" for k, v in m.reference.items()))
    console.print(table)
    console.print(f"{len(names)} models")


def _module_file(entry_point: str) -> Path | None:
    import importlib
    import importlib.util

    try:
        spec = importlib.util.find_spec(entry_point) if importlib.util.find_spec(entry_point.rpartition(".")[0]) else None
    except ModuleNotFoundError:  # an attribute of a module (paperzoo.train.swa.SWA), not a submodule
        spec = None
    if spec is None:
        obj = getattr(importlib.import_module(entry_point.rpartition(".")[0]), entry_point.rpartition(".")[2])
        mod = importlib.import_module(getattr(obj, "__module__", entry_point.rpartition(".")[0]))
        return Path(mod.__file__).resolve() if getattr(mod, "__file__", None) else None
    return Path(spec.origin).resolve() if spec.origin else None


def _fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:g}"


# ------------------------------------------------------------------------------------------- running
@app.command()
@click.argument("slug")
@click.argument("overrides", nargs=-1)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output directory (default runs/SLUG).")
@click.option("--full", is_flag=True, help="Paper-scale setting (for a GPU).")
@click.option("--smoke", is_flag=True, help="Seconds-long run that only tests the code path.")
def reproduce(slug: str, overrides: tuple[str, ...], out: Path | None, full: bool, smoke: bool) -> None:
    """Run a paper's miniature experiment; writes report.md, results.json and figures.

    OVERRIDES are KEY=VALUE settings of the experiment's config (e.g. epochs=4)."""
    from .reproduce import run

    _check_overrides(overrides)
    report = run(slug, out, overrides, smoke=smoke, full=full)
    outcome = {True: "held", False: "did not hold", None: "was inconclusive"}[report.held]
    out_dir = out or Path("runs") / slug
    console.print(f"claim {outcome} in miniature ({report.wall_time_s:.0f} s)")
    console.print(report.verdict)
    console.print(f"report: {out_dir / 'report.md'}")


def _check_overrides(args: tuple[str, ...] | list[str]) -> None:
    for a in args:
        if a.startswith("-"):
            raise click.UsageError(f"no such option: {a}")
        if "=" not in a:
            raise click.UsageError(f"unexpected argument '{a}' (overrides are KEY=VALUE)")


@app.command()
@click.argument("overrides", nargs=-1)
@click.option("--model", default=None, help="Registered model name.")
@click.option("--data", default=None, help="shapes, digits, an image folder, or a COCO json (annotations.json).")
@click.option("--task", default=None, help="Task to train for (default: the model's own; see `paperzoo tasks`).")
@click.option("--epochs", type=int, default=None, help="Number of epochs.")
@click.option("--batch-size", type=int, default=None, help="Global batch size.")
@click.option("--lr", type=float, default=None, help="Peak learning rate.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run directory.")
@click.option("--config", type=click.Path(path_type=Path), default=None, help="YAML recipe.")
@click.option("--resume", type=click.Path(path_type=Path), default=None, help="Continue the run in this directory.")
@click.option("--checkpoint-every", type=int, default=None, help="Steps between checkpoints.")
@click.option("--teacher", default=None, help="Distillation tasks: the teacher's registered model name (distill.teacher).")
@click.option("--teacher-weights", default=None, help="Distillation tasks: the teacher's checkpoint (distill.teacher_weights).")
def train(overrides: tuple[str, ...], model: str | None, data: str | None, task: str | None, epochs: int | None,
          batch_size: int | None, lr: float | None, out: Path | None, config: Path | None, resume: Path | None,
          checkpoint_every: int | None, teacher: str | None, teacher_weights: str | None) -> None:
    """Train a model with the one Trainer.

    OVERRIDES are KEY=VALUE settings of any config key (e.g. amp=bf16 data.size=2000)."""
    from .config import apply_overrides, load_yaml
    from .run import build_and_train
    from .train import TrainConfig

    _check_overrides(overrides)
    flags = {"model": model, "data.name": data, "task": task, "epochs": epochs, "batch_size": batch_size, "lr": lr,
             "out": str(out) if out else None, "checkpoint_every": checkpoint_every, "distill.teacher": teacher,
             "distill.teacher_weights": teacher_weights}

    def layered(recipe: dict) -> TrainConfig:
        """The task's recipe, then the run's saved config (--resume), the YAML recipe, flags and KEY=VALUE."""
        cfg = apply_overrides(TrainConfig(), recipe)
        if resume is not None:
            saved = resume / "config.yaml"
            if not saved.exists():
                raise PaperzooError(f"{resume} is not a run directory (no config.yaml); start a run with --out")
            load_yaml(cfg, saved)
            cfg.out = str(resume)
        if config is not None:
            load_yaml(cfg, config)
        apply_overrides(cfg, {k: v for k, v in flags.items() if v is not None})
        return apply_overrides(cfg, overrides)

    cfg = layered({})
    if resume is None:  # a new run starts from its task's and model's recipe (a resumed one has it in its saved config)
        from .run import run_recipe

        cfg = layered(run_recipe(cfg))
    if cfg.out is None:
        raise PaperzooError("train needs --out DIR (where checkpoints, metrics and the model go)")
    build_and_train(cfg, resume=resume is not None)


@app.command("eval")
@click.argument("overrides", nargs=-1)
@click.option("--model", required=True, help="Registered model name.")
@click.option("--weights", type=click.Path(path_type=Path), required=True, help="Weights (.safetensors or torch checkpoint).")
@click.option("--data", default="shapes", show_default=True, help="shapes, digits, an image folder, or a COCO json.")
@click.option("--task", default=None, help="Task whose metrics to compute (default: the model's own).")
@click.option("--split", default="val", show_default=True, help="train, val or test.")
@click.option("--source", default="paperzoo", show_default=True, help="Whose key names the weights use (timm, torchvision, ...).")
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write metrics.json here.")
def evaluate(overrides: tuple[str, ...], model: str, weights: Path, data: str, task: str | None, split: str, source: str,
             batch_size: int, out: Path | None) -> None:
    """Evaluate weights on a dataset split with the task's metrics (accuracy; COCO box/mask/keypoint AP; mIoU).

    OVERRIDES are KEY=VALUE config settings (e.g. data.image_size=64)."""
    from .config import apply_overrides
    from .run import evaluate_weights
    from .train import TrainConfig

    _check_overrides(overrides)
    cfg = TrainConfig(model=model, batch_size=batch_size, task=task)
    cfg.data.name = data
    apply_overrides(cfg, overrides)
    metrics, evaluator = evaluate_weights(cfg, weights, split=split, source=source)
    summary = getattr(evaluator, "summary", "")
    if summary:
        console.print(summary.rstrip())
    console.print(" ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        console.print(f"wrote {out / 'metrics.json'}")


@app.command()
@click.option("--model", required=True, help="Registered model name.")
@click.option("--weights", type=click.Path(path_type=Path), required=True, help="Weights (.safetensors or torch checkpoint).")
@click.option("--image", type=click.Path(path_type=Path), required=True, help="The image to run the model on.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("pred.png"), show_default=True, help="Output PNG.")
@click.option("--task", default=None, help="Task (default: the one the weights were trained for, else the model's).")
@click.option("--source", default="paperzoo", show_default=True, help="Whose key names the weights use (timm, torchvision, ...).")
@click.option("--score-threshold", type=float, default=0.5, show_default=True, help="Detectors: draw boxes scoring at least this.")
@click.option("--num-classes", type=int, default=None, help="Classifier size (default: from the weights).")
@click.option("--labels", default=None, help='CLIP: comma-separated class names for zero-shot labels ("a,b,c").')
@click.option("--prompt", default=None, help="CLIPSeg: the text prompt of the mask.")
def predict(model: str, weights: Path, image: Path, out: Path, task: str | None, source: str, score_threshold: float,
            num_classes: int | None, labels: str | None, prompt: str | None) -> None:
    """Run a model on IMAGE and draw its prediction into a PNG: boxes, masks and keypoints, class maps, or top classes."""
    from .run import predict_image

    result = predict_image(model, weights, image, out, source=source, task=task, score_threshold=score_threshold,
                           num_classes=num_classes, prompt=prompt,
                           labels=[x.strip() for x in labels.split(",") if x.strip()] if labels else None)
    if "detections" in result:
        console.print(f"{len(result['detections'])} detections with score >= {score_threshold}")
        for d in result["detections"][:20]:
            console.print(f"  {d['label']} {d['score']:.3f} box {d['box']}")
    elif "top" in result:
        console.print(", ".join(f"{t['label']} {t['probability']:.3f}" for t in result["top"]))
    elif "classes" in result:
        console.print("classes present: " + (", ".join(result["classes"]) or "none"))
    elif "caption" in result:
        console.print(result["caption"])
    elif "mask_fraction" in result:
        console.print(f"'{result['prompt']}': {100 * result['mask_fraction']:.1f}% of the image")
    console.print(f"wrote {result['out']}")


@app.command()
@click.option("--model", required=True, help="Registered generative model name.")
@click.option("--weights", type=click.Path(path_type=Path), required=True, help="Weights (.safetensors or torch checkpoint).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("grid.png"), show_default=True, help="Output PNG grid.")
@click.option("-n", "--num", type=int, default=64, show_default=True, help="Number of samples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the noise the samples are drawn from.")
@click.option("--source", default="paperzoo", show_default=True, help="Whose key names the weights use (official, ...).")
def sample(model: str, weights: Path, out: Path, num: int, seed: int, source: str) -> None:
    """Draw samples from a trained generative model and write them as a PNG grid."""
    from .run import sample_grid

    result = sample_grid(model, weights, out, n=num, seed=seed, source=source)
    console.print(f"wrote {result['samples']} samples of {'x'.join(map(str, result['shape']))} to {result['out']}")


@app.command()
def tasks() -> None:
    """The tasks a model can be trained and evaluated for (``--task``), with the data each one reads."""
    from .tasks import task_class, task_names

    table = Table(header_style="bold")
    for col in ("task", "sample kind", "description"):
        table.add_column(col)
    for name in task_names():
        cls = task_class(name)
        table.add_row(name, cls.data, " ".join((cls.__doc__ or "").split()).split(". ")[0].rstrip("."))
    console.print(table)


@app.command("data")
@click.argument("name")
@click.option("--preview", type=click.Path(path_type=Path), default=None, help="Write a PNG grid of samples here.")
@click.option("--bench", type=int, default=0, help="Render this many scenes and report images/second.")
@click.option("--split", default="train", show_default=True, help="train, val or test.")
@click.option("--preset", default="medium", show_default=True, help="Synthetic-scene difficulty: easy, medium, hard.")
@click.option("--image-size", type=int, default=64, show_default=True, help="Synthetic-scene size in pixels.")
def data_info(name: str, preview: Path | None, bench: int, split: str, preset: str, image_size: int) -> None:
    """Describe dataset NAME (shapes, digits, or an image folder), preview it, or time the scene generator."""
    from .run import describe_dataset

    describe_dataset(name, split=split, preset=preset, image_size=image_size, preview=preview, bench=bench, console=console)


@app.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--vs", default=None, help="Also measure this library's model of the same architecture: timm, torchvision, "
              "transformers (DETR, CLIPSeg), open_clip (CLIP) or segment-anything (SAM).")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--image-size", type=int, default=None, help="Input size (default: the model's; a detector's min_size too).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--compile", "compile_", is_flag=True, help="torch.compile both models.")
@click.option("--channels-last", is_flag=True, help="channels_last memory format.")
@click.option("--iters", type=int, default=5, show_default=True, help="Timed iterations per round.")
@click.option("--rounds", type=int, default=3, show_default=True, help="Alternating rounds; the median is reported.")
@click.option("--no-memory", is_flag=True, help="Skip the peak-memory measurement.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Also write the results here.")
def bench(names: tuple[str, ...], vs: str | None, batch_size: int, image_size: int | None, device: str, compile_: bool,
          channels_last: bool, iters: int, rounds: int, no_memory: bool, json_out: Path | None) -> None:
    """Parameters, GMACs, inference and training images/s and peak memory of NAMES (optionally vs a reference library)."""
    import platform

    import torch

    from .bench import bench as run_bench
    from .bench import ratios, to_json
    from .registry import list_models

    expanded: list[str] = []
    for n in names:
        expanded += list_models(n) if any(c in n for c in "*?[") else [n]
    results = run_bench(expanded, vs=vs, batch_size=batch_size, image_size=image_size, device=device, compile_=compile_,
                        channels_last=channels_last, iters=iters, rounds=rounds, memory=not no_memory)
    r = ratios(results)
    table = Table(header_style="bold", title=f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                  f"batch {batch_size}{', compiled' if compile_ else ''}{', channels_last' if channels_last else ''}")
    for col in ("model", "impl", "params (M)", "GMACs", "infer img/s", "train img/s", "peak MB", "ours/ref infer", "ours/ref train"):
        table.add_column(col, justify="left" if col in ("model", "impl") else "right")
    for x in results:
        ratio = r.get(x.model) if x.impl == "paperzoo" else None
        table.add_row(x.model, x.impl, f"{x.params_m:.2f}", "n/a" if x.gmacs is None else f"{x.gmacs:.3f}", f"{x.infer_img_s:.1f}", f"{x.train_img_s:.1f}",
                      "n/a" if x.peak_mem_mb is None else f"{x.peak_mem_mb:.0f}",
                      f"{ratio['infer']:.2f}x" if ratio else "", f"{ratio['train']:.2f}x" if ratio else "")
    console.print(table)
    if json_out is not None:
        json_out.write_text(json.dumps(to_json(results), indent=1))
        console.print(f"wrote {json_out}")


@app.command()
@click.option("--model", required=True, help="Registered model name.")
@click.option("--weights", type=click.Path(path_type=Path), required=True, help="Weights (.safetensors or torch checkpoint).")
@click.option("--image", type=click.Path(path_type=Path), required=True, help="The image to explain.")
@click.option("--layer", default=None, help="Module name to explain (default: the last feature stage).")
@click.option("--class", "class_index", type=int, default=None, help="Class index to explain (default: the predicted one).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("cam.png"), show_default=True, help="Output PNG.")
@click.option("--source", default="paperzoo", show_default=True, help="Whose key names the weights use (timm, torchvision, ...).")
@click.option("--num-classes", type=int, default=None, help="Classifier size (default: inferred from the weights).")
@click.option("--in-chans", type=int, default=None, help="Input channels (default: inferred from the weights).")
@click.option("--image-size", type=int, default=None, help="Input size (default: the training data's or the model's).")
def cam(model: str, weights: Path, image: Path, layer: str | None, class_index: int | None, out: Path, source: str,
        num_classes: int | None, in_chans: int | None, image_size: int | None) -> None:
    """Grad-CAM and Guided Grad-CAM of IMAGE: a heatmap of where the model looks, overlaid on the image."""
    from .run import explain_image

    result = explain_image(model, weights, image, out, layer=layer, class_index=class_index, source=source,
                           num_classes=num_classes, in_chans=in_chans, image_size=image_size)
    console.print(f"{result['name']} (p = {result['probability']:.3f}); wrote {result['out']}")


# ------------------------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors become one line on stderr and exit status 2."""
    def fail(message: str, code: int) -> None:
        print(" ".join(message.split()), file=sys.stderr, flush=True)
        sys.exit(code)

    try:
        app.main(args=argv, prog_name="paperzoo", standalone_mode=False)
    except getattr(click.exceptions, "NoArgsIsHelpError", ()) as e:  # bare `paperzoo`: help, not an error
        print(e.ctx.get_help() if e.ctx else "")
    except click.UsageError as e:
        cmd = e.ctx.command_path if e.ctx else "paperzoo"
        fail(f"{cmd}: error: {e.format_message()} (see {cmd} --help)", 2)
    except click.exceptions.Abort:
        fail("aborted", 130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except PaperzooError as e:
        fail(f"paperzoo: error: {e}", e.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)


if __name__ == "__main__":
    main()
