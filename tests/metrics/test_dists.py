"""DISTS against the reference ``DISTS_pytorch`` (0.1) on real slices, on the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import lpips_weights_or_skip, pydicom_file
from medsr.io import read_slices
from medsr.metrics.dists import DISTSNet, dists
from medsr.metrics.lpips import LPIPSNet
from medsr.metrics.references import reference_dists


def _reference(trunk: LPIPSNet):
    """The reference ``DISTS_pytorch`` network on ``trunk``'s weights."""
    try:
        return reference_dists(trunk)
    except ImportError:
        pytest.fail("DISTS-pytorch 0.1 is not installed (make install installs it, without torchvision)")


def _pairs():
    import cv2

    ct = np.clip((read_slices(pydicom_file("CT_small.dcm"))[0].pixels + 1024) / 4095, 0, 1)[:121, 3:118]
    mr = read_slices(pydicom_file("MR_small.dcm"))[0].pixels.astype(np.float64)
    mr = (mr - mr.min()) / np.ptp(mr)
    return [(np.clip(cv2.GaussianBlur(i, (0, 0), 1.0), 0, 1), i) for i in (ct.astype(np.float64), mr)]


def test_dists_equals_the_reference_on_real_slices():
    from medsr.metrics.dists import load_dists

    lpips_weights_or_skip()
    ours = load_dists()
    reference = _reference(ours)
    with torch.no_grad():
        reference.alpha.copy_(ours.alpha)
        reference.beta.copy_(ours.beta)
    assert abs(float(ours.alpha.sum() + ours.beta.sum()) - 1) < 1e-3  # the published weights
    for sr, gt in _pairs():
        a, b = (torch.from_numpy(v).float()[None, None].expand(-1, 3, -1, -1) for v in (sr, gt))
        with torch.no_grad():
            expected = float(reference(a, b))
        assert dists(sr, gt, network=ours) == pytest.approx(expected, abs=1e-5)
        assert 0.01 < expected < 1
    sr, gt = _pairs()[0]
    assert dists(gt, gt, network=ours) == pytest.approx(0, abs=1e-6)
    assert dists(sr * 100, gt * 100, data_range=100, network=ours) == pytest.approx(
        dists(sr, gt, network=ours), abs=1e-6
    )


def test_the_network_is_built_as_the_references_with_random_weights():
    torch.manual_seed(0)
    trunk = LPIPSNet()
    ours = DISTSNet(trunk).eval()
    with torch.no_grad():
        ours.alpha.uniform_(0, 1)
        ours.beta.uniform_(0, 1)
    reference = _reference(trunk)
    with torch.no_grad():
        reference.alpha.copy_(ours.alpha)
        reference.beta.copy_(ours.beta)
    sr, gt = _pairs()[1]
    a, b = (torch.from_numpy(v).float()[None, None].expand(-1, 3, -1, -1) for v in (sr, gt))
    with torch.no_grad():
        expected = float(reference(a, b))
    assert dists(sr, gt, network=ours) == pytest.approx(expected, abs=1e-5)
