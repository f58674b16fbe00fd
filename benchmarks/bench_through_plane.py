"""Benchmark: through-plane super-resolution against known truth.

Near-isotropic real volumes are made thick along one axis (``medsr.isotropic.thick_slices``:
factors 2, 4, 6 or fractional ones such as 4.5; Gaussian or rect profile, FWHM or width = the spacing, or half of it: a gap), then
reconstructed by each method on the same thick volume, and scored against the truth:

- ``psnr``: over the whole reconstructed volume (peak = the truth's range);
- ``psnr_body``: inside the body (``metrics.body_mask`` of every truth slice);
- ``psnr_between``: on the slices in the outer half of each slice spacing only (farther than a
  quarter spacing from every acquired slice's centre: the ones a scanner never came near; all of
  them at factor 2);
- ``ssim``: 3-D SSIM (scikit-image, Gaussian window sigma 1.5) over the volume.

Volumes: ``s1``: the sample data's pycortex S1 T1 head (256^3, 1 mm; the built-in model medsr-x4
was trained on its axial slices, so its rows are marked and ``medsr-scratch`` is the clean
control); ``mni``: the MNI152 2009a template from the nilearn 0.14.1 wheel (1 mm; held out from
everything; an average of many heads, so smoother than one scan). Slices are thick along voxel
axis 2: anterior-posterior for S1 (thick coronal slices), inferior-superior for MNI (thick axial
slices).

Cases: ``f<factor>-<profile>[-gap]`` (``f4.5-gaussian``: 4.5 mm slices from 1 mm voxels), and ``...@<profile>`` where the methods are told another
profile than the one simulated (a wrong acquisition model).

Methods: ``bspline`` (cubic B-spline along the slice axis: scipy, the usual baseline), ``medsr``
(``medsr.isotropic``, from medsr-x4, ``--time-budget`` of training), ``medsr-scratch`` (the
same from random weights), ``eclare`` (the ``eclare`` PyPI package in its own environment, given
by ``--eclare-python``: see ``benchmarks/eclare_peer/``). Wall times include training.

    .venv/bin/python benchmarks/bench_through_plane.py [--volumes s1,mni] [--cases f4-gaussian]
        [--methods bspline,medsr] [--time-budget 300] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np

from medsr.data import sample
from medsr.isotropic import ThroughPlaneOptions, bspline_upsample, fine_count, thick_slices, through_plane
from medsr.metrics.classic import body_mask

NILEARN = sample.SampleArchive(
    "nilearn",
    "0.14.1",
    "nilearn-0.14.1-py3-none-any.whl",
    "725206484e9fb3f6691f9c2d20204a068759d5072f12055324702ee0cb2bbe8a",
    "BSD-3-Clause",
)
MNI = sample.ArchiveMember(
    "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "mni152_2009a.nii.gz",
    "421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6",
)
AXIS = 2


def load_truth(name: str) -> np.ndarray:
    """The isotropic truth volume, float32 in its stored units."""
    import nibabel as nib

    if name == "s1":
        path = sample.fetch_samples() / "pycortex" / "S1_T1.nii.gz"
    else:
        folder = sample.cache_dir() / "bench"
        path = folder / MNI.dest
        if not path.is_file():
            sample.fetch_archive_members(NILEARN, [MNI], folder)
    return np.asarray(nib.load(str(path)).dataobj, np.float32)


def parse_case(case: str) -> tuple[float, str, float, str]:
    """``f4-gaussian``, ``f4-rect-gap`` or ``f4-rect@gaussian`` -> (factor, simulated profile,
    thickness in fine voxels, the profile the methods are told: after ``@``, else the simulated one)."""
    simulated, _, told = case.partition("@")
    parts = simulated.split("-")
    factor = float(parts[0][1:])
    return factor, parts[1], factor * (0.5 if parts[-1] == "gap" else 1.0), told or parts[1]


def scores(result: np.ndarray, truth: np.ndarray, factor: float, mask: np.ndarray) -> dict[str, float]:
    """PSNR (whole, body, between slices) and 3-D SSIM of ``result`` against ``truth``."""
    from skimage.metrics import structural_similarity

    peak = float(truth.max() - truth.min())
    error = (result.astype(np.float64) - truth) ** 2
    offsets = np.abs(
        (np.arange(truth.shape[AXIS]) + 0.5) % factor - factor / 2
    )  # from the nearest slice centre
    between = offsets >= factor / 4

    def psnr(values: np.ndarray) -> float:
        return float(10 * np.log10(peak**2 / values.mean()))

    return {
        "psnr": psnr(error),
        "psnr_body": psnr(error[mask]),
        "psnr_between": psnr(error[:, :, between]),
        "ssim": float(
            structural_similarity(
                result, truth, data_range=peak, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
            )
        ),
    }


def run_method(
    method: str, thick: np.ndarray, factor: float, profile: str, thickness: float, args
) -> tuple[np.ndarray, float, dict]:
    """(reconstruction, wall seconds, details) of one method on one thick volume."""
    began = time.perf_counter()
    details: dict = {}
    if method == "bspline":
        out = bspline_upsample(thick, factor, axis=AXIS)
    elif method in ("medsr", "medsr-scratch"):
        options = ThroughPlaneOptions(
            profile=profile,
            thickness=thickness,
            time_budget=args.time_budget,
            start="scratch" if method == "medsr-scratch" else ThroughPlaneOptions().start,
        )
        result = through_plane(thick, (1.0, 1.0, factor), slice_axis=AXIS, options=options, progress=True)
        out = result.volume
        details = {"iterations": result.fit.iterations, "started_from": result.started_from}
    elif method == "eclare":
        from eclare_peer.driver import run_eclare

        out, details = run_eclare(args.eclare_python, thick, factor, thickness, profile, args.time_budget)
    else:
        raise SystemExit(f"unknown method {method}")
    return out, time.perf_counter() - began, details


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", default="s1,mni")
    parser.add_argument("--cases", default="f4-gaussian")
    parser.add_argument("--methods", default="bspline,medsr")
    parser.add_argument("--time-budget", type=float, default=300.0)
    parser.add_argument("--eclare-python", help="python of the environment where eclare is installed")
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    for volume in args.volumes.split(","):
        truth_all = load_truth(volume)
        for case in args.cases.split(","):
            factor, simulated, thickness, profile = parse_case(case)
            thick = thick_slices(truth_all, AXIS, factor, thickness, simulated)
            usable = fine_count(thick.shape[AXIS], factor)  # the voxels under whole slices
            truth = truth_all[:, :, :usable]
            peak = float(truth.max() - truth.min())
            mask = np.stack(
                [body_mask((truth[:, :, k] - truth.min()) / peak) for k in range(usable)], axis=AXIS
            )
            for method in args.methods.split(","):
                out, seconds, details = run_method(method, thick, factor, profile, thickness, args)
                row = {
                    "volume": volume,
                    "case": case,
                    "method": method,
                    "thick_shape": list(thick.shape),
                    "seconds": seconds,
                    **scores(out, truth, factor, mask),
                    **details,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"\n{date.today().isoformat()}, {machine}\n")
    print("| volume | case | method | PSNR | PSNR body | PSNR between | SSIM | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['volume']} | {r['case']} | {r['method']} | {r['psnr']:.2f} | {r['psnr_body']:.2f} | "
            f"{r['psnr_between']:.2f} | {r['ssim']:.4f} | {r['seconds']:.0f} |"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"date": date.today().isoformat(), "machine": machine, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
