"""Quality at equal compute: the paper's SRResNet recipe, BasicSR's MSRResNet recipe and medsr's
recipe, each trained for the same wall-clock budget on the same data and device, in one run, then
scored on the held-out test patients with the same LR inputs (``medsr evaluate``), and their
inference throughput (128x128 -> 512x512) measured side by side.

Data: the built-in sample data prepared as ``make demo`` prepares it (patient-level split,
stratified by modality): ``--dataset`` (default ``runs/demo/dataset``; made with the demo's
settings when missing). Every recipe gets the same ``train.time_budget`` (training seconds;
validation and checkpoints not counted), the same device, threads and arithmetic (``--amp``), and the same validation (24 images after
every 24 patches per training image, so ``best.pt`` is chosen alike).
The evaluation's baseline is the BasicSR recipe, so ``vs_baseline`` of medsr's recipe is the paired
difference medsr - BasicSR with patient-level intervals and the sign-flip test over patients.

    .venv/bin/python benchmarks/bench_quality.py --budget 10m            # CPU, about 35 minutes
    .venv/bin/python benchmarks/bench_quality.py --budget 3m --device cuda --amp bf16

Writes ``--out`` (default ``runs/bench_quality``): one run folder per recipe, ``eval/`` (the
evaluation: summary.json, table.md), ``results.json`` and ``results.md`` (the table of
``benchmarks/README.md``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from medsr.evaluate import EvalOptions, evaluate  # noqa: E402
from medsr.models import load_model  # noqa: E402
from medsr.models.registry import build_network  # noqa: E402
from medsr.train.config import load_config  # noqa: E402
from medsr.train.loop import fit  # noqa: E402

RECIPES = {
    "paper": ROOT / "configs" / "paper_srresnet.yaml",
    "basicsr": ROOT / "configs" / "basicsr_msrresnet_x4.yaml",
    "medsr": ROOT / "configs" / "recipe_x4.yaml",
}
BASELINE = "basicsr"


def ensure_dataset(dataset: Path) -> None:
    """Prepare the sample data as ``make demo`` does, when ``dataset`` does not exist yet."""
    if (dataset / "manifest.csv").is_file():
        return
    from medsr.pipeline import Pipeline, load_run_config

    config = load_run_config(ROOT / "configs" / "demo.yaml")
    pipeline = Pipeline(config, progress=True)
    pipeline.run_dir.mkdir(parents=True, exist_ok=True)
    pipeline.stage("data", {**vars(config.data), "content": None}, pipeline._data)
    pipeline.stage("prepare", config.prepare, pipeline._prepare)
    if not (dataset / "manifest.csv").is_file():
        raise SystemExit(f"{dataset}: not made (the demo prepares runs/demo/dataset; pass that)")


def recipes(text: str) -> dict[str, Path]:
    """``paper,basicsr,medsr`` (known recipes) or ``name=config.yaml`` items -> {name: config}."""
    chosen = {}
    for item in text.split(","):
        name, _, path = item.partition("=")
        if not path and name not in RECIPES:
            raise SystemExit(
                f"--recipes: unknown recipe {name!r} (known: {', '.join(RECIPES)}, or name=config.yaml)"
            )
        chosen[name] = Path(path) if path else RECIPES[name]
    return chosen


def train(name: str, config_path: Path, args: argparse.Namespace) -> dict:
    """Train one recipe for the budget; returns what the run did."""
    overrides = [
        f"name={name}",
        f"run_dir={args.out / name}",
        f"data.dataset={args.dataset}",
        f"train.time_budget={args.budget}",
        f"train.device={args.device}",
        f"train.amp={args.amp}",
        f"train.threads={args.threads}",
        "train.iterations=null",
        # the same validation for every recipe: best.pt is chosen on the same images, as often
        "data.val_limit=24",
        "data.patches_per_image=24",
        "data.train_metric_images=16",
        *args.set,
    ]
    config = load_config(config_path, overrides)
    began = time.perf_counter()
    result = fit(config, overwrite=True, progress=True)
    history = result.history
    return {
        "config": str(config_path),
        "model": config.to_dict()["model"],
        "iterations": sum(int(r["iterations"]) for r in history),
        "train_seconds": round(sum(float(r["seconds"]) for r in history), 1),
        "wall_seconds": round(time.perf_counter() - began, 1),
        "epochs": len(history),
        "best_epoch": result.best["epoch"],
        "val_psnr": result.best["val_psnr"],
        "parameters": sum(
            p.numel() for p in build_network(config.model.name, config.model.kwargs()).parameters()
        ),
    }


def throughput(names: list[str], args: argparse.Namespace) -> dict[str, float]:
    """Images/s of each recipe's network (inference form) and the paper SRResNet 16 x 64 at
    128x128 -> 512x512, batch 1, interleaved over rounds (medians); CPU fp32, or CUDA bf16 compiled."""
    cuda = args.device == "cuda"
    models = {}
    for name in names:
        model = load_model(args.out / name / "best.pt", device=args.device)
        models[name] = model
    lq = np.random.default_rng(0).random((1, 1, 128, 128), dtype=np.float32)
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        if cuda:
            model.precision, model.network = "bf16", torch.compile(model.module)
        model.enhance_batch(lq)  # warm-up
    for _ in range(args.infer_rounds):
        for name, model in models.items():
            began = time.perf_counter()
            model.enhance_batch(lq)
            times[name].append(time.perf_counter() - began)
    return {name: 1.0 / statistics.median(t) for name, t in times.items()}


def parameters(model: dict) -> dict[str, int]:
    """Parameters of a network (the flat ``model:`` section) in training and inference form."""
    options = {k: v for k, v in model.items() if k != "name"}
    network = build_network(model["name"], options)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    return {"training": count(network), "inference": count(network.inference_form())}


def _interval(value: dict, digits: int, key: str = "mean", sign: str = "") -> str:
    """``mean [low, high]``; the mean alone for one patient (no interval)."""
    text = f"{value[key]:{sign}.{digits}f}"
    if value.get("n_patients", 2) < 2:
        return text
    return f"{text} [{value['ci_low']:{sign}.{digits}f}, {value['ci_high']:{sign}.{digits}f}]"


def _patients(block: dict) -> str:
    count = block["n_patients"]
    return f"{count} patient{'s' if count != 1 else ''}"


def table(results: dict, summary: dict) -> str:
    """The Markdown tables of benchmarks/README.md: each recipe's test scores (all slices, then per
    modality), and the paired difference medsr - BasicSR."""
    names = list(results["runs"])
    speed = results["throughput"]
    lines = [
        f"Budget {results['budget']} of training per recipe ({results['amp']}), {results['device']}, "
        f"torch {results['torch']}, {results['date']}; test split: {summary['n_patients']} patients, "
        f"{summary['n_images']} slices; means [95% patient t-interval].",
        "",
        "| recipe | network | params (inference) | iterations | infer 128->512 img/s (x paper) |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        run = results["runs"][name]
        count = parameters(run["model"])["inference"]
        lines.append(
            f"| {name} | {run['model']['name']} | {count / 1e6:.2f} M | {run['iterations']} | "
            f"{speed[name]:.2f} ({speed[name] / speed['paper']:.2f}x) |"
        )
    lines += ["", "| block | recipe | PSNR (dB) | SSIM | PSNR fg | SSIM fg |", "|---|---|---|---|---|---|"]
    blocks = {"all": summary, **summary.get("by_modality", {})}
    for title, block in blocks.items():
        for name in ["bicubic", *names]:
            m = block["methods"][name]
            cells = [
                _interval(m[k], 2 if k.startswith("psnr") else 4)
                for k in ("psnr", "ssim", "psnr_fg", "ssim_fg")
            ]
            lines.append(f"| {title} ({_patients(block)}) | {name} | " + " | ".join(cells) + " |")
    lines += ["", "Paired difference medsr - BasicSR (sign-flip p over patients):", ""]
    lines += ["| block | PSNR (dB) | SSIM | PSNR fg | SSIM fg |", "|---|---|---|---|---|"]
    for title, block in blocks.items():
        d = block["vs_baseline"]["medsr"]
        cells = [
            f"{_interval(d[k], 3 if k.startswith('psnr') else 4, 'mean_diff', '+')} p={d[k]['p_patients']:.3g}"
            for k in ("psnr", "ssim", "psnr_fg", "ssim_fg")
        ]
        lines.append(f"| {title} ({_patients(block)}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", default="10m", help="training time per recipe (default 10m)")
    parser.add_argument("--dataset", type=Path, default=ROOT / "runs" / "demo" / "dataset")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_quality")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--amp", default="bf16", choices=["bf16", "off"], help="arithmetic for every recipe")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--recipes", default="paper,basicsr,medsr", help="comma-separated, of: " + ", ".join(RECIPES)
    )
    parser.add_argument("--set", action="append", default=[], help="override for every recipe (key=value)")
    parser.add_argument("--infer-rounds", type=int, default=20)
    parser.add_argument(
        "--table-only", action="store_true", help="rewrite results.md from an earlier run's files"
    )
    args = parser.parse_args(argv)
    if args.table_only:
        results = json.loads((args.out / "results.json").read_text())
        summary = json.loads((args.out / "eval" / "summary.json").read_text())
        (args.out / "results.md").write_text(table(results, summary))
        print(table(results, summary))
        return
    chosen = recipes(args.recipes)
    names = list(chosen)
    ensure_dataset(args.dataset)
    runs = {name: train(name, path, args) for name, path in chosen.items()}
    models = [load_model(args.out / name / "best.pt", device=args.device) for name in names]
    baseline = BASELINE if BASELINE in names else names[0]
    options = EvalOptions(split="test", baseline=baseline, n_figures=0, metrics=("psnr", "ssim"))
    summary = evaluate(args.dataset, [load_model("bicubic"), *models], args.out / "eval", options).summary
    device = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"{platform.processor() or platform.machine()} CPU, {args.threads} threads"
    )
    results = {
        "date": date.today().isoformat(),
        "device": device,
        "budget": args.budget,
        "amp": args.amp,
        "torch": torch.__version__,
        "runs": runs,
        "throughput": throughput(names, args),
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    markdown = table(results, summary) if {"paper", "medsr", BASELINE} <= set(names) else ""
    (args.out / "results.md").write_text(markdown)
    print(markdown or json.dumps(results, indent=2))
    print((args.out / "eval" / "table.md").read_text())


if __name__ == "__main__":
    main()
