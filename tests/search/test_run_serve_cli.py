"""`python -m search.run --serve` refuses what it cannot do, with one line and exit status 2, before any search
or app starts."""

from __future__ import annotations

import pytest

from search.run import main


@pytest.mark.parametrize("argv, message", [
    (["--serve", "--storage", "s3://bucket/experiments"], "error: --serve needs a local --storage"),
    (["--serve", "--serve-port", "0"], "error: --serve-port is out of range: 0"),
    (["--serve", "--serve-port", "70000"], "error: --serve-port is out of range: 70000"),
])
def test_serve_refuses_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if "--storage" not in argv:
        argv = [*argv, "--storage", str(tmp_path / "results")]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == message
    assert not (tmp_path / "results").exists()
