"""Data: sample data, TCIA download, the paper's pre-processing (detail filter, split)."""

from medsr.data.detail import pixel_difference_score

__all__ = ["pixel_difference_score"]
