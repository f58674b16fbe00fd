"""The paper's detail filter: Gaussian smoothing, then a pixel difference score.

Two scores are offered, by name in ``SCORES`` (the values of a ``--score`` option):

``"equation-1"`` (the default), ``pixel_difference_score``: Equation 1 of the paper as printed,

    P_D = sum_i sum_j |I[i, j] - I[i, j+1]|  +  sum_j sum_i |I[i, j] - I[i+1, j]|

(horizontal plus vertical neighbour differences) of the Gaussian-smoothed image (sigma 5 in the
original code, to stop noise from scoring high). It equals bit for bit the plain double loop of
Equation 1, ``pixel_difference_score_loop``.

``"original-code"``, ``original_code_score``: what the authors' pre-processing script actually
computed, which is not Equation 1. It read each slice from an 8-bit JPEG as an (H, W, 3) array
(the gray value in all three channels), scaled it to [-1, 1] (x / 127.5 - 1), smoothed the whole
3-D array with ``scipy.ndimage.gaussian_filter(sigma=5)`` and added the row-wise neighbour
differences of the smoothed array to those of its ``np.transpose``. Transposing a 3-D array
reverses all three axes, (H, W, 3) -> (3, W, H), so the second pass walks the columns of each
channel again and the vertical differences never enter: the score is 2 x 3 x the horizontal
term (x 2 for the [-1, 1] scale). It ranks slices differently from Equation 1 (the above-mean
rule keeps a different set), so replicating the paper's data selection needs this one.
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np
from scipy import ndimage


def smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian filter in float64: kernel truncated at 4 sigma, mirrored border (``dcb|abcd|cba``,
    as ``scipy.ndimage.gaussian_filter``'s default, computed with OpenCV for speed).
    ``sigma`` 0 means no filter."""
    image = np.asarray(image, dtype=np.float64)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return image
    radius = int(4.0 * sigma + 0.5)
    if min(image.shape) <= radius:  # OpenCV needs the image to be larger than the kernel radius
        return ndimage.gaussian_filter(image, sigma, mode="reflect", truncate=4.0)
    return cv2.GaussianBlur(
        image, (2 * radius + 1, 2 * radius + 1), sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT
    )


def _difference_sum(smoothed: np.ndarray) -> float:
    # The terms in the order a plain double loop visits them (rows then columns for the horizontal
    # differences, columns then rows for the vertical ones), summed sequentially by cumsum with
    # the running total carried from the first sum into the second, so the result equals such a
    # loop bit for bit. |a - b| == |b - a| exactly in IEEE arithmetic.
    horizontal = np.abs(np.diff(smoothed, axis=1))
    vertical = np.abs(np.diff(smoothed.T, axis=1))  # row j holds column j's differences, in loop order
    total = 0.0
    for terms in (horizontal, vertical):
        if terms.size:
            flat = terms.ravel()
            flat[0] += total
            total = float(np.cumsum(flat)[-1])
    return total


