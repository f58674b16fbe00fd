"""medsr: super-resolution of medical images (CT, MR, X-ray) at 4x, evaluated honestly.

import medsr
model = medsr.load_model("runs/paper_srresnet/best.pt")   # or "bicubic"
sr = model.enhance(lq)                                     # (h, w) in [0, 1] -> (4h, 4w)
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # torch is imported only when a model is asked for, so that `medsr --help` stays fast
    if name == "load_model":
        from medsr.models import load_model

        return load_model
    raise AttributeError(f"module 'medsr' has no attribute {name!r}")
