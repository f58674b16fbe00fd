from __future__ import annotations

import numpy as np
import pytest

from medsr.errors import MedsrError
from medsr.io import read_slices
from medsr.models import SRModel, build_model, list_models, load_model
from medsr.models.builtin import builtin_names


@pytest.mark.parametrize("name", [n for n in list_models() if n not in builtin_names()])
@pytest.mark.parametrize("scale", [2, 4])
def test_every_registered_model_upscales_real_images(name, scale, ct_small):
    model = build_model(name, scale=scale)
    assert isinstance(model, SRModel) and model.name == name and model.scale == scale
    pixels = read_slices(ct_small)[0].pixels
    lq = np.clip((pixels[:64, :48] + 1024) / 4095, 0, 1)
    sr = model.enhance(lq)
    assert sr.shape == (64 * scale, 48 * scale) and sr.dtype == np.float32
    assert 0.0 <= sr.min() and sr.max() <= 1.0
    batch = model.enhance_batch(np.stack([lq, lq])[:, None])
    assert batch.shape == (2, 1, 64 * scale, 48 * scale)
    np.testing.assert_allclose(batch[1, 0], sr, atol=1e-6)  # networks: batched kernels round differently


def test_interpolations_are_the_opencv_kernels(ct_small):
    import cv2

    lq = np.clip((read_slices(ct_small)[0].pixels[:32, :32] + 1024) / 4095, 0, 1).astype(np.float32)
    expected = np.clip(cv2.resize(lq, (128, 128), interpolation=cv2.INTER_CUBIC), 0, 1)
    np.testing.assert_array_equal(load_model("bicubic").enhance(lq), expected)
    np.testing.assert_array_equal(load_model("nearest").enhance(lq)[::4, ::4], lq)


def test_unknown_model_names_the_known_ones():
    with pytest.raises(MedsrError, match="unknown model 'srgan9'; known models: .*bicubic"):
        load_model("srgan9")
