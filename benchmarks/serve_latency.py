"""Latency and throughput of the web app's Generate endpoint against the bare model call.

Starts ``python -m serve.app`` on a small trained checkpoint (trained here for one epoch unless
--checkpoint is given), then sends a bounded number of Generate requests (16 samples each, a new
seed each) from 1, 4 and 16 concurrent gradio_client clients on 127.0.0.1, each client in its own
thread with its own Client. Side by side, in the same run, it times the bare call of the same
request in-process (serve.service.VAEService.generate, one torch thread as in the server) and the
PNG encoding of its two grids. The app's overhead is app p50 minus bare p50.

gradio_client note: it opens a new httpx client for each request and each file it downloads; with
its default ssl_verify=True each one loads the CA bundle (about 20-30 ms here) even for http://
URLs. Loopback has no TLS, so the clients here pass ssl_verify=False; one extra row measures the
default client at 1 client, to show that cost. Its SSE reader also polls every 50 ms, which sets a
floor under every request's latency that no server setting can lower.

    VAESEARCH_DATA_DIR=../shared/mnist python benchmarks/serve_latency.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))  # the tests' free-port helper

from ports import free_port  # noqa: E402

CLIENTS = (1, 4, 16)
REQUESTS = {1: 60, 4: 120, 16: 192}  # per level, split evenly between the clients
REQUEST = {"class_index": 7, "n_samples": 16, "noise_scale": 1.0, "n_sources": 1, "mode": "class_gaussian"}
EXAMPLES_REQUEST = {**REQUEST, "mode": "examples"}  # the article's mode, measured at 1 client beside it
TARGET_P50_MS = 100.0


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def train_checkpoint(folder: Path) -> Path:
    from vae.checkpoint import save_checkpoint
    from vae.class_gaussians import fit_class_gaussians
    from vae.config import ModelConfig, TrainConfig
    from vae.data import load_splits
    from vae.train import fit

    data = load_splits("mnist", seed=0)
    result = fit(ModelConfig(256, 16), TrainConfig(lr=1e-3, rounds=1), data, device="cpu")
    gaussians = fit_class_gaussians(result.model, data.train.images, data.train.labels, 10)
    return save_checkpoint(folder / "checkpoint", result.model, dataset="mnist", examples=data.test,
                           class_gaussians=gaussians)


def start_app(checkpoint: Path, tmp: Path, args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, GRADIO_TEMP_DIR=str(tmp / "server"), GRADIO_ANALYTICS_ENABLED="False")
    env.pop("VAESEARCH_AUTH", None)
    command = [sys.executable, "-m", "serve.app", "--checkpoint", str(checkpoint), "--port", str(port),
               "--concurrency", str(args.concurrency), "--torch-threads", str(args.torch_threads)]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    import urllib.request

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the app exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=5):
                return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("the app did not answer within 120 s")


def bare(checkpoint: Path, repeats: int) -> tuple[dict[str, float], str]:
    """The same request in-process: the service call, and the PNG encoding the app adds to it."""
    import io

    from PIL import Image

    from serve.service import VAEService

    torch.set_num_threads(1)
    service = VAEService.from_checkpoint(checkpoint)
    for seed in range(10):
        service.generate(seed=seed, **REQUEST)
    calls, encodes = [], []
    for seed in range(repeats):
        start = time.perf_counter()
        out = service.generate(seed=seed, **REQUEST)
        calls.append(time.perf_counter() - start)
        start = time.perf_counter()
        for grid in (out.examples, out.samples):
            Image.fromarray(grid).save(io.BytesIO(), format="PNG")
        encodes.append(time.perf_counter() - start)
    config = service.served.checkpoint.config
    figures = {"p50_ms": percentile(calls, 50) * 1e3, "p99_ms": percentile(calls, 99) * 1e3,
               "png_encode_p50_ms": percentile(encodes, 50) * 1e3}
    return figures, f"latent width {config.latent_width}, code width {config.reparam_width}"


def load(url: str, clients: int, total: int, tmp: Path, ssl_verify: bool = False,
         request: dict | None = None) -> dict[str, float]:
    from gradio_client import Client

    per_client = total // clients
    request = request or REQUEST
    pool = [Client(url, verbose=False, ssl_verify=ssl_verify, download_files=str(tmp / "client"))
            for _ in range(clients)]
    for client in pool:  # warm up each connection path once, untimed
        client.predict(seed=0, **request, api_name="/generate")
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def run(index: int, client) -> None:
        barrier.wait()
        for i in range(per_client):
            start = time.perf_counter()
            try:
                examples, samples = client.predict(seed=1000 * index + i, **request, api_name="/generate")
                ok = Path(samples).stat().st_size > 0 and Path(examples).stat().st_size > 0
                error = None if ok else "empty file"
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                error = f"{type(exc).__name__}: {exc}"
            elapsed = time.perf_counter() - start
            with lock:
                (failures.append(error) if error else latencies.append(elapsed))

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(pool)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {
        "clients": clients, "requests": per_client * clients, "failed": len(failures),
        "p50_ms": percentile(latencies, 50) * 1e3 if latencies else float("nan"),
        "p99_ms": percentile(latencies, 99) * 1e3 if latencies else float("nan"),
        "requests_per_s": len(latencies) / wall, "first_failure": failures[0] if failures else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None, help="serve this checkpoint (default: train one)")
    parser.add_argument("--concurrency", type=int, default=2, help="the app's --concurrency (default 2)")
    parser.add_argument("--torch-threads", type=int, default=1, help="the app's --torch-threads (default 1)")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "serve_latency.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="serve-latency-") as tmp_name:
        tmp = Path(tmp_name)
        checkpoint = args.checkpoint or train_checkpoint(tmp)
        process, url = start_app(checkpoint, tmp, args)
        try:
            bare_call, model = bare(checkpoint, repeats=200)
            levels = [load(url, c, REQUESTS[c], tmp) for c in CLIENTS]
            default_client = load(url, 1, 30, tmp, ssl_verify=True)
            examples_mode = load(url, 1, 60, tmp, request=EXAMPLES_REQUEST)
        finally:
            process.terminate()
            process.wait(timeout=30)

    import gradio

    one, sixteen = levels[0], levels[-1]
    targets = {
        "p50_at_1_client_under_100_ms": one["p50_ms"] < TARGET_P50_MS,
        "no_failed_request_at_16_clients": sixteen["failed"] == 0,
        "requests_per_s_at_16_not_below_1": sixteen["requests_per_s"] >= one["requests_per_s"],
    }
    result = {
        "benchmark": "serve_latency",
        "request": f"/generate, {REQUEST['n_samples']} samples of class {REQUEST['class_index']}, mode "
                   f"{REQUEST['mode']}, a new seed each",
        "model": model,
        "app": {"concurrency": args.concurrency, "torch_threads": args.torch_threads, "image_format": "png"},
        "bare_call_ms": {k: round(v, 2) for k, v in bare_call.items()},
        "levels": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in level.items()} for level in levels],
        "app_overhead_p50_ms": round(one["p50_ms"] - bare_call["p50_ms"], 1),
        "examples_mode_1_client": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in examples_mode.items()},
        "default_client_1_client": {"p50_ms": round(default_client["p50_ms"], 1),
                                    "note": "gradio_client with ssl_verify=True (CA bundle loaded per request)"},
        "targets": targets,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end, "
                   f"Python {platform.python_version()}, torch {torch.__version__}, gradio {gradio.__version__}",
    }

    print(f"bare service call (same request, in-process): p50 {bare_call['p50_ms']:.2f} ms, "
          f"p99 {bare_call['p99_ms']:.2f} ms; PNG encoding of its two grids "
          f"p50 {bare_call['png_encode_p50_ms']:.2f} ms")
    header = ("clients", "requests", "failed", "p50 ms", "p99 ms", "req/s", "p50 - bare ms")
    print(" ".join(f"{h:>{max(7, len(h))}}" for h in header))
    for level in levels:
        print(f"{level['clients']:>7} {level['requests']:>8} {level['failed']:>7} {level['p50_ms']:>7.1f} "
              f"{level['p99_ms']:>7.1f} {level['requests_per_s']:>7.1f} {level['p50_ms'] - bare_call['p50_ms']:>13.1f}")
    print(f"default gradio_client (ssl_verify=True), 1 client: p50 {default_client['p50_ms']:.1f} ms")
    print(f"mode examples, 1 client: p50 {examples_mode['p50_ms']:.1f} ms, {examples_mode['failed']} failed")
    for name, met in targets.items():
        print(f"target {name}: {'met' if met else 'MISSED'}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    headline = HERE / "results" / "serve_latency.json"
    headline.parent.mkdir(parents=True, exist_ok=True)
    headline.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out} and {headline}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
