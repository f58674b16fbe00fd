"""medsr: super-resolution of medical images (CT, MR, X-ray) at 4x, evaluated honestly."""

__version__ = "0.1.0"
