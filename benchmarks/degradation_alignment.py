"""Where do the degradations put their LR pixels? Shift and OpenCV-bicubic PSNR on real slices.

For each degradation (bicubic; kspace with taper none, hann and tukey; blur-noise) and each scale
(2, 3, 4, 8), every slice (float32 in [0, 1] by min/max, cropped to a multiple of the scale) is
degraded with ``medsr.data.degrade.degrade_image``, upsampled back with
``cv2.resize(..., interpolation=cv2.INTER_CUBIC)`` (align_corners=False, like the interpolation
baselines), and compared with the HR slice:

* shift dy, dx: median over the slices whose LR image is at least 32 pixels a side ("slices
  measured") of the sub-pixel displacement (HR pixels) of the upsampled LR against the HR, by
  phase correlation (skimage, 1/100 pixel, whole slice low-passed to the LR band, refined
  until the residual is at most 0.01 pixel).
  0 means LR pixel k sits at HR position (k + 0.5) * scale - 0.5.
* PSNR: mean PSNR (dB, data range 1) of the upsampled LR (clipped to [0, 1]) against the HR.
* PSNR realigned: the same after moving the upsampled LR back by the median shift, i.e. what the
  baseline would score on a correctly aligned LR image.

The slices are real images shipped inside installed packages (nothing is downloaded): pydicom's
CT/MR/NM test files, matplotlib's MR head sample and nibabel's 4-D EPI brain; ``--files`` reads
other files with ``medsr.io.read_slices`` instead. Usage:

    .venv/bin/python benchmarks/degradation_alignment.py [--n 20] [--noise-level 0.01]
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from medsr.data.alignment import grid_shift
from medsr.data.degrade import Degradation, crop_to_scale, degrade_image
from medsr.io import read_slices
from medsr.metrics import psnr

SCALES = (2, 3, 4, 8)
CASES = (
    ("bicubic", "none"),
    ("kspace", "none"),
    ("kspace", "hann"),
    ("kspace", "tukey"),
    ("blur-noise", "none"),
)
MIN_LR_SIDE = 32  # shortest LR side (pixels) of the slices the shift is measured on
PYDICOM_FILES = (
    "J2K_pixelrep_mismatch.dcm",
    "693_J2KI.dcm",
    "examples_overlay.dcm",
    "JPEG2000.dcm",
    "CT_small.dcm",
)


@dataclass(frozen=True)
class RealSlice:
    """One real slice: ``pixels`` float32 (H, W) in [0, 1] (min/max of the slice); ``label`` names its source."""

    label: str
    pixels: np.ndarray


def _unit(pixels: np.ndarray) -> np.ndarray:
    """Min/max map to float32 [0, 1]."""
    pixels = np.asarray(pixels, dtype=np.float64)
    span = pixels.max() - pixels.min()
    return ((pixels - pixels.min()) / (span if span > 0 else 1.0)).astype(np.float32)


def default_slices(count: int) -> list[RealSlice]:
    """Up to ``count`` real slices from installed packages' test data, largest images first.

    pydicom: 512x512 head CT (x2), 300x484 abdominal MR, 1024x256 NM, 128x128 CT; matplotlib:
    256x256 MR head (s1045.ima.gz, big-endian uint16); nibabel: 96x128 EPI brain slices
    (example4d.nii.gz, volume 0, slices 5 to 23)."""
    import matplotlib.cbook
    import nibabel
    from pydicom.data import get_testdata_file

    slices = [
        RealSlice(f"pydicom:{name}", _unit(read_slices(get_testdata_file(name))[0].pixels))
        for name in PYDICOM_FILES
    ]
    with matplotlib.cbook.get_sample_data("s1045.ima.gz") as handle:
        head = np.frombuffer(handle.read(), dtype=">u2").reshape(256, 256)
    slices.append(RealSlice("matplotlib:s1045.ima.gz", _unit(head)))
    epi = Path(nibabel.__file__).parent / "tests" / "data" / "example4d.nii.gz"
    for item in read_slices(epi)[5:24]:
        slices.append(
            RealSlice(
                f"nibabel:example4d.nii.gz[{item.meta.extra['volume']}:{item.meta.extra['index']}]",
                _unit(item.pixels),
            )
        )
    return slices[:count]


def file_slices(paths: list[Path], count: int) -> list[RealSlice]:
    """Up to ``count`` slices of the given files (any format ``read_slices`` reads)."""
    slices: list[RealSlice] = []
    for path in paths:
        for item in read_slices(path):
            slices.append(RealSlice(f"{path}[{item.meta.frame}]", _unit(item.pixels)))
            if len(slices) == count:
                return slices
    return slices


def upsample(lq: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """OpenCV bicubic (align_corners=False) to ``shape`` (H, W); float32."""
    return cv2.resize(lq, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def evaluate_case(slices: list[RealSlice], spec: Degradation) -> tuple[float, float, int, float, float]:
    """(median dy, median dx, slices measured, mean PSNR, mean PSNR after realignment) of one degradation.

    The shift is measured on the slices whose LR image is at least ``MIN_LR_SIDE`` pixels on its
    shorter side (smaller ones carry too few low frequencies for a 0.01-pixel estimate); all of
    them if none is that large. PSNR is over every slice."""
    pairs = []
    for index, item in enumerate(slices):
        hr = crop_to_scale(item.pixels, spec.scale)
        pairs.append((hr, upsample(degrade_image(hr, spec, seed=0, key=f"slice-{index}"), hr.shape)))
    measured = [(hr, up) for hr, up in pairs if min(hr.shape) >= MIN_LR_SIDE * spec.scale] or pairs
    shifts = np.array([grid_shift(hr, up, spec.scale) for hr, up in measured])
    dy, dx = (float(value) for value in np.median(shifts, axis=0))
    scores = [psnr(np.clip(up, 0, 1), hr) for hr, up in pairs]
    realigned = [
        psnr(np.clip(ndimage.shift(up.astype(np.float64), (-dy, -dx), order=3, mode="nearest"), 0, 1), hr)
        for hr, up in pairs
    ]
    return dy, dx, len(measured), float(np.mean(scores)), float(np.mean(realigned))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20, help="number of real slices (default 20)")
    parser.add_argument(
        "--noise-level",
        type=float,
        default=0.01,
        help="blur-noise Gaussian noise std on [0, 1] (default 0.01)",
    )
    parser.add_argument(
        "--scales", type=int, nargs="+", default=list(SCALES), help="scales (default 2 3 4 8)"
    )
    parser.add_argument(
        "--files",
        type=Path,
        nargs="+",
        help="read slices from these files instead of the packages' test data",
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module="pydicom")
    logging.getLogger("pydicom").setLevel(logging.ERROR)

    slices = file_slices(args.files, args.n) if args.files else default_slices(args.n)
    print(f"{len(slices)} real slices:")
    for item in slices:
        print(f"  {item.label}  {item.pixels.shape[0]}x{item.pixels.shape[1]}")
    print()
    print(
        "| degradation | scale | shift dy (px) | shift dx (px) | slices measured | PSNR bicubic (dB) | PSNR realigned (dB) |"
    )
    print("|---|---|---|---|---|---|---|")
    start = time.perf_counter()
    for kind, taper in CASES:
        name = kind if kind != "kspace" else f"kspace/{taper}"
        if kind == "blur-noise":
            name += f" (noise {args.noise_level:g})"
        for scale in args.scales:
            spec = Degradation(kind, scale, taper=taper, noise_level=args.noise_level)
            dy, dx, measured, score, realigned = evaluate_case(slices, spec)
            print(
                f"| {name} | x{scale} | {dy:+.2f} | {dx:+.2f} | {measured} | {score:.2f} | {realigned:.2f} |",
                flush=True,
            )
    print(f"\n{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
