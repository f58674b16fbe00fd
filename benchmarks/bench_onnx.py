"""Benchmark: ONNX Runtime against PyTorch for CPU inference of the same network, side by side.

Cases: a 128x128 -> 512x512 image at batch 1 (images/s, median over timed calls), and the sample
data's real chest radiograph (pydicom-data RG1_UNCR, 1955x1841) mirrored out to 2048x2048, run in
seamless 256-pixel tiles as ``medsr enhance`` runs it (seconds, images/s). Each (runtime, case)
runs in a child process, so that its peak resident memory (``ru_maxrss``) is its own (this process
never imports torch: Linux carries a parent's peak into a forked child's figure); rounds are
interleaved, medians reported. Model: ``--model`` (a checkpoint; default: the medsr recipe's
network from ``runs/bench_quality/medsr/best.pt``, else an untrained network of
``configs/recipe_x4.yaml``: speed does not depend on the weights). The ONNX file is
``medsr export``'s output for that checkpoint.

    .venv/bin/python benchmarks/bench_onnx.py [--model CKPT] [--rounds 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np  # (no torch here: see the module docstring)

ROOT = Path(__file__).resolve().parents[1]
CASES = ("128", "2048")
RUNTIMES = ("pytorch", "onnxruntime")


def recipe_checkpoint(folder: Path) -> Path:
    """The trained recipe network when the quality benchmark left one, else an untrained one."""
    trained = ROOT / "runs" / "bench_quality" / "medsr" / "best.pt"
    if trained.is_file():
        return trained
    from medsr.models.checkpoint import model_entry, save_checkpoint
    from medsr.models.registry import build_network
    from medsr.train.config import load_config

    config = load_config(ROOT / "configs" / "recipe_x4.yaml")
    network = build_network(config.model.name, config.model.kwargs())
    path = folder / "recipe.pt"
    save_checkpoint(
        path, {"model": model_entry(config.model.name, config.model.kwargs(), network), "config": {}}
    )
    return path


def radiograph(size: int = 2048) -> np.ndarray:
    """The sample chest radiograph, mirrored out to ``size`` x ``size``, in [0, 1]."""
    import pydicom

    from medsr.data import sample

    pixels = pydicom.dcmread(sample.fetch_samples() / "pydicom-data" / "RG1_UNCR.dcm").pixel_array
    pad_y, pad_x = max(0, size - pixels.shape[0]), max(0, size - pixels.shape[1])
    big = np.pad(pixels, ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2)), mode="reflect")
    big = big[:size, :size].astype(np.float32)
    return (big - big.min()) / (big.max() - big.min())


def child(runtime: str, case: str, model_path: str, calls: int) -> dict:
    """Run one case in this process; returns seconds per image, images/s and peak memory."""
    from medsr.infer import enhance_tiled
    from medsr.models import load_model

    model = load_model(model_path, device="cpu")
    if case == "128":
        lq = np.random.default_rng(0).random((1, 1, 128, 128), dtype=np.float32)
        model.enhance_batch(lq)  # warm-up
        times = []
        for _ in range(calls):
            began = time.perf_counter()
            model.enhance_batch(lq)
            times.append(time.perf_counter() - began)
        seconds = statistics.median(times)
    else:
        image = radiograph()
        began = time.perf_counter()
        enhance_tiled(model, image, tile=256)
        seconds = time.perf_counter() - began
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "images_per_s": 1.0 / seconds, "peak_mb": peak_mb}


def _run(arguments: list[str]) -> str:
    """Run ``python ARGUMENTS`` in a child process; its standard output."""
    return subprocess.run([sys.executable, *arguments], capture_output=True, text=True, check=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20, help="timed calls per 128x128 measurement")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=3, metavar=("RUNTIME", "CASE", "MODEL"), help=argparse.SUPPRESS)
    parser.add_argument("--make-checkpoint", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.calls)))
        return
    if args.make_checkpoint:
        print(recipe_checkpoint(args.make_checkpoint))
        return
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.model or Path(_run([__file__, "--make-checkpoint", tmp]).strip().splitlines()[-1])
        onnx_path = Path(tmp) / "model.onnx"
        _run(["-m", "medsr", "export", str(checkpoint), "-o", str(onnx_path)])
        paths = {"pytorch": str(checkpoint), "onnxruntime": str(onnx_path)}
        results: dict[str, dict[str, list[dict]]] = {r: {c: [] for c in CASES} for r in RUNTIMES}
        for _ in range(args.rounds):
            for case in CASES:
                for runtime in RUNTIMES:
                    command = [
                        sys.executable,
                        __file__,
                        "--calls",
                        str(args.calls),
                        "--child",
                        runtime,
                        case,
                        paths[runtime],
                    ]
                    done = subprocess.run(command, capture_output=True, text=True, check=True)
                    results[runtime][case].append(json.loads(done.stdout.strip().splitlines()[-1]))
    summary = {
        runtime: {
            case: {
                key: statistics.median(r[key] for r in runs) for key in ("seconds", "images_per_s", "peak_mb")
            }
            for case, runs in cases.items()
        }
        for runtime, cases in results.items()
    }
    report = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "model": str(checkpoint),
        "rounds": args.rounds,
        "results": summary,
    }
    print(json.dumps(report, indent=2))
    for case in CASES:
        ratio = summary["onnxruntime"][case]["images_per_s"] / summary["pytorch"][case]["images_per_s"]
        print(f"{case}: onnxruntime / pytorch throughput {ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
