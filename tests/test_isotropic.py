"""Through-plane super-resolution: the slice profile, the geometry of what is written (NIfTI, NRRD,
DICOM), bad input, and that the trained network beats cubic B-spline on a real head MRI."""

from __future__ import annotations

import dataclasses

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from conftest import pydicom_file, tree_digest
from medsr.errors import MedsrError
from medsr.isotropic import (
    NothingToDo,
    ThroughPlaneOptions,
    bspline_upsample,
    fine_count,
    plan_factor,
    thick_slices,
    through_plane,
)
from medsr.isotropic.profile import profile_weights

QUICK = ThroughPlaneOptions(time_budget=60, max_iterations=2, device="cpu")


def _head(size: int = 64) -> np.ndarray:
    """A real T1 head MRI block (the sample data's pycortex S1, 1 mm isotropic), float32 0..255."""
    import nibabel as nib

    from medsr.data import sample

    image = nib.load(str(sample.fetch_samples() / "pycortex" / "S1_T1.nii.gz"))
    start = 128 - size // 2
    return np.asarray(image.dataobj, np.float32)[
        start : start + size, start : start + size, start : start + size
    ]


def test_rect_slices_average_the_voxels_under_them_and_a_gap_leaves_voxels_out():
    fine = np.arange(24, dtype=np.float32)
    assert thick_slices(fine, 0, 4, 4, "rect").tolist() == [1.5, 5.5, 9.5, 13.5, 17.5, 21.5]
    assert thick_slices(fine, 0, 4, 2, "rect").tolist() == [1.5, 5.5, 9.5, 13.5, 17.5, 21.5]  # middle two
    first, weights = profile_weights("rect", 2, 0.5)
    assert weights[weights > 0].tolist() == [0.5, 0.5]  # a 2-voxel gap between 2-voxel slices
    assert thick_slices(fine, 0, 3, 1, "rect").tolist() == [1, 4, 7, 10, 13, 16, 19, 22]
    first, weights = profile_weights("rect", 2.5, 0.0)  # non-integer thickness: partial voxels
    assert weights[weights > 0].tolist() == pytest.approx([0.3, 0.4, 0.3])  # 0.75, 1, 0.75 voxels


def test_a_fractional_factor_places_slices_between_voxels():
    fine = np.arange(20, dtype=np.float32)
    # 2.5 voxels per slice: slice 0 covers voxels 0, 1 and half of 2; slice 1 the other half of 2, 3, 4
    assert thick_slices(fine, 0, 2.5, 2.5, "rect").tolist() == pytest.approx(
        [0.8, 3.2, 5.8, 8.2, 10.8, 13.2, 15.8, 18.2]
    )
    assert fine_count(8, 2.5) == 20 and fine_count(3, 4.5) == 13 and fine_count(3, 1 / 3 * 9) == 9
    assert thick_slices(np.zeros((3, 5)), 0, 4.0, 4.0, "rect").shape == (0, 5)  # shorter than a slice


