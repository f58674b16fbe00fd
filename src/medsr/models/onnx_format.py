"""ONNX export of a trained network, and ONNX models run through ONNX Runtime behind ``SRModel``.

``export_onnx`` writes the network's inference form (BatchNorm folded, re-parameterised branches
merged) with a dynamic batch, height and width: input ``lr`` float32 (N, 1, h, w) in [0, 1], output
``sr`` (N, 1, s*h, s*w) (not clamped), opset 18, and medsr's metadata (``METADATA``: scale,
receptive radius, intensity mapping, the ``trained_on`` record, architecture, medsr version), so an
export is as self-describing as a checkpoint. ``OnnxModel`` reads such a file with ONNX Runtime
(``pip install 'medsr[onnx]'``) and refuses files without the metadata.
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from pathlib import Path

import numpy as np

from medsr import __version__
from medsr.errors import MedsrError
from medsr.fsutil import atomic_path
from medsr.models.base import SRModel

FORMAT = "medsr-onnx-1"
OPSET = 18
#: Metadata keys of an export (values are strings; JSON for the mappings).
METADATA = (
    "medsr_format",
    "name",
    "architecture",
    "kwargs",
    "scale",
    "receptive_radius",
    "intensity",
    "trained_on",
)


def export_onnx(model: SRModel, out: str | Path, *, opset: int = OPSET) -> Path:
    """Write ``model`` (a network from ``load_model``) to ``out`` as ONNX, atomically.

    Raises:
        MedsrError: ``model`` is not a network (interpolation has nothing to export), or the export
            failed (the reason in one line; nothing is left at ``out``).
    """
    import torch

    from medsr.models.network import NetworkModel

    if not isinstance(model, NetworkModel):
        raise MedsrError(f"{model.name}: only trained networks can be exported (not {type(model).__name__})")
    module = copy.deepcopy(model.module).cpu().float().to(memory_format=torch.contiguous_format).eval()
    example = torch.rand(1, 1, 24, 20)
    height, width = torch.export.Dim("height", min=4), torch.export.Dim("width", min=4)
    out = Path(out)
    exporter_log = logging.getLogger("torch.onnx")  # it warns about torchvision ops medsr does not use
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                module,
                (example,),
                input_names=["lr"],
                output_names=["sr"],
                opset_version=opset,
                dynamo=True,
                dynamic_shapes={"x": {0: torch.export.Dim("batch"), 2: height, 3: width}},
                verbose=False,
            )
        except Exception as exc:  # the exporter raises many types; say which and stop
            raise MedsrError(
                f"{out}: the export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
            ) from None
        finally:
            exporter_log.setLevel(level)
        proto = program.model_proto
        _set_metadata(proto, _metadata(model))
        import onnx

        onnx.save_model(proto, tmp)
    return out


def _metadata(model) -> dict[str, str]:
    return {
        "medsr_format": FORMAT,
        "medsr_version": __version__,
        "name": model.name,
        "architecture": model.architecture,
        "kwargs": json.dumps(model.kwargs),
        "scale": str(model.scale),
        "receptive_radius": str(model.receptive_radius),
        "intensity": json.dumps(dict(model.intensity)),
        "trained_on": json.dumps(model.trained_on),
    }


def _set_metadata(proto, values: dict[str, str]) -> None:
    del proto.metadata_props[:]
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


class OnnxModel(SRModel):
    """A medsr ONNX export run by ONNX Runtime on the CPU (same interface as ``NetworkModel``).

    Args:
        path: a file written by ``export_onnx`` (``medsr export``).
        batch_size: images per run in ``enhance_batch``.

    Raises:
        MedsrError: ONNX Runtime is missing, the file is unreadable or not a medsr export.
    """

    def __init__(self, path: str | Path, *, batch_size: int = 8) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise MedsrError(f"{path}: ONNX models need onnxruntime (pip install 'medsr[onnx]')") from None
        self.source, self.batch_size = str(path), batch_size
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            reason = text.split("failed:", 1)[-1].strip()  # ONNX Runtime repeats the path before it
            raise MedsrError(f"{path}: not a readable ONNX model ({reason[:120]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("medsr_format") != FORMAT:
            raise MedsrError(
                f"{path}: not a medsr ONNX export (no medsr metadata; write one with medsr export)"
            )
        try:
            self.name, self.scale = meta["name"], int(meta["scale"])
            self.receptive_radius = int(meta["receptive_radius"])
            self.kwargs = json.loads(meta["kwargs"])
            self.intensity = json.loads(meta["intensity"])
            self.trained_on = json.loads(meta["trained_on"])
        except (KeyError, ValueError) as exc:
            raise MedsrError(f"{path}: damaged medsr metadata ({type(exc).__name__}: {exc})") from None
        self.input_name = self.session.get_inputs()[0].name

    def enhance_batch(self, lq: np.ndarray) -> np.ndarray:
        outputs = []
        for chunk in self.chunks(lq, self.batch_size):
            (sr,) = self.session.run(None, {self.input_name: chunk})
            outputs.append(np.clip(sr, 0.0, 1.0))
        return np.concatenate(outputs).astype(np.float32, copy=False)

    def describe(self) -> dict:
        return {**super().describe(), "source": self.source, "kwargs": self.kwargs, "runtime": "onnxruntime"}
