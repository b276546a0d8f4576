"""Hostile checkpoints (issue 11): each is refused with a CheckpointError before anything is built or
read from its contents, and refusing it costs less than 100 MB of memory above the baseline.

The loads run in one fresh subprocess that reports, per case, the exception type and its peak RSS
(getrusage) and peak Python allocations (tracemalloc) above a baseline taken after loading a valid
checkpoint once (so imports and lazy initialisation are not counted). Peak RSS only grows, so a case
that allocated much would show in its own figure and in every later one.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import save_file

from vae.checkpoint import META_FILE, WEIGHTS_FILE, CheckpointError, load_checkpoint, save_checkpoint
from vae.config import MAX_LATENT_WIDTH, ModelConfig
from vae.model import build_model

REPO = Path(__file__).resolve().parents[2]
LIMIT_MB = 100

PROBE = r"""
import json, resource, sys, tracemalloc
from vae.checkpoint import load_checkpoint
valid, cases = sys.argv[1], json.loads(sys.argv[2])
load_checkpoint(valid)
def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base = rss_mb()
out = {}
for name, path in cases.items():
    tracemalloc.start()
    try:
        load_checkpoint(path)
        kind, message = "loaded", ""
    except BaseException as exc:
        kind, message = type(exc).__name__, str(exc)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out[name] = {"exception": kind, "message": message[:300], "rss_mb": rss_mb() - base, "traced_mb": peak / 2**20}
print(json.dumps(out))
"""


def _meta(folder: Path) -> dict:
    return json.loads((folder / META_FILE).read_text())


def _variant(valid: Path, root: Path, name: str, meta_text: str | None = None, weights: bytes | None = None) -> Path:
    folder = Path(shutil.copytree(valid, root / name))
    if meta_text is not None:
        (folder / META_FILE).write_text(meta_text)
    if weights is not None:
        (folder / WEIGHTS_FILE).write_bytes(weights)
    return folder


def _with_config(valid: Path, **changes) -> str:
    meta = _meta(valid)
    meta["model_config"] = {**meta["model_config"], **changes}
    return json.dumps(meta)


def _safetensors(header: dict, data: bytes = b"") -> bytes:
    return _safetensors_raw(json.dumps(header).encode()) + data


def _safetensors_raw(header: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header


@pytest.fixture(scope="module")
def valid_checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("valid") / "ckpt", build_model(ModelConfig(32, 4)), dataset="mnist")


@pytest.fixture(scope="module")
def hostile(valid_checkpoint: Path, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    valid = valid_checkpoint
    meta = _meta(valid)
    wide = {f"{k}": {"dtype": "F32", "shape": list(v.shape), "data_offsets": [0, 0]}
            for k, v in build_model(ModelConfig(32, 4)).state_dict().items()}
    wide["input_to_hidden.weight"]["shape"] = [250000, 784]
    huge_header = b'{"__metadata__": {"pad": "' + b" " * (90 << 20) + b'"}}'
    return {
        "latent_width 10**9": _variant(valid, root, "giga", _with_config(valid, latent_width=10**9)),
        "latent_width 250000": _variant(valid, root, "wide", _with_config(valid, latent_width=250000)),
        "latent_width Infinity": _variant(valid, root, "inf",
                                          _with_config(valid, latent_width="INF").replace('"INF"', "Infinity")),
        "latent_width 1e3 (a float)": _variant(valid, root, "float", _with_config(valid, latent_width=1e3)),
        "depth 7": _variant(valid, root, "deep", _with_config(valid, depth=7)),
        "format_version string": _variant(valid, root, "version", json.dumps({**meta, "format_version": "1"})),
        "format_version 1e9": _variant(valid, root, "version-big", json.dumps({**meta, "format_version": 10**9})),
        "deeply nested JSON": _variant(valid, root, "nested", json.dumps(_meta(valid))[:-1]
                                       + ', "x": ' + "[" * 200_000 + "]" * 200_000 + "}"),
        "60 MB checkpoint.json": _variant(valid, root, "big-meta", json.dumps({**meta, "pad": " " * (60 << 20)})),
        "header claims a 250000-wide tensor": _variant(valid, root, "claims", weights=_safetensors(wide)),
        "huge header (90 MB)": _variant(valid, root, "header", weights=_safetensors_raw(huge_header)),
        "header length 2**60": _variant(valid, root, "header-len", weights=struct.pack("<Q", 2**60) + b"{}"),
    }


def test_hostile_checkpoints_are_refused_cheaply(valid_checkpoint: Path, hostile: dict[str, Path]) -> None:
    cases = {name: str(path) for name, path in hostile.items()}
    run = subprocess.run([sys.executable, "-c", PROBE, str(valid_checkpoint), json.dumps(cases)], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    failures = {name: r for name, r in report.items()
                if r["exception"] != "CheckpointError" or r["rss_mb"] > LIMIT_MB or r["traced_mb"] > LIMIT_MB}
    assert not failures, json.dumps(failures, indent=1)
    assert all("\n" not in r["message"] for r in report.values())


def test_wrong_shapes_are_refused_from_the_header_before_loading(valid_checkpoint: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    folder = Path(shutil.copytree(valid_checkpoint, tmp_path / "ckpt"))
    save_file({k: v.contiguous() for k, v in build_model(ModelConfig(16, 4)).state_dict().items()},
              str(folder / WEIGHTS_FILE))
    calls = []
    import vae.checkpoint as module

    monkeypatch.setattr(module, "load_file", lambda *a, **k: calls.append(a) or {})
    with pytest.raises(CheckpointError, match="does not match its config.*wrong shape"):
        load_checkpoint(folder)
    assert calls == []  # the weights were never read


@pytest.mark.parametrize("depth_key", [None, 1])
def test_old_and_new_formats_load(valid_checkpoint: Path, tmp_path: Path, depth_key) -> None:
    """format 1 without depth and format 2 with depth 1 (the deeper models' writer) both load."""
    meta = _meta(valid_checkpoint)
    if depth_key is not None:
        meta["format_version"] = 2
        meta["model_config"]["depth"] = depth_key
    folder = _variant(valid_checkpoint, tmp_path, "v", json.dumps(meta))
    loaded = load_checkpoint(folder)
    assert loaded.config.latent_width == 32 and not loaded.model.training


def test_width_bounds_are_enforced_at_the_limit(valid_checkpoint: Path, tmp_path: Path) -> None:
    too_wide = _with_config(valid_checkpoint, latent_width=MAX_LATENT_WIDTH + 1)
    folder = _variant(valid_checkpoint, tmp_path, "edge", too_wide)
    with pytest.raises(CheckpointError, match=f"latent_width must be an integer from 1 to {MAX_LATENT_WIDTH}"):
        load_checkpoint(folder)


def test_non_finite_metrics_are_refused_when_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        save_checkpoint(tmp_path / "c", build_model(ModelConfig(8, 2)), dataset="mnist", metrics={"val": float("nan")})
