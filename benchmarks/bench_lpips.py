"""Benchmark: LPIPS (or DISTS) of real 512x512 slices on the CPU, as ``medsr evaluate`` computes
them, beside the reference ``lpips`` package on the same weights and pairs.

Images: the sample data's chest CT slices (512x512, pyradiomics lung1/lung2) on [0, 1]. Two cases,
each ``--images`` scored images:

- ``distinct``: every image has its own reference (HR) slice: two network passes per image.
- ``evaluate``: ``--methods`` outputs per HR slice (nearest, bilinear, bicubic, Lanczos and a
  sharpened bicubic of the same x4 LR image), scored in one call as ``medsr evaluate`` does, so each
  HR slice's features are computed once: (methods + 1) / methods passes per image.

The reference is ``lpips.LPIPS(net="vgg")`` 0.1.4 (``medsr.metrics.references``), timed on the
distinct pairs, one pair per call as its README shows, on ``--reference-images`` images (its time
for ``--images`` is scaled from them; said so). The largest difference between its values and
medsr's is printed too. Weights' first download and conversion are not timed; each timing is the
median of ``--rounds``.

    .venv/bin/python benchmarks/bench_lpips.py [--images 200] [--reference-images 20] [--metric lpips]
        [--methods 5] [--rounds 1] [--json OUT]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
from datetime import date

import cv2
import numpy as np
import torch

from _common import median_time
from medsr.data import sample
from medsr.data.degrade import Degradation, degrade_image
from medsr.io import read_slices
from medsr.metrics.lpips import load_lpips
from medsr.metrics.references import reference_lpips
from medsr.metrics.registry import Scorer
from medsr.models import load_model

METHODS = ("nearest", "bilinear", "bicubic", "lanczos")


def hr_slices(count: int) -> list[np.ndarray]:
    """``count`` real 512x512 CT slices on [0, 1] (cycling through the two lung volumes)."""
    folder = sample.fetch_samples()
    slices = [
        s.pixels for name in ("lung1", "lung2") for s in read_slices(folder / "pyradiomics" / f"{name}.nrrd")
    ]
    return [np.clip((slices[i % len(slices)] + 1024) / 4095, 0, 1).astype(np.float32) for i in range(count)]


def outputs(hr: np.ndarray, key: str, count: int) -> list[np.ndarray]:
    """``count`` x4 reconstructions of ``hr`` from one LR image (interpolations, then a sharpened bicubic)."""
    lr = degrade_image(hr, Degradation(), key=key)
    out = [load_model(name).enhance(lr) for name in METHODS[:count]]
    while len(out) < count:
        blurred = cv2.GaussianBlur(out[-1], (0, 0), 1.0)
        out.append(np.clip(out[-1] + 0.5 * (out[-1] - blurred), 0, 1).astype(np.float32))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--reference-images", type=int, default=20)
    parser.add_argument("--metric", default="lpips", choices=["lpips", "dists"])
    parser.add_argument("--methods", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args()
    scorer = Scorer(("psnr", "ssim", args.metric))
    scorer.load()
    references = hr_slices(args.images)
    distinct = [(outputs(hr, str(i), 3)[2], hr, None) for i, hr in enumerate(references)]
    shared_hr = references[: -(-args.images // args.methods)]
    shared = [(sr, hr, None) for i, hr in enumerate(shared_hr) for sr in outputs(hr, str(i), args.methods)]
    shared = shared[: args.images]
    run = lambda pairs: scorer.learned_values(args.metric, pairs)  # noqa: E731
    run(distinct[:1])  # warm-up: oneDNN builds its kernels on the first pass
    result = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        "metric": args.metric,
        "images": args.images,
        "distinct_s": median_time(lambda: run(distinct), args.rounds, warmup=0),
        "evaluate_s": median_time(lambda: run(shared), args.rounds, warmup=0),
    }
    print(f"{args.metric}, {args.images} images of 512x512, {result['machine']}")
    print(f"  medsr, each image its own reference: {result['distinct_s']:.1f} s")
    print(f"  medsr, {args.methods} methods per reference (evaluate): {result['evaluate_s']:.1f} s")
    if args.metric == "lpips" and args.reference_images:
        ours = load_lpips()
        # the reference's own memory layout: a contiguous copy of the same weights (medsr's are channels-last)
        reference = reference_lpips(copy.deepcopy(ours).to(memory_format=torch.contiguous_format))
        few = distinct[: args.reference_images]
        tensors = [[torch.from_numpy(v)[None, None].expand(-1, 3, -1, -1) for v in pair[:2]] for pair in few]
        with torch.no_grad():
            reference(*tensors[0], normalize=True)  # warm-up
            seconds = median_time(
                lambda: [reference(a, b, normalize=True) for a, b in tensors], args.rounds, 0
            )
            theirs = [float(reference(a, b, normalize=True)) for a, b in tensors]
        mine = run(few)
        result["reference_s"] = seconds * args.images / len(few)
        result["largest_difference"] = float(np.max(np.abs(np.subtract(mine, theirs))))
        print(
            f"  reference lpips 0.1.4, each image its own reference: {result['reference_s']:.1f} s"
            + (f" (scaled from {len(few)} images)" if len(few) != args.images else "")
        )
        print(
            f"  speed-up: {result['reference_s'] / result['distinct_s']:.2f}x distinct, "
            f"{result['reference_s'] / result['evaluate_s']:.2f}x evaluate; "
            f"largest |medsr - reference| {result['largest_difference']:.1e}"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
