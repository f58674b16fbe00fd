"""Benchmark: ``medsr evaluate`` of bicubic on 200 test images of 512x512 (real chest CT).

The data set: the sample data's lung CT written as 512x512 DICOM (4 copies, 8 patients), prepared
with a 200/0/200 patient split and no detail filter. Times ``evaluate`` end to end (read PNG,
degrade, upsample, body mask, PSNR/SSIM whole and masked, bootstrap CIs, tables, 4 figures; with
``--metrics psnr,ssim``, not the default set, which adds LPIPS: ``bench_lpips.py`` times that),
median of ``--repeats`` runs. Side by side, the reference implementation of the metrics:
``skimage.metrics`` PSNR + SSIM (Gaussian, sigma 1.5) on the same 200 image pairs.

Usage: python benchmarks/bench_evaluate.py [--repeats 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from _common import median_time, write_ct_dicom_tree
from medsr.data.degrade import Degradation, crop_to_scale, degrade_image
from medsr.data.manifest import read_manifest
from medsr.data.prepare import KeepRule, PrepareOptions, prepare
from medsr.data.split import SplitSpec
from medsr.evaluate import EvalOptions, evaluate
from medsr.io.raster import read_png16
from medsr.metrics import body_mask, image_scores
from medsr.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_ct_dicom_tree(tmp / "src", 4)
        prepare(
            [tmp / "src"],
            tmp / "ds",
            PrepareOptions(size=512, keep=KeepRule("all"), split=SplitSpec.parse("200,0,200")),
        )
        rows = read_manifest(tmp / "ds", split="test")
        model = load_model("bicubic")
        medsr_time = median_time(
            lambda: evaluate(tmp / "ds", [model], tmp / "eval", EvalOptions(metrics=("psnr", "ssim"))),
            args.repeats,
            warmup=0,
        )
        pairs = []
        for row in rows:
            hr = crop_to_scale(read_png16(tmp / "ds" / row["file"]), 4)
            pairs.append(
                (
                    model.enhance(degrade_image(hr, Degradation(), key=row["id"])).astype(np.float64),
                    hr.astype(np.float64),
                )
            )

        def skimage_metrics():
            for sr, hr in pairs:
                peak_signal_noise_ratio(hr, sr, data_range=1.0)
                structural_similarity(
                    hr, sr, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
                )

        def medsr_metrics():
            for sr, hr in pairs:
                image_scores(sr, hr, body_mask(hr))

        reference = median_time(skimage_metrics, args.repeats, warmup=0)
        ours = median_time(medsr_metrics, args.repeats, warmup=0)
    result = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": sys.version.split()[0],
        "images": len(rows),
        "evaluate_bicubic_s": round(medsr_time, 2),
        "medsr_metrics_whole_and_masked_s": round(ours, 2),
        "skimage_psnr_ssim_whole_only_s": round(reference, 2),
        "metrics_speedup_vs_skimage": round(reference / ours, 2),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
