"""Benchmark: LPIPS (and DISTS) of real 512x512 slices on the CPU, as ``medsr evaluate`` computes them.

Pairs: the sample data's chest CT slices (512x512, pyradiomics lung1/lung2) against their bicubic
x4 reconstructions (antialiased bicubic degradation, then OpenCV bicubic), on [0, 1]. Timed:
``metrics.registry.Scorer`` with only the learned metric asked for, in its batches of equal-sized
images, after a warm-up; the weights' first download and conversion are not counted. Medians over
``--rounds``. The issue's figure is 200 images in at most 60 s on 2 cores; ``--images`` smaller
than 200 times the per-image figure by 200 (said so in the output).

    .venv/bin/python benchmarks/bench_lpips.py [--images 200] [--metric lpips] [--rounds 1] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import date

import numpy as np
import torch

from medsr.data import sample
from medsr.data.degrade import Degradation, degrade_image
from medsr.io import read_slices
from medsr.metrics.registry import Scorer
from medsr.models import load_model


def pairs(count: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(bicubic SR, HR, mask) for ``count`` real 512x512 CT slices on [0, 1]."""
    folder = sample.fetch_samples()
    slices = [
        s.pixels for name in ("lung1", "lung2") for s in read_slices(folder / "pyradiomics" / f"{name}.nrrd")
    ]
    bicubic = load_model("bicubic")
    out = []
    for index in range(count):
        hr = np.clip((slices[index % len(slices)] + 1024) / 4095, 0, 1).astype(np.float32)
        sr = bicubic.enhance(degrade_image(hr, Degradation(), key=str(index)))
        out.append((sr, hr, np.ones(hr.shape, bool)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--metric", default="lpips", choices=["lpips", "dists"])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args()
    data = pairs(args.images)
    scorer = Scorer(("psnr", "ssim", args.metric))
    scorer.learned_values(args.metric, data[:1])  # warm-up (and weights)
    times = []
    for _ in range(args.rounds):
        began = time.perf_counter()
        values = scorer.learned_values(args.metric, data)
        times.append(time.perf_counter() - began)
    seconds = statistics.median(times)
    result = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads",
        "metric": args.metric,
        "images": args.images,
        "seconds": seconds,
        "seconds_per_image": seconds / args.images,
        "seconds_for_200": 200 * seconds / args.images,
        "mean_value": float(np.mean(values)),
    }
    print(
        f"{args.metric}: {args.images} pairs of 512x512 in {seconds:.1f} s ({seconds / args.images:.2f} s each"
        + (f"; 200 would take about {result['seconds_for_200']:.0f} s" if args.images != 200 else "")
        + f"), {result['machine']}"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
