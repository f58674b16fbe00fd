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
import hashlib
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
    "medsr_version",
    "name",
    "architecture",
    "kwargs",
    "scale",
    "receptive_radius",
    "intensity",
    "trained_on",
)
#: Metadata keys an export may lack (written by later versions): key -> default.
OPTIONAL_METADATA = {"version": "", "source": "", "weights_sha256": ""}


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
    from medsr.models.tap_sum_conv import TapSumConv2d

    module = copy.deepcopy(model.module).cpu().float().to(memory_format=torch.contiguous_format).eval()
    for layer in module.modules():  # one plain convolution in the portable file (the tap sum is a
        if isinstance(layer, TapSumConv2d):  # PyTorch speed-up)
            layer.form = "conv"
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
        _check_export(tmp, module, out)
    return out


def _check_export(path: Path, module, out: Path) -> None:
    """The written file must pass ``onnx.checker`` and compute what ``module`` computes (to 1e-4 on
    a probe image, all finite); otherwise a ``MedsrError`` and nothing is left at ``out``."""
    import onnx
    import onnxruntime
    import torch

    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise MedsrError(
            f"{out}: the exported model is not valid ONNX ({str(exc).splitlines()[0][:120]})"
        ) from None
    probe = np.random.default_rng(0).random((2, 1, 19, 23), dtype=np.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: probe})
    with torch.no_grad():
        expected = module(torch.from_numpy(probe)).numpy()
    if not np.isfinite(got).all() or got.shape != expected.shape or np.abs(got - expected).max() > 1e-4:
        raise MedsrError(
            f"{out}: the export does not reproduce the network (non-finite or different outputs)"
        )


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
        "version": getattr(model, "version", ""),  # a built-in model's weights version
        "source": getattr(model, "source", ""),  # the checkpoint path or built-in name it came from
        "weights_sha256": model.weights_sha256,  # of the weights exported (checkpoint.weights_digest)
    }


def _set_metadata(proto, values: dict[str, str]) -> None:
    del proto.metadata_props[:]
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def check_onnx_options(path: str, device: str, options: dict) -> dict:
    """The ``load_model`` options an ONNX model takes (``batch_size``); a one-line error for those
    it cannot honour (it runs in float32 on the CPU, uncompiled)."""
    if device not in ("auto", "cpu"):
        raise MedsrError(f"{path}: ONNX models run on the CPU here (device {device!r} asked for)")
    if options.get("precision", "fp32") != "fp32" or options.get("compile"):
        raise MedsrError(f"{path}: ONNX models run in fp32, uncompiled (drop --precision and --compile)")
    unknown = sorted(set(options) - {"precision", "compile", "batch_size"})
    if unknown:
        raise MedsrError(f"{path}: unknown option {unknown[0]!r} for an ONNX model")
    return {k: v for k, v in options.items() if k == "batch_size"}


class OnnxModel(SRModel):
    """A medsr ONNX export run by ONNX Runtime on the CPU (same interface as ``NetworkModel``).

    Args:
        path: a file written by ``export_onnx`` (``medsr export``).
        batch_size: images per run in ``enhance_batch``.

    Raises:
        MedsrError: ONNX Runtime is missing; the file is unreadable, not a medsr export, or does not
            compute what its metadata says (checked on a probe image when loading).
    """

    def __init__(self, path: str | Path, *, batch_size: int = 8) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise MedsrError(f"{path}: ONNX models need onnxruntime (pip install 'medsr[onnx]')") from None
        if Path(path).is_dir():
            raise MedsrError(f"{path}: is a folder, not an ONNX file")
        self.source, self.weights_path, self.batch_size = str(path), str(path), batch_size
        try:
            data = Path(path).read_bytes()  # one read: the session runs the very bytes the digest names
        except OSError as exc:
            raise MedsrError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__})") from None
        self.weights_sha256 = hashlib.sha256(data).hexdigest()
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only
        try:
            self.session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            reason = text.split("failed:", 1)[-1].split(" : ")[-1].strip()  # not the path nor the C++ source
            raise MedsrError(f"{path}: not a readable ONNX model ({reason[:120]})") from None
        self._read_metadata(path, self.session.get_modelmeta().custom_metadata_map)
        self.input_name = self.session.get_inputs()[0].name
        self._probe(path)

    def _read_metadata(self, path: str | Path, meta: dict[str, str]) -> None:
        """The scale, radius, intensity mapping and training record from the file's metadata."""
        if "medsr_format" not in meta:
            raise MedsrError(
                f"{path}: not a medsr ONNX export (no medsr metadata; write one with medsr export)"
            )
        if meta["medsr_format"] != FORMAT:
            raise MedsrError(
                f"{path}: export format {meta['medsr_format']!r} is not supported here; export it again"
            )
        try:
            self.name, self.scale = meta["name"], int(meta["scale"])
            self.receptive_radius = int(meta["receptive_radius"])
            self.architecture, self.exported_by = meta["architecture"], meta["medsr_version"]
            self.kwargs = json.loads(meta["kwargs"])
            self.intensity = json.loads(meta["intensity"])
            self.trained_on = json.loads(meta["trained_on"])
            self.version, self.exported_from, self.exported_weights_sha256 = (
                meta.get(k, v) for k, v in OPTIONAL_METADATA.items()
            )
        except (KeyError, ValueError) as exc:
            raise MedsrError(f"{path}: damaged medsr metadata ({type(exc).__name__}: {exc})") from None
        valid = (
            self.scale in (2, 3, 4, 8)
            and self.receptive_radius >= 0
            and isinstance(self.intensity, dict)
            and isinstance(self.kwargs, dict)
            and (self.trained_on is None or isinstance(self.trained_on, dict))
        )
        if not valid:
            raise MedsrError(f"{path}: damaged medsr metadata (scale, radius, intensity or training record)")

    def _probe(self, path: str | Path) -> None:
        """Run one small image: the output must be finite and ``scale`` times the input's size."""
        probe = np.zeros((1, 1, 8, 8), dtype=np.float32)
        try:
            (out,) = self.session.run(None, {self.input_name: probe})
        except Exception as exc:  # a graph that does not take (N, 1, h, w) float32
            raise MedsrError(
                f"{path}: does not run on a (1, 1, 8, 8) float32 image ({type(exc).__name__})"
            ) from None
        if out.shape != (1, 1, 8 * self.scale, 8 * self.scale) or not np.isfinite(out).all():
            raise MedsrError(
                f"{path}: its output {tuple(out.shape)} does not match its metadata's x{self.scale} (or is not finite)"
            )

    @property
    def label(self) -> str:
        """``medsr-x4 version 1 (ONNX export model.onnx)``: the network and the file that ran it."""
        return f"{super().label} (ONNX export {Path(self.source).name})"

    def enhance_batch(self, lq: np.ndarray) -> np.ndarray:
        outputs = []
        for chunk in self.chunks(lq, self.batch_size):
            (sr,) = self.session.run(None, {self.input_name: chunk})
            outputs.append(np.clip(sr, 0.0, 1.0))
        return np.concatenate(outputs).astype(np.float32, copy=False)

    def describe(self) -> dict:
        import onnxruntime

        return {
            **super().describe(),
            "source": self.source,
            "architecture": self.architecture,
            "kwargs": self.kwargs,
            "runtime": f"onnxruntime {onnxruntime.__version__} (CPU)",
            "exported_by": f"medsr {self.exported_by}",
            "exported_from": self.exported_from,
            "exported_weights_sha256": self.exported_weights_sha256,
            "version": self.version,
        }