@pytest.mark.parametrize("factor", [4.0, 5.12, 6.144])
def test_training_pairs_line_up_also_when_flipped(factor):
    """On a ramp along the degraded axis, thick row i of every pair must sit (i + 0.5) * factor - 0.5
    fine rows from the pair's first fine row, in the direction the fine rows run, whatever the
    flips; a pair misaligned by 0.1 voxel fails."""
    from medsr.isotropic.fit import FitSettings, PairSampler

    ramp = np.arange(400, dtype=np.float32)
    volume = np.stack([ramp[:, None] + ramp[None, :] * 0.5] * 2)  # (2, 400, 400): both axes ramps
    sampler = PairSampler(volume, factor, factor, "rect", FitSettings(seed=3))
    offsets = (np.arange(sampler.rows) + 0.5) * factor - 0.5

    def check(thick, fine):
        assert fine.shape == (fine_count(sampler.rows, factor), sampler.columns)
        step = fine[1, 0] - fine[0, 0]  # +-1 along the ramp, +-0.5 along the other axis
        # voxels are constant inside, so slices ending mid-voxel average a staircase: < 0.05 off
        np.testing.assert_allclose(
            thick - fine[:1], np.broadcast_to(step * offsets[:, None], thick.shape), atol=0.05
        )
        return float(np.sign(step))

    columns = volume[0][:, : sampler.columns]
    for a in range(int(400 // factor) - sampler.rows + 1):  # every patch position, both ways
        start = int(np.floor(a * factor + 1e-6))
        assert check(*sampler._cut(columns, start)) == 1
        if start >= sampler.overhang:  # as _patch flips
            assert check(*sampler._cut(columns[::-1], 400 - start - sampler.fine_rows)) == -1
    assert sampler.overhang == (0 if factor == 4 else 1)
    assert {check(*sampler._patch()) for _ in range(40)} == {-1.0, 1.0}  # as training draws them


@pytest.mark.parametrize("size", [1, 2, 3, 7])
@pytest.mark.parametrize(
    ("thickness", "profile"), [(0.3, "rect"), (1.0, "gaussian"), (4.5, "rect"), (13.0, "gaussian")]
)
def test_slices_beyond_the_ends_see_the_mirror_image(size, thickness, profile):
    """Against a brute force: the array mirrored (half-sample symmetric) far out, each slice the
    profile's weights on it; centres inside, at the edges and far outside."""
    from medsr.isotropic.profile import slices_at

    values = np.random.default_rng(size).random(size).astype(np.float32)
    reps = 40 // size + 2
    mirrored = np.tile(np.concatenate([values, values[::-1]]), 2 * reps)  # period 2 * size
    origin = reps * 2 * size  # index of values[0] in ``mirrored``
    centres = np.array([-50.3, -3.5, -0.5, 0.0, size / 2, size - 0.5, size + 2.25, 90.1])
    expected = []
    for centre in centres:
        below = int(np.floor(centre))
        first, weights = profile_weights(profile, thickness, centre - below)
        index = origin + below + first + np.arange(len(weights))
        expected.append(float(weights @ mirrored[np.mod(index, len(mirrored))]))
    np.testing.assert_allclose(slices_at(values, 0, centres, thickness, profile), expected, atol=1e-5)


def test_gaussian_slices_have_the_thickness_as_fwhm_and_keep_constants():
    first, weights = profile_weights("gaussian", 4.0, 0.5)
    centres = np.arange(len(weights)) + first - 0.5  # voxel centres relative to the slice centre
    assert weights.sum() == pytest.approx(1) and (weights * centres).sum() == pytest.approx(0, abs=1e-6)
    sigma = np.sqrt((weights * centres**2).sum() - 1 / 12)  # voxel integration adds 1/12
    assert 2 * np.sqrt(2 * np.log(2)) * sigma == pytest.approx(4.0, rel=1e-3)
    volume = np.full((5, 6, 40), 7.0, np.float32)
    assert np.allclose(thick_slices(volume, 2, 4, 6.0, "gaussian"), 7.0)
    assert thick_slices(volume, 2, 4, 6.0, "gaussian").shape == (5, 6, 10)


def test_bspline_baseline_lies_on_the_same_grid():
    ramp = np.arange(400, dtype=np.float32).reshape(1, 1, 400)
    thick = thick_slices(ramp, 2, 4, 4, "rect")  # slice centres at 1.5, 5.5, ...
    upsampled = bspline_upsample(thick, 4, axis=2)
    assert upsampled.shape == (1, 1, 400)
    middle = slice(80, -80)  # away from the mirrored ends, where a ramp is not a ramp
    assert np.allclose(upsampled[0, 0, middle], ramp[0, 0, middle], atol=1e-3)  # back on the fine voxels
    thick = thick_slices(ramp, 2, 4.5, 4.5, "rect")  # a fractional factor: the same grid rule
    upsampled = bspline_upsample(thick, 4.5, axis=2)
    assert upsampled.shape == (1, 1, 396)  # 88 whole slices of 4.5 voxels
    # voxels are constant inside, so slices ending mid-voxel average a staircase: off a ramp by < 0.05
    assert np.allclose(upsampled[0, 0, 80:-80], ramp[0, 0, 80:-84], atol=0.05)


def test_bspline_baseline_is_scipy_zoom_for_whole_factors():
    from scipy import ndimage

    volume = _head(32)[:, :, ::4]
    for factor in (2, 4):
        zoomed = ndimage.zoom(volume, (1, 1, factor), order=3, mode="reflect", grid_mode=True)
        assert np.array_equal(bspline_upsample(volume, factor, axis=2), zoomed)


def test_the_network_resamples_rows_for_a_fractional_factor():
    import torch
    import torch.nn.functional as F

    from medsr.isotropic.network import ThroughPlaneNet, resample_rows, subpixels

    x = torch.rand(2, 1, 9, 5)
    whole = resample_rows(x, 4.0, 36)
    assert torch.equal(whole, F.interpolate(x, size=(36, 5), mode="bicubic", align_corners=False))
    x = torch.rand(2, 1, 40, 5)  # row m at input row (m + 0.5) / 2.5 - 0.5, as torch's bicubic does
    expected = F.interpolate(x, scale_factor=(2.5, 1), mode="bicubic", recompute_scale_factor=False)
    assert torch.allclose(resample_rows(x, 2.5, 100), expected, atol=1e-5)
    shrunk = F.interpolate(x, scale_factor=(0.9, 1), mode="bicubic", recompute_scale_factor=False)
    assert torch.allclose(resample_rows(x, 0.9, 36), shrunk, atol=1e-5)  # sub-pixels to a coarser grid
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert resample_rows(x, 2.5, 100).dtype == torch.float32  # the skip path is not rounded to bf16
    network = ThroughPlaneNet(4.5)
    assert network.subpixels == 5 and network(torch.rand(1, 1, 8, 16)).shape == (1, 1, 36, 16)
    assert ThroughPlaneNet(4.05).subpixels == 4  # 1.25 % above 4: four sub-pixels, stretched a little
    assert [subpixels(f) for f in (1.3, 4.08, 4.1, 51.01, 3.07)] == [2, 4, 5, 51, 4]  # within 2 % above


def test_factor_follows_the_target_and_refuses_nearly_isotropic_volumes():
    assert plan_factor((1.0, 1.0, 5.0), 2) == 5
    assert plan_factor((0.9, 0.9, 5.0), 2, target_spacing=0.9) == pytest.approx(5 / 0.9)  # exactly isotropic
    assert plan_factor((0.9375, 0.9375, 5.0), 2) == pytest.approx(5.3333, abs=1e-4)
    assert plan_factor((1.0, 1.0, 4.0004), 2) == 4  # within 0.001 of a whole number: that number
    assert plan_factor((1.0, 1.0, 1.3), 2) == pytest.approx(1.3)
    with pytest.raises(NothingToDo, match="only 1.10 times"):
        plan_factor((1.0, 1.0, 1.1), 2)
    with pytest.raises(ValueError, match="target spacing"):
        plan_factor((1.0, 1.0, 5.0), 2, target_spacing=4.5)
    with pytest.raises(ValueError):
        plan_factor((1.0, 0.0, 3.0), 2)


def test_fine_tuning_on_the_volume_itself_beats_its_start_and_cubic_bspline():
    """A mechanism test, not a figure (the benchmark gives those): medsr-x4 saw this head's axial
    slices in training, so the start is already good here; fine-tuning must still add to it."""
    truth = _head(64)
    thick = thick_slices(truth, 2, 4, 4.0, "gaussian")

    def psnr(volume):
        return 10 * np.log10(255.0**2 / np.mean((volume - truth) ** 2))

    untrained, trained = (
        through_plane(thick, (1.0, 1.0, 4.0), options=ThroughPlaneOptions(max_iterations=n, device="cpu"))
        for n in (0, 15)
    )
    assert untrained.fit.iterations == 0 and trained.fit.iterations == 15
    assert trained.volume.shape == truth.shape and trained.factor == 4 and trained.spacing == (1.0, 1.0, 1.0)
    assert trained.volume.min() >= thick.min() and trained.volume.max() <= thick.max()
    baseline = psnr(bspline_upsample(thick, 4, axis=2))
    assert psnr(trained.volume) > psnr(untrained.volume) + 0.2  # measured: +0.45 dB
    assert psnr(trained.volume) > baseline + 1.0  # measured: +1.35 dB


def test_another_target_spacing_resamples_what_the_in_plane_pixels_teach():
    """The network learns slices -> in-plane pixels (4 per slice here) whatever the target; a 2 mm
    target is the 1 mm reconstruction averaged over each 2 mm voxel (not decimated: no aliasing),
    a 0.5 mm target its cubic B-spline interpolation; neither is a network trained on 2 mm or
    0.5 mm 'pixels'."""
    thick = thick_slices(_head(32), 2, 4, 4.0, "gaussian")
    options = ThroughPlaneOptions(max_iterations=2, device="cpu")
    fine = through_plane(thick, (1.0, 1.0, 4.0), options=options)
    coarse, finer = (
        through_plane(thick, (1.0, 1.0, 4.0), options=dataclasses.replace(options, target_spacing=t))
        for t in (2.0, 0.5)
    )
    assert coarse.factor == 2 and coarse.spacing == (1.0, 1.0, 2.0) and coarse.volume.shape == (32, 32, 16)
    pairs = (fine.volume[:, :, 0::2] + fine.volume[:, :, 1::2]) / 2  # each 2 mm voxel holds two 1 mm ones
    np.testing.assert_allclose(coarse.volume, pairs, atol=1e-3)
    assert finer.factor == 8 and finer.volume.shape == (32, 32, 64)
    expected = np.clip(bspline_upsample(fine.volume, 2, axis=2), thick.min(), thick.max())
    np.testing.assert_allclose(finer.volume, expected, atol=1e-3)


def test_fine_tuning_with_a_fractional_factor_beats_cubic_bspline():
    truth = _head(64)
    thick = thick_slices(truth, 2, 2.5, 2.5, "gaussian")  # (64, 64, 25): 2.5 mm slices
    truth = truth[:, :, :62]  # the voxels under 25 whole slices

    def psnr(volume):
        return 10 * np.log10(255.0**2 / np.mean((volume - truth) ** 2))

    result = through_plane(
        thick, (1.0, 1.0, 2.5), options=ThroughPlaneOptions(max_iterations=15, device="cpu")
    )
    assert result.volume.shape == (64, 64, 62) and result.factor == 2.5 and result.spacing == (1.0, 1.0, 1.0)
    assert psnr(result.volume) > psnr(bspline_upsample(thick, 2.5, axis=2)) + 0.15  # measured: +0.32 dB


def _nifti(path, data, zooms, dtype=np.int16):
    import nibabel as nib

    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = (-10.0, 20.0, 5.0)
    image = nib.Nifti1Image(np.rint(data).astype(dtype), affine)
    image.header.set_xyzt_units("mm")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))
    return path


