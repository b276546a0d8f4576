"""What the benchmark scripts share: where they write their figures and how they set torch's threads.

Every benchmark writes two JSON files: the full results (``--out``, under benchmarks/out/, not
committed) and the headline figures (``--results``, under benchmarks/results/, committed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent


def add_output_args(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--out", default=str(HERE / "out" / f"{name}.json"), help="full results JSON")
    parser.add_argument("--results", default=str(HERE / "results" / f"{name}.json"),
                        help="headline figures JSON (committed)")


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's own choice); 1 is steadier on a shared machine")


def apply_threads(threads: int | None) -> bool:
    """Set torch's thread count; False (with a one-line error) when ``threads`` is not >= 1."""
    if threads is None:
        return True
    if threads < 1:
        print("error: --threads must be >= 1", file=sys.stderr)
        return False
    torch.set_num_threads(threads)
    return True


def write_reports(out: str | Path, full: dict[str, Any], results: str | Path, headline: dict[str, Any]) -> None:
    for path, content in ((Path(out), full), (Path(results), headline)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=2) + "\n")
    print(f"wrote {out} and {results}")
