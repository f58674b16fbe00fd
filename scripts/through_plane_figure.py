"""Make the README's through-plane picture: a coronal reformat of the real thick-slice brain MR of the
sample data (pyradiomics brain1: 6.5 mm axial slices), as acquired, by cubic B-spline and by
``medsr enhance --through-plane`` (run here exactly as the CLI runs it, with a 60 s budget).

    .venv/bin/python scripts/through_plane_figure.py [--out docs/through_plane_brain1.png] [--time-budget 60]

Prints the factor, the output grid and the wall time of the medsr run. There is no thin-slice truth
for this scan: the picture shows what the method does, not that it is right.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def coronal(volume: np.ndarray, column: int) -> np.ndarray:
    """The coronal plane (superior up) of an LPS (X, Y, Z) volume at ``column`` along Y."""
    return np.flipud(volume[:, column, :].T)


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nrrd

    from medsr.data import sample
    from medsr.isotropic import ThroughPlaneOptions, bspline_upsample
    from medsr.isotropic.run import enhance_through_plane

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/through_plane_brain1.png"))
    parser.add_argument("--time-budget", type=float, default=60.0)
    args = parser.parse_args()
    source = sample.fetch_samples() / "pyradiomics" / "brain1.nrrd"
    thick, header = nrrd.read(str(source))
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        report = enhance_through_plane(
            [source], Path(tmp), ThroughPlaneOptions(time_budget=args.time_budget), progress=True
        )
        seconds = time.perf_counter() - began
        if report.failed:
            raise SystemExit(f"failed: {report.failed}")
        result, written = nrrd.read(str(Path(tmp) / source.name))
    spacing = np.linalg.norm(np.asarray(header["space directions"], float), axis=1)
    fine = np.linalg.norm(np.asarray(written["space directions"], float), axis=1)
    factor = spacing[2] / fine[2]
    print(f"{thick.shape} at {spacing.round(3)} mm -> {result.shape} at {fine.round(3)} mm")
    print(f"{factor:.3f} slices per slice; medsr --through-plane took {seconds:.0f} s")
    spline = bspline_upsample(thick.astype(np.float32), factor, axis=2)
    column = thick.shape[1] // 2
    panels = {
        f"{spacing[2]:g} mm slices as acquired": coronal(thick, column),
        "cubic B-spline": coronal(spline, column),
        "medsr --through-plane": coronal(result, column),
    }
    width, height = thick.shape[0] * spacing[0], thick.shape[2] * spacing[2]
    low, high = np.percentile(thick, [0.5, 99.5])
    figure, axes = plt.subplots(1, 3, figsize=(12, 12 * height / width / 3 + 0.4))
    for axis, (title, plane) in zip(axes, panels.items()):
        axis.imshow(
            plane, cmap="gray", vmin=low, vmax=high, extent=(0, width, 0, height), interpolation="nearest"
        )
        axis.set_title(title, loc="left", fontsize=11)
        axis.axis("off")
    figure.tight_layout(pad=0.3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
