"""The named values of medsr's options, in one dependency-free module (standard library only).

The library validates against these tuples and the command line offers them as ``choices``, so
``medsr --help`` can list them without importing torch, OpenCV or SciPy. Modules that still keep a
copy (``data.detail.SCORES``, ``data.patients.KINDS``, ``io.volume.AXES``,
``models.network.PRECISIONS``) are checked against these by ``tests/test_cli.py``.
"""

from __future__ import annotations

# ------------------------------------------------------------------ degradation (data.degrade)
#: HR -> LR protocols (``Degradation.kind``, ``medsr evaluate --degradation``, ``data.degradation.kind``).
DEGRADATION_KINDS = ("bicubic", "kspace", "blur-noise")
#: k-space windows of the ``kspace`` degradation (``Degradation.taper``).
TAPERS = ("none", "hann", "tukey")
#: Noise models of the ``blur-noise`` degradation (``Degradation.noise``).
NOISES = ("gaussian", "rician")
#: Scale factors a degradation (and so an evaluation) accepts.
SCALES = (2, 3, 4, 8)

# ------------------------------------------------------------------ training (train.config)
#: Pixel losses of the supervised stage (``train.pixel_loss``).
PIXEL_LOSSES = ("mse", "l1", "charbonnier")
#: Learning-rate schedules (``train.schedule``).
LR_SCHEDULES = ("constant", "cosine")

# ------------------------------------------------------------------ methods (models)
#: Interpolation baselines, in the order of the paper's Table 1 (``models.interpolation``).
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")
#: Metrics of ``medsr evaluate --metrics`` (``metrics.registry.SPECS``, in this order), and the default.
METRIC_NAMES = ("psnr", "ssim", "ms_ssim", "haarpsi", "gmsd", "hfen", "nrmse", "lpips", "dists")
DEFAULT_METRICS = ("psnr", "ssim", "lpips", "hfen")
#: The model ``medsr enhance`` uses when no ``--model`` is given (a built-in: ``models.builtin``).
DEFAULT_MODEL = "medsr-x4"
#: ``medsr enhance``: tile side in input pixels, and tiles per forward pass.
DEFAULT_TILE = 256
DEFAULT_BATCH = 4
#: Network arithmetic of ``medsr enhance --precision`` (``models.network.PRECISIONS``).
PRECISIONS = ("fp32", "bf16")

# ------------------------------------------------------------------ data sets (data.prepare, data.split)
#: The splits of a data set, in order (``data.split.SPLIT_NAMES``).
SPLIT_NAMES = ("train", "val", "test")
#: Detail scores of ``--score`` (the keys of ``data.detail.SCORES``).
DETAIL_SCORES = ("equation-1", "original-code")
#: Kinds of ``--patient-id`` rule (``data.patients.KINDS``); ``regex`` takes ``:PATTERN``.
PATIENT_RULE_KINDS = ("auto", "dicom", "folder", "file", "regex")
#: Kinds of ``--keep`` rule (``data.prepare.KeepRule``); ``top`` takes ``:N``, ``min`` takes ``:X``.
KEEP_RULE_KINDS = ("above-mean", "all", "top", "min")
#: How ``--stratify`` deals patients to the splits (``PrepareOptions.stratify``).
STRATIFY = ("auto", "modality", "none")
#: Slice orientations of volumes, named after the RAS axis they are normal to (``io.volume.AXES``).
SLICE_AXES = ("sagittal", "coronal", "axial")
#: Named CT windows besides ``LO,HI`` in HU (``io.intensity.IntensityPolicy.ct_window``).
CT_WINDOW_NAMES = ("range", "stored")

# ------------------------------------------------------------------ medsr run (pipeline)
#: Where ``medsr run`` takes its images from (``data.source``).
DATA_SOURCES = ("sample", "folder", "tcia")
#: The stages of ``medsr run``, in order (``--from`` choices).
STAGES = ("data", "prepare", "baselines", "srresnet", "srgan", "evaluate", "report")