def test_nifti_output_overlays_the_source_and_keeps_its_type(tmp_path):
    import nibabel as nib

    from medsr.isotropic.run import enhance_through_plane

    thick = thick_slices(_head(32), 1, 4, 4.0, "gaussian")
    source = _nifti(tmp_path / "in" / "thick.nii.gz", thick, (1, 4, 1))
    before = tree_digest(tmp_path / "in")
    report = enhance_through_plane([source], tmp_path / "out.nii.gz", QUICK)
    assert not report.failed and report.written == [tmp_path / "out.nii.gz"]
    out, src = nib.load(str(tmp_path / "out.nii.gz")), nib.load(str(source))
    assert out.shape == (32, 32, 32) and out.get_data_dtype() == np.int16
    assert out.header.get_zooms() == (1.0, 1.0, 1.0)
    # output voxel 0 lies 3/8 of a slice before source slice 0's centre; slice 0's four output
    # voxels are centred on it
    assert np.allclose(out.affine @ [0, 0, 0, 1], src.affine @ [0, -0.375, 0, 1])
    assert np.allclose(out.affine @ [0, 1.5, 0, 1], src.affine @ [0, 0, 0, 1])
    assert tree_digest(tmp_path / "in") == before


def test_a_fractional_factor_gives_an_isotropic_nifti_over_the_same_field_of_view(tmp_path):
    import nibabel as nib

    from medsr.isotropic.run import enhance_through_plane

    thick = thick_slices(_head(32), 1, 2.5, 2.5, "gaussian")  # (32, 12, 32): 2.5 mm slices, 1 mm pixels
    source = _nifti(tmp_path / "thick.nii.gz", thick, (1, 2.5, 1))
    image = nib.load(str(source))
    image.header.set_dim_info(slice=1)  # slice timing of the 12 acquired slices: void afterwards
    image.header["slice_end"], image.header["slice_code"], image.header["slice_duration"] = 11, 1, 0.1
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), image.affine, image.header), str(source))
    report = enhance_through_plane([source], tmp_path / "out.nii.gz", QUICK)
    assert not report.failed, report.failed
    out, src = nib.load(str(tmp_path / "out.nii.gz")), nib.load(str(source))
    assert out.shape == (32, 30, 32) and out.header.get_zooms() == (1.0, 1.0, 1.0)
    assert int(out.header["slice_end"]) == 0 and int(out.header["slice_code"]) == 0
    # output voxel m lies (m + 0.5) / 2.5 - 0.5 source slices from source slice 0: the 30 voxels
    # tile the 12 slices' extent exactly
    for m in (0, 7, 29):
        assert np.allclose(out.affine @ [0, m, 0, 1], src.affine @ [0, (m + 0.5) / 2.5 - 0.5, 0, 1])
    assert np.allclose(out.affine @ [0, -0.5, 0, 1], src.affine @ [0, -0.5, 0, 1])
    assert np.allclose(out.affine @ [0, 29.5, 0, 1], src.affine @ [0, 11.5, 0, 1])


