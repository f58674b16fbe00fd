"""medsr: super-resolution of medical images (CT, MR, X-ray) at 4x, evaluated honestly.

import medsr
model = medsr.load_model("runs/paper_srresnet/best.pt")   # or "bicubic"
sr = model.enhance(lq)                                     # (h, w) in [0, 1] -> (4h, 4w)
thin = medsr.through_plane(volume, (0.9, 0.9, 5.0))        # thick slices -> isotropic (ThroughPlaneResult)
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # torch is imported only when a model is asked for, so that `medsr --help` stays fast
    if name == "load_model":
        from medsr.models import load_model

        return load_model
    if name == "through_plane":  # thick slices to thin: medsr.isotropic
        from medsr.isotropic import through_plane

        return through_plane
    raise AttributeError(f"module 'medsr' has no attribute {name!r}")
