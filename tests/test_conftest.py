"""Issue 11: plain `pytest` from the repository works without VAESEARCH_DATA_DIR (the conftest falls back
to ../shared/mnist and passes it on to the processes tests start), and says clearly when no data exists."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from vae.data import DATA_DIR_ENV

REPO = Path(__file__).resolve().parents[1]


def _env_without_data_dir() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != DATA_DIR_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def test_plain_pytest_finds_the_offline_data(tmp_path: Path) -> None:
    probe = tmp_path / "test_probe.py"  # a child process of a test, as the app and search tests start them
    probe.write_text(
        "import os, subprocess, sys\n"
        f"def test_child_sees_the_data(data_dir):\n"
        f"    out = subprocess.run([sys.executable, '-c', 'import os; print(os.environ[\"{DATA_DIR_ENV}\"])'],\n"
        "                         capture_output=True, text=True, check=True).stdout.strip()\n"
        "    assert out == data_dir and os.path.isdir(out)\n"
    )
    target = REPO / "tests" / "search" / f"test_probe_{os.getpid()}.py"
    shutil.copy(probe, target)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(target),
             "tests/search/test_run_cli.py::test_resume_without_an_experiment_exits_2"],
            cwd=REPO, env=_env_without_data_dir(), capture_output=True, text=True, timeout=300)
    finally:
        target.unlink()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "2 passed" in run.stdout


def test_no_data_anywhere_is_a_clear_failure(tmp_path: Path) -> None:
    """A checkout with no ../shared/mnist and no variable: the data tests fail with one clear line."""
    checkout = tmp_path / "checkout"
    (checkout / "tests").mkdir(parents=True)
    shutil.copy(REPO / "tests" / "conftest.py", checkout / "tests" / "conftest.py")
    (checkout / "tests" / "test_needs_data.py").write_text("def test_it(mnist_data_dir):\n    pass\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=checkout,
                         env=_env_without_data_dir(), capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert f"offline MNIST not found at {tmp_path / 'shared' / 'mnist'}: set {DATA_DIR_ENV}" in run.stdout