@pytest.mark.parametrize(("target", "factor", "count"), [(1.625, 4, 16), (None, 8.32, 33)])
def test_nrrd_real_thick_mri_keeps_space_directions(tmp_path, target, factor, count):
    import nrrd

    from medsr.data import sample
    from medsr.isotropic.run import enhance_through_plane

    data, header = nrrd.read(str(sample.fetch_samples() / "pyradiomics" / "brain1.nrrd"))
    header["space directions"] = np.array(header["space directions"])
    small = tmp_path / "brain.nrrd"  # a 64 x 64 block of the real 6.5 mm MR (0.78 mm pixels), 4 slices
    nrrd.write(str(small), data[96:160, 96:160, 10:14], header)
    options = ThroughPlaneOptions(time_budget=60, max_iterations=1, device="cpu", target_spacing=target)
    report = enhance_through_plane([small], tmp_path / "out", options)
    assert not report.failed, report.failed
    out, written = nrrd.read(str(tmp_path / "out" / "brain.nrrd"))
    # 6.5 / 1.625 = 4 slices per slice; 6.5 / 0.78125 = 8.32 (isotropic): 33 whole voxels under 4 slices
    assert out.shape == (64, 64, count) and out.dtype == data.dtype
    assert np.allclose(written["space directions"][2], header["space directions"][2] / factor)
    assert np.allclose(written["space directions"][:2], header["space directions"][:2])
    assert np.allclose(
        written["space origin"], header["space origin"] + (1 / factor - 1) / 2 * header["space directions"][2]
    )


