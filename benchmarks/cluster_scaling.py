"""Scheduling overhead of a multi-node Ray cluster: the same 8-trial search on one node with 2 CPUs
versus two nodes with 1 CPU each (the same total CPUs), side by side in one run.

Both layouts are real clusters started with `ray start` on 127.0.0.1 (tests/cluster/localcluster.py):
a head that advertises no CPUs plus the worker node(s), so the driver and the trials are placed the
same way in both. The search is `python -m search.run --address ...` with Optuna's random sampler
(same seed, so both layouts train the same 8 configurations), ASHA off, 2 trials at a time, 1 CPU
each. Layouts alternate, `--repeats` times; the figure per layout is the median wall time of the
whole search command (driver start, Ray connection, trials, export).

    python benchmarks/cluster_scaling.py --data-dir ../shared/mnist
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from reporting import add_output_args, write_reports

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "cluster")]  # the local multi-node cluster helper

from localcluster import LocalRayCluster, NodeSpec, two_worker_cluster  # noqa: E402

from search.layout import LEADERBOARD_JSON, best_dir  # noqa: E402


def one_worker_cluster() -> LocalRayCluster:
    return LocalRayCluster(head=NodeSpec("head", num_cpus=0), workers=[NodeSpec("node_a", 2, {"node_a": 1})])


LAYOUTS: dict[str, Callable[[], LocalRayCluster]] = {
    "1 node x 2 CPUs": one_worker_cluster,
    "2 nodes x 1 CPU": two_worker_cluster,
}


def search_command(address: str, storage: Path, name: str, args: argparse.Namespace) -> list[str]:
    command = [
        sys.executable, "-m", "search.run", "--address", address, "--storage", str(storage), "--name", name,
        "--trials", str(args.trials), "--max-rounds", str(args.max_rounds), "--no-early-stopping",
        "--searcher", "random", "--seed", "0", "--max-concurrent", "2", "--cpus-per-trial", "1",
        "--latent-width", "16", "512", "--reparam-width", "2", "64", "--batch-sizes", "128",
        "--wandb-mode", "disabled", "--verbose", "0",
    ]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    return command


def run_layout(layout: str, run: int, storage: Path, args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    with LAYOUTS[layout]() as cluster:
        startup_s = time.perf_counter() - t0
        name = f"scaling-{run}-{len(cluster.worker_specs)}node"
        env = cluster.driver_env()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        t1 = time.perf_counter()
        done = subprocess.run(search_command(cluster.address, storage, name, args), cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=1800)
        wall_s = time.perf_counter() - t1
    if done.returncode != 0:
        raise SystemExit(f"{layout}: search failed ({done.returncode}):\n{done.stderr[-3000:]}")
    rows = json.loads((best_dir(storage / name) / LEADERBOARD_JSON).read_text())
    return {
        "layout": layout, "run": run, "cluster_start_s": round(startup_s, 2), "search_wall_s": round(wall_s, 2),
        "load_average_1min_after": round(os.getloadavg()[0], 2),  # other work on the machine shows here
        "trial_time_sum_s": round(sum(r["time_s"] for r in rows), 2),
        "nodes_used": len({r["node"] for r in rows}),
        "statuses": sorted({r["status"] for r in rows}),
        "trials": sorted((r["latent_width"], r["reparam_width"], round(r["lr"], 8)) for r in rows),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--max-rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="runs per layout, alternating layouts")
    parser.add_argument("--data-dir", default=os.environ.get("VAESEARCH_DATA_DIR"),
                        help="MNIST IDX folder (default $VAESEARCH_DATA_DIR; none: torchvision downloads)")
    parser.add_argument("--storage", default=str(HERE / "out" / "cluster_scaling"))
    add_output_args(parser, "cluster_scaling")
    args = parser.parse_args(argv)
    if args.data_dir:
        args.data_dir = str(Path(args.data_dir).absolute())
    storage = Path(args.storage).absolute()
    stamp = time.strftime("%Y%m%d-%H%M%S")

    runs = []
    for repeat in range(args.repeats):
        for layout in LAYOUTS:
            result = run_layout(layout, repeat, storage / stamp, args)
            runs.append(result)
            print(f"{layout:>16}  run {repeat}: search {result['search_wall_s']:7.1f} s wall, trials "
                  f"{result['trial_time_sum_s']:6.1f} s summed, {result['nodes_used']} node(s) used, "
                  f"cluster start {result['cluster_start_s']:.1f} s", flush=True)

    median = {layout: round(statistics.median(r["search_wall_s"] for r in runs if r["layout"] == layout), 1)
              for layout in LAYOUTS}
    one, two = median["1 node x 2 CPUs"], median["2 nodes x 1 CPU"]
    same_trials = len({json.dumps(r["trials"]) for r in runs}) == 1
    headline = {
        "benchmark": "cluster_scaling",
        "search": f"{args.trials} trials x {args.max_rounds} rounds (random sampler, seed 0, no early stopping), "
                  "2 concurrent, 1 CPU per trial, --address to a ray start cluster on 127.0.0.1",
        "median_search_wall_s": median,
        "two_nodes_over_one_node": round(two / one, 3),
        "repeats": args.repeats,
        "load_average_1min_after_runs": [r["load_average_1min_after"] for r in runs],
        "same_trials_in_every_run": same_trials,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    }
    print(f"median wall time: 1 node x 2 CPUs {one:.1f} s, 2 nodes x 1 CPU {two:.1f} s, ratio {two / one:.3f} "
          f"(same trials in every run: {same_trials})")
    write_reports(args.out, {**headline, "runs": runs}, args.results, headline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
