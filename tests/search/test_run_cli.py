"""Bad CLI input: one line on stderr and exit status 2, before any search starts."""

from __future__ import annotations

import pytest

from search.run import build_parser, config_from_args, main


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ")
    assert "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("argv, fragment", [
    (["--trials", "0"], "--trials must be a positive integer"),
    (["--max-rounds", "0"], "--max-rounds"),
    (["--lr", "0.1", "0.001"], "lr bounds"),
    (["--latent-width", "64", "16"], "latent_width bounds"),
    (["--dataset", "cifar10"], "unknown --dataset"),
    (["--gpus-per-trial", "-1"], "--gpus-per-trial"),
])
def test_bad_values_exit_2_with_one_line(argv, fragment, capsys, tmp_path):
    assert main([*argv, "--storage", str(tmp_path)]) == 2
    assert fragment in _one_line_error(capsys)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("argv, fragment", [
    (["--trials", "many"], "invalid int value"),
    (["--wandb-mode", "maybe"], "invalid choice"),
    (["--lr", "0.1"], "expected 2 arguments"),
])
def test_parse_errors_exit_2_with_one_line(argv, fragment, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert fragment in _one_line_error(capsys)


def test_unreachable_address_exits_2_before_starting(capsys, tmp_path, data_dir):
    code = main(["--address", "127.0.0.1:1", "--trials", "2", "--storage", str(tmp_path), "--data-dir", data_dir])
    assert code == 2
    assert "cannot reach the Ray cluster" in _one_line_error(capsys)
    assert not any(tmp_path.iterdir())  # nothing was started or written


def test_resume_without_an_experiment_exits_2(capsys, tmp_path):
    # (no --data-dir: a resumed experiment keeps its own, and the CLI would note that it ignores the flag)
    assert main(["--resume", "--storage", str(tmp_path)]) == 2
    assert "no experiment to resume" in _one_line_error(capsys)
    assert main(["--resume", "--name", "nope", "--storage", str(tmp_path)]) == 2
    assert "no restorable experiment" in _one_line_error(capsys)


def test_missing_data_dir_exits_2(capsys, tmp_path):
    assert main(["--data-dir", str(tmp_path / "nowhere"), "--storage", str(tmp_path)]) == 2
    assert "does not exist" in _one_line_error(capsys)


def test_smoke_test_preset_and_explicit_flags(tmp_path):
    args = build_parser().parse_args(["--smoke-test", "--max-rounds", "3", "--storage", str(tmp_path),
                                      "--wandb-mode", "disabled", "--batch-sizes", "128"])
    config = config_from_args(args)
    assert (config.trials, config.max_rounds, config.max_concurrent) == (4, 3, 2)
    assert config.space["batch_size"] == (128,)
    assert config.storage == str(tmp_path) and config.wandb_mode == "disabled"
    relative = config_from_args(build_parser().parse_args(["--storage", "results", "--data-dir", "."]))
    assert relative.storage.startswith("/") and relative.data_dir.startswith("/")


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for flag in ("--trials", "--max-rounds", "--max-concurrent", "--cpus-per-trial", "--gpus-per-trial", "--dataset",
                 "--data-dir", "--address", "--storage", "--name", "--resume", "--seed", "--wandb-project",
                 "--wandb-mode", "--smoke-test", "--space"):
        assert flag in out