def _dicom_series(folder, volume, spacing=5.0, *, positions=None, tilt=0.0):
    """A real CT slice (pydicom's CT_small) as the template of one series, one file per slice of
    ``volume`` (slices, rows, columns), evenly spaced along the normal unless ``positions`` says."""
    folder.mkdir(parents=True, exist_ok=True)
    template = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    series = generate_uid()
    paths = []
    positions = positions if positions is not None else [i * spacing for i in range(len(volume))]
    for index, (plane, z) in enumerate(zip(volume, positions)):
        ds = template.copy()
        ds.Rows, ds.Columns = plane.shape
        ds.PixelData = np.clip(plane, 0, 4000).astype(np.int16).tobytes()
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series, generate_uid()
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [index * tilt, 0.0, z]
        ds.InstanceNumber = len(volume) - index  # files out of order: sorted by position
        ds.SliceThickness, ds.PixelSpacing = spacing, [1.0, 1.0]
        path = folder / f"{index:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.mark.parametrize(("spacing", "first"), [(5.0, -2.0), (2.5, -0.75)])
def test_dicom_series_becomes_a_derived_series_on_the_finer_grid(tmp_path, spacing, first):
    from medsr.isotropic.run import enhance_through_plane

    thick = thick_slices(_head(30), 0, spacing, spacing, "gaussian") * 8  # 1 mm pixels
    _dicom_series(tmp_path / "in" / "series", thick, spacing)
    before = tree_digest(tmp_path / "in")
    report = enhance_through_plane([tmp_path / "in"], tmp_path / "out", QUICK)
    assert not report.failed, report.failed
    files = sorted(p for p in (tmp_path / "out").rglob("*.dcm"))
    assert len(files) == 30 and files[0].parent.name.startswith("series-")
    datasets = [pydicom.dcmread(p) for p in files]
    z = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    # 1 mm apart, the first half a millimetre inside the first slice's extent (spacing / 2 before it)
    assert np.allclose(np.diff(z), 1.0) and z[0] == pytest.approx(first)
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert all(ds.ImageType[0] == "DERIVED" and float(ds.SpacingBetweenSlices) == 1.0 for ds in datasets)
    assert "Through-plane" in datasets[0].DerivationDescription and datasets[0].Rows == 30
    assert tree_digest(tmp_path / "in") == before
    assert not list((tmp_path / "out").rglob(".partial*"))


