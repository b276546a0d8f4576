"""The README stays a short user's guide whose commands work: every `python -m ...` command in it is
accepted by that command's own parser (values validated as the CLI validates them), every file it
links to exists, and the one-model training command runs (with a one-epoch budget)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MAX_LINES = 200
COMMAND = re.compile(r"(?:\.venv/bin/|~/venv/bin/)?python3? -m (search\.run|serve\.app|vae\.train)\b([^`'\n]*)")


def readme_commands() -> list[tuple[str, list[str]]]:
    """(module, argv) of every `python -m` command in the README (code blocks and inline code)."""
    found = []
    for module, rest in COMMAND.findall(README.read_text()):
        rest = rest.split("&&")[0].split("#")[0].replace("\\", " ")
        argv = shlex.split(rest.replace("<name>", "exp"))
        found.append((module, [a for a in argv if a != "..."]))
    return found


def test_readme_is_short() -> None:
    lines = README.read_text().count("\n")
    assert lines < MAX_LINES, f"README.md has {lines} lines; keep it a five-minute read (< {MAX_LINES})"


def test_readme_names_the_main_commands() -> None:
    modules = {module for module, _ in readme_commands()}
    assert modules == {"search.run", "serve.app", "vae.train"}


@pytest.mark.parametrize("module,argv", readme_commands(), ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_readme_command_is_accepted_by_its_parser(module: str, argv: list[str], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths (results/, runs/) resolve somewhere harmless
    if "--help" in argv:
        done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0 and "usage" in done.stdout
        return
    if module == "search.run":
        from search.run import build_parser, config_from_args

        config_from_args(build_parser().parse_args(argv))  # raises on any value the CLI would refuse
    elif module == "serve.app":
        from serve.app import _parse_args

        _parse_args(argv)
    else:
        from vae.train import _parse_args as parse_train_args

        parse_train_args(argv)


def test_readme_links_and_images_exist() -> None:
    text = README.read_text()
    targets = re.findall(r"\]\(([^)#\s]+)\)", text)
    assert targets, "the README links nothing"
    missing = [t for t in targets if not t.startswith("http") and not (REPO / t).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_every_results_row_names_its_json() -> None:
    section = README.read_text().split("## Results")[-1].split("## Layout")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows, "no results rows"
    for row in rows:
        assert re.search(r"benchmarks/results/\w+\.json", row), f"a results row without its source JSON: {row}"


@pytest.mark.slow
def test_readme_training_command_runs(tmp_path: Path, mnist_data_dir: Path) -> None:
    module, argv = next((m, a) for m, a in readme_commands() if m == "vae.train")
    done = subprocess.run([sys.executable, "-m", module, *argv, "--rounds", "1", "--out", str(tmp_path / "run"),
                           "--data-dir", str(mnist_data_dir)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").is_file()
