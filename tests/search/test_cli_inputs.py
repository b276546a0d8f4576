"""Issue 11: hostile --space files and a --storage that is a file end in one `error:` line and exit 2,
before anything is started or written."""

from __future__ import annotations

import pytest

from search.run import main


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("content, fragment", [
    ("latent_width: [16, .inf]\n", "latent_width bounds"),
    ("reparam_width: [-.inf, 8]\n", "reparam_width bounds"),
    ("lr: [1e-4, .inf]\n", "lr bounds"),
    ("lr: [.nan, 1e-2]\n", "lr bounds"),
    ("batch_size: [.inf]\n", "batch_size choices"),
    ("latent_width: [16, 1e400]\n", "latent_width bounds"),
    ("{1: [1, 2], latent_width: [16, 32]}\n", "unknown search space parameter"),
    ("latent_width: !!python/object/apply:os.system ['true']\n", "cannot read search space file"),
    ("latent_width: [&a [&b [&c [1, 2], *c, *c, *c], *b, *b, *b], [*a, *a, *a, *a]]\n", "latent_width bounds"),
    ("latent_width: [16, 32\n", "cannot read search space file"),
])
def test_hostile_space_files_exit_2_with_one_line(content, fragment, capsys, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(content)
    storage = tmp_path / "results"
    assert main(["--space", str(space), "--storage", str(storage)]) == 2
    assert fragment in _one_line_error(capsys)
    assert not storage.exists()


def test_a_binary_space_file_exits_2(capsys, tmp_path):
    space = tmp_path / "space.bin"
    space.write_bytes(bytes(range(256)) * 8)
    assert main(["--space", str(space), "--storage", str(tmp_path / "results")]) == 2
    assert "not UTF-8 text" in _one_line_error(capsys)


def test_a_huge_space_file_exits_2(capsys, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("# padding\n" * 100_000)
    assert main(["--space", str(space), "--storage", str(tmp_path / "results")]) == 2
    assert "larger than" in _one_line_error(capsys)


@pytest.mark.parametrize("below", [False, True])
def test_storage_that_is_a_file_exits_2(below, capsys, tmp_path):
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder")
    storage = blocker / "sub" if below else blocker
    assert main(["--storage", str(storage), "--smoke-test"]) == 2
    assert "give a folder for the experiments" in _one_line_error(capsys)
    assert blocker.read_text() == "not a folder"