@pytest.mark.parametrize(
    ("positions", "tilt", "message"),
    [
        ([0, 5, 10, 17, 22, 27], 0.0, "non-uniform slice positions: 7 mm between slices 3 and 4"),
        (None, 2.0, "oblique"),
    ],
)
def test_bad_stacks_are_refused_with_the_reason(tmp_path, positions, tilt, message):
    from medsr.isotropic.run import enhance_through_plane

    volume = np.full((6, 32, 32), 100.0)
    _dicom_series(tmp_path / "in", volume, positions=positions, tilt=tilt)
    report = enhance_through_plane([tmp_path / "in"], tmp_path / "out", QUICK)
    assert len(report.failed) == 1 and message in report.failed[0][1] and not report.written


def test_2d_images_4d_series_and_fine_slices_get_one_line_each(tmp_path):
    from medsr.isotropic.run import enhance_through_plane

    head = _head(32)
    _nifti(tmp_path / "in" / "flat.nii.gz", head[:, :, :1], (1, 1, 1))
    _nifti(tmp_path / "in" / "fine.nii.gz", head, (1, 1, 1.1))
    nan = thick_slices(head, 2, 4, 4.0, "rect")
    nan[3, 4, 5] = np.nan
    _nifti(tmp_path / "in" / "nan.nii.gz", nan, (1, 1, 4), dtype=np.float32)
    four = np.stack([thick_slices(head, 2, 4, 4.0, "rect")] * 2, axis=-1)
    _nifti(tmp_path / "in" / "four.nii.gz", four, (1, 1, 4))
    report = enhance_through_plane([tmp_path / "in"], tmp_path / "out", QUICK)
    failed = dict(report.failed)
    assert "2-D image" in failed[str(tmp_path / "in" / "flat.nii.gz")]
    assert "pick one with --volume N (0 to 1)" in failed[str(tmp_path / "in" / "four.nii.gz")]
    assert "1 of 8192 values are not finite (NaN or infinite)" in failed[str(tmp_path / "in" / "nan.nii.gz")]
    assert report.notices == [
        f"{tmp_path / 'in' / 'fine.nii.gz'}: "
        + str(
            NothingToDo(
                "the slice spacing (1.1 mm) is only 1.10 times the in-plane spacing (1 mm), below 1.2: nothing to do"
            )
        )
    ]
    report = enhance_through_plane([tmp_path / "in" / "four.nii.gz"], tmp_path / "one", QUICK, volume=1)
    assert not report.failed and report.written


def test_volume_checks_name_the_problem():
    with pytest.raises(MedsrError, match="3-D volume"):
        through_plane(np.zeros((8, 8)), (1.0, 1.0), options=QUICK)
    with pytest.raises(MedsrError, match="not finite"):
        through_plane(np.full((8, 8, 8), np.nan), (1.0, 1.0, 4.0), options=QUICK)


def test_a_rerun_skips_finished_volumes_and_redoes_changed_settings(tmp_path):
    from medsr.isotropic.run import enhance_through_plane

    thick = thick_slices(_head(32), 2, 4, 4.0, "gaussian")
    for name in ("a", "b"):
        _nifti(tmp_path / "in" / f"{name}.nii.gz", thick, (1, 1, 4))
    first = enhance_through_plane([tmp_path / "in"], tmp_path / "out", QUICK)
    assert len(first.written) == 2 and not first.skipped
    (tmp_path / "out" / "b.nii.gz").unlink()  # as if interrupted before b was written
    again = enhance_through_plane([tmp_path / "in"], tmp_path / "out", QUICK)
    assert again.skipped == [str(tmp_path / "in" / "a.nii.gz")] and again.written == [
        tmp_path / "out" / "b.nii.gz"
    ]
    changed = enhance_through_plane(
        [tmp_path / "in"], tmp_path / "out", dataclasses.replace(QUICK, profile="rect")
    )
    assert not changed.skipped and len(changed.written) == 2


