"""ECLARE (Remedios et al. 2025; PyPI ``eclare`` 1.0.1, GPL-3.0) as a peer in its own environment:
``install.sh VENV`` makes it (CPU torch first, so no CUDA build is pulled). It is only ever run as a
separate program, never imported into medsr.

``run_eclare`` writes the thick volume as a float32 NIfTI whose slice ``i`` is centred at fine voxel
``i * factor + (factor - 1) / 2`` (``medsr.isotropic.profile``'s convention, which ECLARE shares:
it centres each thick slice on the fine voxels under it), runs ``run-eclare`` on the CPU with the
known slice profile (``--relative-slice-thickness``, so its profile estimator ESPRESO is skipped, as
medsr is given the profile too) and a training length that fits the time budget, and reads the
result back on the truth's grid (checked through the affine).

ECLARE's training length is set by ``--n-patches`` (steps = patches / 128); its default, 7813 steps
of a 15 M-parameter WDSR, is about 20 hours on this CPU. Its inference has no option and takes
minutes per volume on 2 cores whatever the training length.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from medsr.isotropic import fine_count

BATCH = 128  # ECLARE's default batch size


def run_eclare(
    python: str,
    thick: np.ndarray,
    factor: float,
    thickness: float,
    profile: str,
    seconds: float,
    seconds_per_step: float = 5.0,
) -> tuple[np.ndarray, dict]:
    """ECLARE's reconstruction of ``thick`` (thick along axis 2) with about ``seconds`` of training.

    Returns:
        (volume on the fine grid, {"eclare_steps", "eclare_log"}).
    """
    import nibabel as nib

    if profile != "gaussian":
        raise ValueError("ECLARE's fixed profiles are run here for the Gaussian cases only")
    steps = max(1, round(seconds / seconds_per_step))
    run_eclare_bin = Path(python).parent / "run-eclare"
    with tempfile.TemporaryDirectory(prefix="eclare-") as tmp:
        affine = np.diag([1.0, 1.0, float(factor), 1.0])
        affine[2, 3] = (factor - 1) / 2
        source = Path(tmp) / "thick.nii.gz"
        nib.save(nib.Nifti1Image(thick.astype(np.float32), affine), str(source))
        env = {**os.environ, "OMP_NUM_THREADS": str(os.cpu_count() or 1), "CUDA_VISIBLE_DEVICES": ""}
        command = [
            str(run_eclare_bin),
            "--in-fpath",
            str(source),
            "--out-dir",
            str(Path(tmp) / "out"),
            "--gpu-id",
            "-1",
            "--n-patches",
            str(steps * BATCH),
            "--relative-slice-thickness",  # the profile's FWHM in in-plane voxels (= fine voxels here)
            str(thickness),
        ]
        began = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(
                f"run-eclare failed ({done.returncode}): {done.stdout[-400:]}{done.stderr[-400:]}"
            )
        result = nib.load(str(Path(tmp) / "out" / "thick_eclare.nii.gz"))
        # its voxel j must lie at fine coordinate j along the slice axis, and cover the whole slices
        if not np.allclose(result.affine, np.eye(4), atol=1e-3):
            raise RuntimeError(f"unexpected ECLARE output grid: {result.affine.tolist()}")
        expected = (*thick.shape[:2], fine_count(thick.shape[2], factor))
        if result.shape != expected:
            raise RuntimeError(f"ECLARE wrote {result.shape}, expected {expected}")
        volume = np.asarray(result.dataobj, np.float32)
    return volume, {"eclare_steps": steps, "eclare_seconds": time.perf_counter() - began}
