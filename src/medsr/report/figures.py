"""Comparison figures in the style of the paper's Figures 4-5: HR, LR and every method side by
side, the same zoomed inset in each panel, and absolute-error maps on one shared scale."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from medsr.fsutil import atomic_path


def detail_box(image: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the ``size`` x ``size`` window with the most local variance."""
    size = max(8, min(size, *image.shape))
    image = image.astype(np.float64)
    variance = cv2.blur(image * image, (size, size)) - cv2.blur(image, (size, size)) ** 2
    half = size // 2
    inner = variance[half : image.shape[0] - (size - half) + 1, half : image.shape[1] - (size - half) + 1]
    top, left = np.unravel_index(np.argmax(inner), inner.shape)
    return int(top), int(left), size, size


def _with_inset(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Grayscale image -> RGB with the box outlined and a 2x magnified copy in the lower right."""
    top, left, height, width = box
    rgb = np.dstack([np.clip(image, 0, 1)] * 3).astype(np.float32)
    zoom_h = min(2 * height, image.shape[0] // 2)
    zoom_w = min(2 * width, image.shape[1] // 2)
    crop = image[top : top + height, left : left + width]
    zoom = cv2.resize(crop, (zoom_w, zoom_h), interpolation=cv2.INTER_NEAREST)
    rgb[-zoom_h:, -zoom_w:] = np.clip(zoom, 0, 1)[..., None]
    thickness = max(1, image.shape[0] // 256)
    yellow = (1.0, 0.85, 0.0)
    cv2.rectangle(rgb, (left, top), (left + width - 1, top + height - 1), yellow, thickness)
    cv2.rectangle(
        rgb,
        (image.shape[1] - zoom_w, image.shape[0] - zoom_h),
        (image.shape[1] - 1, image.shape[0] - 1),
        yellow,
        thickness,
    )
    return rgb


def comparison_figure(
    path: str | Path,
    hr: np.ndarray,
    lq: np.ndarray,
    outputs: dict[str, np.ndarray],
    scores: dict[str, tuple[float, float]],
    title: str,
    mask: np.ndarray | None = None,
    maps: dict[str, np.ndarray] | None = None,
) -> None:
    """Write a PNG: row 1 HR | LR | methods (with inset), row 2 the absolute error of each method,
    row 3 (with ``maps``) each method's LPIPS map on one shared scale.

    Args:
        hr: (H, W) in [0, 1]; lq: (h, w) in [0, 1] (shown enlarged by nearest neighbour).
        outputs: method name -> SR image (H, W) in [0, 1].
        scores: method name -> (PSNR dB, SSIM) shown under each panel.
        mask: the foreground mask used by the masked metrics (shown under the HR panel).
        maps: method name -> LPIPS map (H, W) (``metrics.lpips.lpips_map``), or None.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    box = detail_box(hr, min(hr.shape) // 4)
    lq_big = cv2.resize(lq, (hr.shape[1], hr.shape[0]), interpolation=cv2.INTER_NEAREST)
    errors = {name: np.abs(sr.astype(np.float64) - hr) for name, sr in outputs.items()}
    error_max = max([float(np.percentile(e, 99.5)) for e in errors.values()] + [1e-3])
    columns, rows = 2 + len(outputs), 3 if maps else 2
    figure, axes = plt.subplots(
        rows, columns, figsize=(2.4 * columns + 0.8, 2.7 * rows), squeeze=False, layout="constrained"
    )
    panels = [("HR (original)", hr, ""), (f"LR input ({lq.shape[0]}x{lq.shape[1]})", lq_big, "")]
    panels += [
        (name, sr, f"{scores[name][0]:.2f} dB / {scores[name][1]:.4f}") for name, sr in outputs.items()
    ]
    for column, (name, image, caption) in enumerate(panels):
        axis = axes[0, column]
        axis.imshow(_with_inset(image, box), interpolation="nearest")
        axis.set_title(name, fontsize=9)
        axis.set_xlabel(caption, fontsize=8)
        axis.set_xticks([]), axis.set_yticks([])
        bottom = axes[1, column]
        bottom.set_xticks([]), bottom.set_yticks([])
        if name in errors:
            shown = bottom.imshow(
                errors[name], cmap="inferno", vmin=0, vmax=error_max, interpolation="nearest"
            )
            bottom.set_title(f"|{name} - HR|", fontsize=8)
        elif column == 0 and mask is not None:
            bottom.imshow(mask, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            bottom.set_title("foreground mask", fontsize=8)
        else:
            bottom.axis("off")
    if errors:
        figure.colorbar(shown, ax=axes[1, -1], shrink=0.9, label="absolute error")
    if maps:
        _map_row(figure, axes[2], [p[0] for p in panels], maps)
    figure.suptitle(title, fontsize=10)
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(figure)


def _map_row(figure, axes, names: list[str], maps: dict[str, np.ndarray]) -> None:
    """The third row: each method's LPIPS map under its panel, on one scale (99.5th percentile)."""
    top = max([float(np.percentile(m, 99.5)) for m in maps.values()] + [1e-6])
    shown = None
    for axis, name in zip(axes, names):
        axis.set_xticks([]), axis.set_yticks([])
        if name in maps:
            shown = axis.imshow(maps[name], cmap="viridis", vmin=0, vmax=top, interpolation="nearest")
            axis.set_title(f"LPIPS map, {name}", fontsize=8)
        else:
            axis.axis("off")
    if shown is not None:
        figure.colorbar(shown, ax=axes[-1], shrink=0.9, label="LPIPS distance")


def perception_distortion_figure(path: Path, block: dict, names: list[str], title: str) -> None:
    """The perception-distortion plane (Blau and Michaeli 2018): one point per method at its mean
    PSNR (distortion; right is better) and mean LPIPS (perception; down is better), with 95%
    patient t-intervals as bars (none where one patient gives none).

    Args:
        block: a summary block of ``medsr evaluate`` with ``psnr`` and ``lpips`` scored.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.0, 4.5), dpi=120)
    for name in names:
        psnr, lpips = block["methods"][name]["psnr"], block["methods"][name]["lpips"]

        def bar(entry):
            low, high = entry["ci_low"], entry["ci_high"]
            return [[entry["mean"] - low], [high - entry["mean"]]] if np.isfinite(low) else None

        axes.errorbar(
            psnr["mean"], lpips["mean"], xerr=bar(psnr), yerr=bar(lpips), fmt="o", capsize=3, label=name
        )
        axes.annotate(
            name, (psnr["mean"], lpips["mean"]), textcoords="offset points", xytext=(5, 5), fontsize=8
        )
    axes.set_xlabel("PSNR (dB), higher is better")
    axes.set_ylabel("LPIPS, lower is better")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