def _check_2d(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    return image


def pixel_difference_score(image: np.ndarray, *, sigma: float = 5.0) -> float:
    """Pixel difference score of Equation 1 of the paper, as printed, of a Gaussian-smoothed image.

    This is the paper's formula, not what the authors' code computed (that code never adds the
    vertical differences; see ``original_code_score``).

    Args:
        image: 2-D array (H, W), any real dtype; [0, 1] images give comparable scores.
        sigma: Gaussian filter sigma in pixels (``smooth``; 0 disables the filter).

    Returns:
        Sum of absolute differences between horizontally and vertically adjacent pixels of the
        smoothed image (>= 0, in the image's units). Vectorised; equal bit for bit to
        ``pixel_difference_score_loop``, a plain double loop of Equation 1.
    """
    return _difference_sum(smooth(_check_2d(image), sigma))


# The original script scaled its 8-bit images to [-1, 1] (x / 127.5 - 1): an image u / 255 in
# [0, 1] becomes 2 * (u / 255) - 1, which doubles every neighbour difference.
_ORIGINAL_SCALE = 2.0
# Channels (gray replicated to RGB) times passes (the array and its np.transpose, both of which
# sum the horizontal differences).
_ORIGINAL_CHANNELS = 3
_ORIGINAL_PASSES = 2


def original_code_score(image: np.ndarray, *, sigma: float = 5.0) -> float:
    """The detail score the authors' pre-processing code computed (not Equation 1), vectorised.

    Semantics: ``image`` (H, W) is put in the original's form, the (H, W, 3) float64 array
    ``2 * image - 1`` (the gray value in three channels, scaled from [0, 1] to [-1, 1] as the
    original's ``x / 127.5 - 1`` did to 8-bit values ``x = 255 * image``). That array is smoothed
    with ``scipy.ndimage.gaussian_filter(sigma=sigma)`` over all three axes (mode 'reflect',
    truncate 4), and the score is the sum over channels c, rows i and columns j of
    ``|S[i, j, c] - S[i, j+1, c]|``, counted twice: once for the array and once for its
    ``np.transpose`` (3, W, H), whose rows are again the columns of each channel. So

        original_code_score(image) == 2 passes x 3 channels x 2 (scale) x horizontal term
                                   == 12 * sum_i sum_j |G[i, j] - G[i, j+1]|,

    with G the 2-D Gaussian-smoothed [0, 1] image; the vertical term of Equation 1 is absent.

    How it is computed: the smoothing along the channel axis is a no-op up to float rounding
    (three equal values, reflected, under a kernel whose weights sum to 1: about 1 ulp), and every
    channel is the same, so one 2-D ``smooth`` (OpenCV, equal to scipy's filter to ~1e-16) and
    one horizontal difference sum suffice. It matches a plain transcription of the original loop
    on the same float64 input to ~1e-13 relative, so it keeps the same slices under the
    above-mean rule (barring ties at that level), and costs less than Equation 1.

    Not reproduced: the original read 8-bit JPEGs (quantise ``image`` to multiples of 1/255
    first to imitate that) and worked in float32 (Keras ``img_to_array``), summing ~H*W float32
    terms into one accumulator; this is computed in float64 and so is free of that rounding.

    Args:
        image: 2-D array (H, W), any real dtype; the intended input is a [0, 1] image (the
            [-1, 1] rescale only doubles the score, so any range ranks the same way).
        sigma: Gaussian filter sigma in pixels (the original used 5; 0 disables the filter).

    Returns:
        The original code's score in its [-1, 1] scaling, >= 0 (0.0 for images narrower than 2).
    """
    smoothed = smooth(_check_2d(image), sigma)
    horizontal = float(np.abs(np.diff(smoothed, axis=1)).sum()) if smoothed.size else 0.0
    return _ORIGINAL_PASSES * _ORIGINAL_CHANNELS * _ORIGINAL_SCALE * horizontal


class ScoreFunction(Protocol):
    """A detail score: 2-D image (H, W) and Gaussian sigma in, float >= 0 out (higher = more detail)."""

    def __call__(self, image: np.ndarray, *, sigma: float = ...) -> float: ...


SCORES: dict[str, ScoreFunction] = {
    "equation-1": pixel_difference_score,
    "original-code": original_code_score,
}
"""Detail scores by name (the values of a ``--score`` option); ``"equation-1"`` is the default."""


def detail_score(image: np.ndarray, *, sigma: float, method: str = "equation-1") -> float:
    """The detail score ``method`` (a key of ``SCORES``) of a 2-D image (H, W), e.g. in [0, 1].

    Raises:
        ValueError: for an unknown ``method``, naming the valid ones.
    """
    try:
        score = SCORES[method]
    except (KeyError, TypeError):
        valid = ", ".join(repr(name) for name in SCORES)
        raise ValueError(f"unknown detail score method {method!r}; valid methods: {valid}") from None
    return score(image, sigma=sigma)


def normalised_score(score: float, shape: tuple[int, int]) -> float:
    """Score divided by sqrt(H * W), so that images of different sizes compare fairly.

    The same anatomy imaged at s times the resolution has s^2 pixels whose neighbour
    differences are 1/s as large, so the score grows as s and ``score / sqrt(H * W)`` stays put.
    For images of one size (the paper's 512x512) it orders images exactly as the score.
    """
    height, width = shape
    return score / float(np.sqrt(height * width)) if height * width else 0.0


def pixel_difference_score_loop(image: np.ndarray, *, sigma: float = 5.0) -> float:
    """Reference implementation: a plain Python double loop of Equation 1 as printed (slow).

    Not the authors' original code, which differs (``original_code_score``)."""
    smoothed = smooth(np.asarray(image), sigma)
    rows, cols = smoothed.shape
    total = 0.0
    for i in range(rows):
        for j in range(cols - 1):
            total += abs(smoothed[i, j] - smoothed[i, j + 1])
    for j in range(cols):
        for i in range(rows - 1):
            total += abs(smoothed[i, j] - smoothed[i + 1, j])
    return float(total)
