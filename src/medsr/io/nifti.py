"""NIfTI-1/2 reader (nibabel), 3-D and 4-D."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import nibabel as nib
import numpy as np

from medsr.errors import UnreadableImage
from medsr.io.types import Slice
from medsr.io.volume import volume_to_slices


def read_nifti(path: str | Path, *, axes: Iterable[str] = ("axial",)) -> list[Slice]:
    """Read a NIfTI file into slices along ``axes`` (see ``volume_to_slices``).

    Values are the header-scaled ones (``scl_slope``/``scl_inter`` applied), float32.
    """
    path = Path(path)
    try:
        image = nib.load(str(path))
        data = np.asarray(image.dataobj, dtype=np.float32)
    except Exception as exc:
        raise UnreadableImage(f"cannot read NIfTI ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") from None
    slope, inter = image.header.get_slope_inter()
    stored_dtype = str(image.get_data_dtype())
    return volume_to_slices(
        data,
        image.affine,
        path,
        axes=axes,
        unit="stored",
        stored_dtype=stored_dtype,
        rescale=(float(slope) if slope is not None else 1.0, float(inter) if inter is not None else 0.0),
        default_modality="MR",
        file_format="nifti",
    )
