"""Built-in pretrained models: networks shipped inside the package as safetensors.

A built-in model is one file ``models/weights/<name>.safetensors`` holding the network's inference
form (BatchNorm folded, re-parameterised branches merged) in float32, and one metadata entry
``medsr`` (JSON): ``format``, ``name``, ``version``, ``description``, ``architecture``, ``kwargs``,
``scale``, ``intensity``, ``trained_on`` (``data.provenance``), ``degradation``, ``training``
(config name, iterations, seconds, device), ``evaluation`` (held-out scores: see ``pack_builtin``),
``weights_sha256`` (of the tensors), ``medsr_version`` and ``metadata_sha256`` (of all the other
metadata, as canonical JSON). Its model card is ``models/weights/<name>.md``
(``docs/models/<name>.md`` points there).

Reading it runs no pickle and needs no network: ``safetensors`` parses a JSON header and raw tensor
bytes; both digests are checked and every field's type, so a damaged file is refused with its
reason rather than computing something else or passing the held-out check on a damaged record.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from medsr import __version__
from medsr.errors import MedsrError
from medsr.fsutil import atomic_path

FORMAT = "medsr-builtin-1"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SUFFIX = ".safetensors"
#: Metadata keys every built-in file carries.
REQUIRED = ("format", "name", "version", "architecture", "kwargs", "scale", "intensity", "trained_on")


def builtin_names() -> list[str]:
    """The names of the built-in models shipped with this installation (``medsr-x4``, ...)."""
    return sorted(
        p.name[: -len(SUFFIX)] for p in WEIGHTS_DIR.glob(f"*{SUFFIX}") if not p.name.startswith(".")
    )


def builtin_path(name: str) -> Path:
    """The weights file of the built-in model ``name``."""
    return WEIGHTS_DIR / f"{name}{SUFFIX}"


def card_path(name: str) -> Path:
    """The model card (Markdown) of the built-in model ``name``."""
    return WEIGHTS_DIR / f"{name}.md"


def read_metadata(path: str | Path) -> dict:
    """The ``medsr`` metadata of a built-in weights file, checked; tensors are not read.

    Raises:
        MedsrError: no such file, not a safetensors file (truncated, damaged), or not a medsr
            built-in (missing or damaged metadata); the message names the file.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise MedsrError(f"{path}: no such weights file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get("medsr")
    except (SafetensorError, OSError, ValueError) as exc:
        raise MedsrError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    if raw is None:
        raise MedsrError(f"{path}: not a medsr model (no medsr metadata)")
    try:
        meta = json.loads(raw)
    except ValueError:
        raise MedsrError(f"{path}: damaged medsr metadata (not JSON)") from None
    missing = [key for key in REQUIRED if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise MedsrError(f"{path}: damaged medsr metadata (no {missing[0]})")
    if meta["format"] != FORMAT:
        raise MedsrError(f"{path}: weights format {meta['format']!r} is not supported by medsr {__version__}")
    if meta.get("metadata_sha256") != metadata_digest(meta):
        raise MedsrError(f"{path}: damaged medsr metadata (its SHA-256 differs from the one recorded)")
    problem = _metadata_problem(meta)
    if problem:
        raise MedsrError(f"{path}: damaged medsr metadata ({problem})")
    return meta


def metadata_digest(meta: Mapping) -> str:
    """SHA-256 of every metadata field but ``metadata_sha256`` itself, as canonical JSON."""
    rest = {k: v for k, v in meta.items() if k != "metadata_sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def _metadata_problem(meta: Mapping) -> str | None:
    """What is wrong with the fields' types and values, or None."""
    from medsr.data.provenance import valid_record

    kinds = {
        "name": str,
        "version": str,
        "architecture": str,
        "kwargs": dict,
        "intensity": dict,
        "scale": int,
    }
    for key, kind in kinds.items():
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            return f"{key} is not a {kind.__name__}"
    if meta["kwargs"].get("scale") != meta["scale"]:
        return f"scale {meta['scale']} differs from the network's {meta['kwargs'].get('scale')}"
    if meta["trained_on"] is not None and not valid_record(meta["trained_on"]):
        return "trained_on is not a training record"
    if not isinstance(meta.get("evaluation", {}), dict) or not isinstance(meta.get("weights_sha256"), str):
        return "evaluation or weights_sha256 of the wrong type"
    return None


def load_builtin(name_or_path: str | Path, *, device: str = "auto", **options):
    """A built-in model (by name) or a medsr safetensors file, ready to run (a ``NetworkModel``).

    Args:
        name_or_path: ``medsr-x4`` (see ``builtin_names``) or a path to a ``.safetensors`` file
            written by ``pack_builtin``.
        device, options: as for ``load_model`` (``batch_size``, ``precision``, ``compile``).

    Raises:
        MedsrError: see ``read_metadata``; also weights that do not fit the architecture, or whose
            digest differs from the one recorded (a damaged file).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from medsr.models.checkpoint import weights_digest
    from medsr.models.network import NetworkModel
    from medsr.models.registry import build_network

    text = str(name_or_path)
    path = builtin_path(text) if text in builtin_names() else Path(text)
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise MedsrError(f"{path}: damaged weights ({_first_line(exc)})") from None
    if weights_digest(tensors) != meta.get("weights_sha256"):
        raise MedsrError(f"{path}: damaged weights (their SHA-256 differs from the one recorded)")
    try:
        network = build_network(meta["architecture"], dict(meta["kwargs"])).inference_form()
        network.load_state_dict(tensors)
    except (MedsrError, RuntimeError, KeyError, TypeError) as exc:
        raise MedsrError(f"{path}: weights do not fit {meta['architecture']} ({_first_line(exc)})") from None
    model = NetworkModel(
        network,
        meta["name"],
        int(meta["scale"]),
        device=device,
        inference_form=False,
        source=f"built-in {meta['name']} version {meta['version']}"
        if path == builtin_path(text)
        else str(path),
        kwargs=meta["kwargs"],
        intensity=meta["intensity"],
        trained_on=meta["trained_on"],
        architecture=meta["architecture"],
        version=str(meta["version"]),
        **options,
    )
    model.weights_path, model.weights_sha256 = str(path), meta["weights_sha256"]
    return model


def pack_builtin(
    checkpoint: str | Path,
    out: str | Path,
    *,
    name: str,
    version: str,
    description: str,
    evaluation: Mapping | None = None,
) -> Path:
    """Write a trained checkpoint's network as a built-in model file, atomically.

    The checkpoint's weights (its EMA when it has them) are put in inference form and stored in
    float32 with the metadata of the module docstring.

    Args:
        checkpoint: a ``.pt`` file written by ``medsr train``.
        out: the ``.safetensors`` file to write.
        name, version, description: how ``medsr models`` lists it.
        evaluation: held-out scores to record (e.g. ``held_out_scores`` of a ``medsr evaluate``
            summary), shown by ``medsr models``.
    """
    from safetensors.torch import save_file

    from medsr.models.checkpoint import network_from, read_checkpoint, weights_digest

    data = read_checkpoint(checkpoint)
    network = network_from(data, checkpoint).inference_form()
    tensors = {k: v.detach().float().contiguous() for k, v in network.state_dict().items()}
    config = data.get("config", {})
    record = data.get("trained_on")
    if record and "fitted" not in record:  # written before records named the splits trained on
        record = {**record, "fitted": list(config.get("data", {}).get("train_splits", ["train"]))}
    meta = {
        "format": FORMAT,
        "name": name,
        "version": version,
        "description": description,
        "architecture": data["model"]["name"],
        "kwargs": data["model"]["kwargs"],
        "scale": int(data["model"]["kwargs"].get("scale", 4)),
        "intensity": data.get("intensity") or {},
        "trained_on": record,
        "degradation": config.get("data", {}).get("degradation"),
        "training": _training_summary(data),
        "evaluation": dict(evaluation or {}),
        "weights_sha256": weights_digest(tensors),
        "medsr_version": __version__,
    }
    meta["metadata_sha256"] = metadata_digest(meta)
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata={"medsr": json.dumps(meta, sort_keys=True)})
        tmp.chmod(0o666 & ~_umask())  # safetensors creates 0600 files; make it readable as others are
    return Path(out)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _training_summary(checkpoint: Mapping) -> dict:
    """Config name, epochs, iterations and training seconds of a checkpoint (from its history)."""
    history = checkpoint.get("history") or []
    clock = checkpoint.get("clock") or {}
    return {
        "config": (checkpoint.get("config") or {}).get("name"),
        "epochs": int(checkpoint.get("epoch", 0)),
        "iterations": int(clock.get("iterations", sum(int(r.get("iterations", 0)) for r in history))),
        "seconds": round(float(clock.get("seconds", 0.0)), 1),
        "device": checkpoint.get("device") or (checkpoint.get("config") or {}).get("train", {}).get("device"),
    }


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]
