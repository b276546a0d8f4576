"""Your own images at full size: the full Fashion-MNIST written out as a PNG folder (train/ and test/, one
sub-folder per class: 60,000 + 10,000 files) and loaded through the folder path, against the same data through
its IDX files.

1. Loading: the folder is decoded by ``vae.data.load_splits`` in a fresh process (wall time and that process's
   peak resident memory).
2. The same default ``--trials 20`` search on both (the folder's train/test split is the IDX files' official
   one, and validation is carved from train with the same seed, so both searches see the same images), one after
   the other on the same cores: the served models' test neg-ELBO.

Writes benchmarks/results/own_data.json as {"load_s", "peak_rss_mb", "files", "folder": {"test_neg_elbo", ...},
"idx": {"test_neg_elbo", ...}, "difference_nats"}. The PNG folder is kept under benchmarks/out/ (not committed).

    .venv/bin/python benchmarks/own_data.py --data-dir /usr/share/datasets/fashion-mnist
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from search.config import DEFAULT_TRIALS, SearchConfig  # noqa: E402
from search.export import SUMMARY_JSON  # noqa: E402
from search.tracking import default_wandb_mode  # noqa: E402
from vae.data import load_splits  # noqa: E402

RESULTS = HERE / "results" / "own_data.json"
FOLDER = HERE / "out" / "fashion_mnist_png"
LOAD_PROBE = """
import json, resource, sys, time
sys.path.insert(0, {repo!r})
from vae.data import load_splits
started = time.perf_counter()
data = load_splits({folder!r}, log_fn=lambda m: None)
print(json.dumps({{"load_s": time.perf_counter() - started,
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "train": len(data.train), "val": len(data.val), "test": len(data.test)}}))
"""


def write_png_folder(data_dir: Path, folder: Path) -> int:
    """Fashion-MNIST's IDX files as folder/{train,test}/<class>/<index>.png (the official splits: no validation
    carved here); returns the number of files."""
    data = load_splits("fashion-mnist", data_dir, val_fraction=0.0, log_fn=lambda _m: None)
    # "T-shirt/top" is no folder name; the index first keeps the IDX class order (folders are read sorted), so that
    # the per-class validation draw picks the same images as through the IDX files
    names = [f"{k}-{name.replace('/', '-')}" for k, name in enumerate(data.class_names)]
    written = 0
    for part, split in (("train", data.train), ("test", data.test)):
        for name in names:
            (folder / part / name).mkdir(parents=True, exist_ok=True)
        pixels = (split.images * 255).round().to(torch.uint8).reshape(-1, 28, 28).numpy()
        for index, (image, label) in enumerate(zip(pixels, split.labels.tolist(), strict=True)):
            Image.fromarray(np.ascontiguousarray(image)).save(folder / part / names[label] / f"{index:05d}.png")
            written += 1
    return written


def search(dataset: str, data_dir: str | None, storage: str, name: str, trials: int) -> dict[str, Any]:
    from search.tuner import run_search

    config = SearchConfig(trials=trials, dataset=dataset, data_dir=data_dir, storage=storage, name=name,
                          wandb_mode=default_wandb_mode(), verbose=0)
    started = time.time()
    outcome = run_search(config, log=lambda m: print(m, flush=True))
    summary = json.loads((outcome.best_dir / SUMMARY_JSON).read_text())
    return {"test_neg_elbo": summary["test_neg_elbo"], "test_bits_per_dim": summary.get("test_bits_per_dim"),
            "test_iwae": summary["test_iwae"], "test_iwae_se": summary["test_iwae_se"],
            "best_origin": summary["best_origin"], "wall_s": round(time.time() - started, 1),
            "stop_reason": outcome.stop_reason}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist",
                        help="Fashion-MNIST's IDX folder")
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS)
    parser.add_argument("--folder", default=str(FOLDER), help="where the PNG folder is written (kept)")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    data_dir, folder = Path(args.data_dir), Path(args.folder)
    if not data_dir.is_dir():
        print(f"error: no Fashion-MNIST IDX folder at {data_dir}", file=sys.stderr)
        return 2
    if not (folder / "test").is_dir():
        started = time.perf_counter()
        files = write_png_folder(data_dir, folder)
        print(f"wrote {files} PNG files to {folder} in {time.perf_counter() - started:.0f} s", flush=True)
    files = sum(1 for _ in folder.rglob("*.png"))
    probe = subprocess.run([sys.executable, "-c", LOAD_PROBE.format(repo=str(REPO), folder=str(folder))],
                           capture_output=True, text=True, check=True)
    load = json.loads(probe.stdout.strip().splitlines()[-1])
    print(f"loaded {files} files in {load['load_s']:.1f} s, peak RSS {load['peak_rss_mb']:.0f} MB "
          f"(train {load['train']}, val {load['val']}, test {load['test']})", flush=True)
    with tempfile.TemporaryDirectory(prefix="vaesearch-own-") as storage:
        through_folder = search(str(folder), None, storage, "folder", args.trials)
        through_idx = search("fashion-mnist", str(data_dir), storage, "idx", args.trials)
    difference = through_folder["test_neg_elbo"] - through_idx["test_neg_elbo"]
    result = {"benchmark": "own_data", "files": files, "load_s": round(load["load_s"], 1),
              "peak_rss_mb": round(load["peak_rss_mb"]), "splits": {k: load[k] for k in ("train", "val", "test")},
              "folder": through_folder, "idx": through_idx, "difference_nats": round(difference, 2),
              "target": {"goal": "|folder - idx| <= 0.5 nats", "met": abs(difference) <= 0.5}}
    Path(args.results).write_text(json.dumps(result, indent=2) + "\n")
    print(f"folder {through_folder['test_neg_elbo']:.2f} vs IDX {through_idx['test_neg_elbo']:.2f}: "
          f"{difference:+.2f} nats; wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
