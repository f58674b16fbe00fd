"""The data types every reader returns: a grayscale slice in physical units plus its metadata."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class IntensityMapping:
    """Linear map between physical values (HU for CT, stored units otherwise) and [0, 1].

    ``unit = (value - lo) / (hi - lo)``, clipped to [0, 1]; with ``invert`` (MONOCHROME1) the
    scale runs the other way, so that bright always means dense/high signal on screen.
    ``from_unit`` is the exact inverse for every value inside [lo, hi].

    Attributes:
        lo, hi: physical values mapped to 0 and 1 (``hi > lo``).
        method: how lo/hi were chosen: ``window`` (given), ``range`` (series min/max),
            ``percentile`` (series percentiles), ``dtype`` (full range of an integer file type).
        invert: True for MONOCHROME1 images.
        params: the parameters of ``method`` in words, e.g. ``p0.5-99.5``.
    """

    lo: float
    hi: float
    method: str
    invert: bool = False
    params: str = ""

    def __post_init__(self) -> None:
        if not (np.isfinite(self.lo) and np.isfinite(self.hi)) or self.hi <= self.lo:
            raise ValueError(f"intensity mapping needs finite lo < hi, got lo={self.lo}, hi={self.hi}")

    def to_unit(self, values: np.ndarray) -> np.ndarray:
        """Physical values, any shape -> float32 in [0, 1], same shape."""
        unit = (np.asarray(values, dtype=np.float64) - self.lo) / (self.hi - self.lo)
        if self.invert:
            unit = 1.0 - unit
        return np.clip(unit, 0.0, 1.0).astype(np.float32)

    def from_unit(self, unit: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
        """Values in [0, 1], any shape -> float64 physical values, same shape.

        With ``out`` (a float array of the same shape, possibly ``unit`` itself) the result is
        computed in that array's dtype, in place: for images too large for float64 copies.
        """
        if out is None:
            unit = np.asarray(unit, dtype=np.float64)
            if self.invert:
                unit = 1.0 - unit
            return self.lo + unit * (self.hi - self.lo)
        if self.invert:
            np.subtract(1.0, unit, out=out)
        elif out is not unit:
            np.copyto(out, unit)
        out *= out.dtype.type(self.hi - self.lo)
        out += out.dtype.type(self.lo)
        return out


@dataclass
class SliceMeta:
    """Where a slice comes from and how its values relate to what the file stores.

    ``physical = stored * rescale_slope + rescale_intercept``; ``unit`` names the physical unit
    (``HU`` for CT, else what the file stores). ``pixel_spacing`` is (row, column) in mm.
    ``fixed_range`` is the physical range the file's integer type can hold (BitsStored for
    DICOM, the dtype for PNG/TIFF); ``format`` is ``dicom``, ``nifti``, ``nrrd`` or ``raster``.
    """

    source: str
    format: str = ""
    frame: int = 0
    modality: str = "OT"
    patient_id: str = ""
    study_uid: str = ""
    series_uid: str = ""
    series_description: str = ""
    pixel_spacing: tuple[float, float] | None = None
    position: float | None = None
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    unit: str = "stored"
    stored_dtype: str = ""
    photometric: str = "MONOCHROME2"
    fixed_range: tuple[float, float] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """Plain-dict view (for CSV/JSON)."""
        return asdict(self)


@dataclass
class Slice:
    """One grayscale 2-D image.

    Attributes:
        pixels: float32 array of shape (H, W) in physical units (see ``SliceMeta``).
        meta: provenance and intensity metadata.
    """

    pixels: np.ndarray
    meta: SliceMeta

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.pixels.shape)  # type: ignore[return-value]


@dataclass
class Volume:
    """A NIfTI or NRRD image in its file's own voxel order (``read_slices`` reorients to RAS and
    rotates; this does not), the form ``write_like`` writes back.

    Attributes:
        data: finite float32 array (X, Y), (X, Y, Z) or (X, Y, Z, T) in physical units (NIfTI:
            ``scl_slope``/``scl_inter`` applied); (X, Y) are the in-plane axes that ``write_like``
            expects multiplied by the scale.
        meta: source, ``format`` (``nifti``/``nrrd``), modality (JSON sidecar, else ``MR`` for
            NIfTI and ``OT`` for NRRD) and the stored dtype.
    """

    data: np.ndarray
    meta: SliceMeta