def test_nifti_geometry_comes_from_the_affine_and_keeps_its_codes(tmp_path):
    import nibabel as nib

    from medsr.isotropic.run import enhance_through_plane

    thick = thick_slices(_head(32), 2, 4, 4.0, "gaussian")
    affine = np.diag([1.0, 1.0, 4.0, 1.0])
    image = nib.Nifti1Image(thick.astype(np.int16), None)
    image.set_sform(affine, code=1)  # scanner coordinates in the sform only; pixdim left at 1 1 1
    image.set_qform(None, code=0)
    image.header.set_zooms((1.0, 1.0, 1.0))
    nib.save(image, str(tmp_path / "in.nii.gz"))
    report = enhance_through_plane([tmp_path / "in.nii.gz"], tmp_path / "out.nii.gz", QUICK)
    assert not report.failed and not report.notices
    out = nib.load(str(tmp_path / "out.nii.gz"))
    assert (
        out.shape == (32, 32, 32)
        and int(out.header["sform_code"]) == 1
        and int(out.header["qform_code"]) == 0
    )
    assert np.allclose(out.affine[:3, 2], [0, 0, 1]) and out.header.get_zooms() == (1.0, 1.0, 1.0)


def test_bad_geometry_and_wrong_output_names_fail_before_training(tmp_path):
    from medsr.isotropic.run import enhance_through_plane

    thick = thick_slices(_head(32), 2, 4, 4.0, "gaussian")
    _nifti(tmp_path / "in" / "square.nii.gz", thick, (1, 1, 4))
    slow = dataclasses.replace(QUICK, max_iterations=None, time_budget=600)  # would train for 10 minutes
    report = enhance_through_plane([tmp_path / "in" / "square.nii.gz"], tmp_path / "out.nrrd", slow)
    assert "a nifti volume is written as nifti" in report.failed[0][1]
    _nifti(tmp_path / "oblong" / "oblong.nii.gz", thick, (0.6, 1, 4))
    report = enhance_through_plane([tmp_path / "oblong"], tmp_path / "o2", slow)
    assert "pixels that are not square (0.6 x 1 mm)" in report.failed[0][1]
    paths = _dicom_series(tmp_path / "dicom", np.full((6, 32, 32), 100.0))
    ds = pydicom.dcmread(paths[2])
    del ds.ImagePositionPatient
    ds.save_as(paths[2])
    report = enhance_through_plane([tmp_path / "dicom"], tmp_path / "o3", slow)
    assert report.failed == [
        (str(tmp_path / "dicom"), "002.dcm has no Image Position (Patient): the slices cannot be placed")
    ]
    good = _dicom_series(tmp_path / "good", np.full((6, 32, 32), 100.0))
    report = enhance_through_plane([tmp_path / "good"], tmp_path / "series.nii.gz", slow)
    assert "a DICOM series is written as a series folder" in report.failed[0][1]
    assert not (tmp_path / "series.nii.gz").exists()
    ds = pydicom.dcmread(good[3])
    ds.Rows, ds.Columns, ds.PixelData = 16, 16, np.zeros((16, 16), np.int16).tobytes()
    ds.save_as(good[3])
    report = enhance_through_plane([tmp_path / "good"], tmp_path / "o4", slow)
    assert "003.dcm is 16x16 pixels, 000.dcm 32x32: not one stack" in report.failed[0][1]
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedsrError, match="no image files found"):
        enhance_through_plane([tmp_path / "empty"], tmp_path / "o5", slow)


def test_flags_of_the_other_mode_are_refused(tmp_path, capsys):
    from medsr.cli import main

    source = _nifti(tmp_path / "thick.nii.gz", np.zeros((8, 8, 4)), (1, 1, 4))
    assert main(["enhance", str(source), "--slice-thickness", "3", "-o", str(tmp_path / "o.nii.gz")]) == 1
    assert "--slice-thickness applies to --through-plane only" in capsys.readouterr().err
    assert (
        main(
            [
                "enhance",
                str(source),
                "--through-plane",
                "--model",
                "bicubic",
                "-o",
                str(tmp_path / "o.nii.gz"),
            ]
        )
        == 1
    )
    assert "--model does not apply to --through-plane" in capsys.readouterr().err
    assert not (tmp_path / "o.nii.gz").exists()
