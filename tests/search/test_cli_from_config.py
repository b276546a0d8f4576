"""`python -m search.run` is derived from SearchConfig's fields: every field has a flag or is deliberately
Python-only, --help shows every option with its default, errors name the field in Python and the flag on
the command line, and --smoke-test / --resume follow what the fields declare."""

from __future__ import annotations

import dataclasses

import pytest

from search.config import RESUME_OVERRIDES, SEARCH, SMOKE_TEST, ConfigError, SearchConfig
from search.hyperparams import NAMES
from search.run import FLAGS, OPTIONS, build_parser, config_from_args, main, resume_ignored
from search.space import SearchSpace
from vae.options import Arguments, option, option_of

# A value each option accepts, for fields whose default is None (the others use their default).
SAMPLES = {"trials": "3", "address": "auto", "num_cpus": "2", "name": "exp", "data_dir": ".", "iwae_seconds": "5",
           "image_size": "32", "round_images": "4000"}


def _argv(argument, tmp_path) -> list[str]:
    """The flag with a valid value."""
    if argument.switch:
        return [argument.flag]
    if argument.field == "space":
        path = tmp_path / "space.yaml"
        path.write_text("batch_size: [128]\n")
        return [argument.flag, str(path)]
    if argument.field in SAMPLES:
        return [argument.flag, SAMPLES[argument.field]]
    if argument.top == "space":
        default = SearchSpace()[argument.field]
    else:
        default = next(f for f in dataclasses.fields(SearchConfig) if f.name == argument.field).default
    values = default if isinstance(default, tuple) else (default,)
    return [argument.flag, *(format(v, "g") if isinstance(v, float) else str(v) for v in values)]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_every_field_has_a_flag_or_is_python_only():
    python_only = set()
    for f in dataclasses.fields(SearchConfig):
        opt = option_of(f)  # raises for a field that declares neither
        assert opt.help
        if opt.cli:
            assert f.name in FLAGS
        else:
            python_only.add(f.name)
            assert f.name not in FLAGS
    assert python_only and not python_only & set(FLAGS)
    space_flags = {a.field for a in OPTIONS.items if a.top == "space" and a.field != "space"}
    assert space_flags == set(NAMES)  # one option per hyperparameter of the registry


def test_help_lists_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for argument in OPTIONS.items:
        assert argument.flag in text
        if not argument.switch:
            assert "(default " in argument.kwargs["help"], argument.flag
    for action in build_parser()._actions:
        if action.option_strings and action.nargs != 0:  # every option that takes a value
            assert "(default " in action.help, action.option_strings
    for fragment in ("--max-rounds MAX_ROUNDS most rounds a trial trains (ASHA's max_t)", "(default 300)",
                     "--round-images N training images per round", "(default 8000 images of 28x28 pixels",
                     "--time-budget SECONDS", "0: no limit; with --resume, counted from the resume (default 450)",
                     "--latent-width LOW HIGH",
                     "(default 32 1024)", "--lr LOW HIGH AdamW learning rate range (default 0.0002 0.004)",
                     "--batch-sizes B [B ...]", "--lr-schedules S [S ...]", "--verbose {0,1,2}",
                     "--searcher {tpe,random,grid}", "--wandb-mode {online,offline,disabled}", "(default results/)",
                     "--no-warm-start", "--no-early-stopping", "--smoke-test", "--serve-port SERVE_PORT"):
        assert fragment in text


def test_a_new_field_is_a_new_option():
    @dataclasses.dataclass(frozen=True)
    class Extended(SearchConfig):
        warmup_trials: int = option(5, group=SEARCH, help="trials before the sampler models", smoke=2)

    arguments = Arguments(Extended)
    assert arguments.flags["warmup_trials"] == "--warmup-trials"
    new = next(a for a in arguments.items if a.field == "warmup_trials")
    assert new.kwargs["help"] == "trials before the sampler models (default 5)"
    assert new.option.smoke == 2 and not new.option.resume


@pytest.mark.parametrize("field, value", [
    ("trials", 0), ("max_rounds", 0), ("grace_period", 0), ("max_concurrent", -1), ("cpus_per_trial", 0),
    ("num_cpus", 0), ("time_budget_s", -5.0), ("gpus_per_trial", -1.0), ("seed", -1), ("dataset", "cifar10"),
    ("name", "a/b"), ("wandb_project", ""), ("address", " "), ("iwae_k", 0),
])
def test_errors_name_the_field_in_python_and_the_flag_on_the_command_line(field, value, capsys, tmp_path):
    with pytest.raises(ConfigError) as info:
        SearchConfig(**{field: value})
    assert info.value.fields == (field,)
    assert field in str(info.value) and "--" not in str(info.value)
    assert main([FLAGS[field], str(value), "--storage", str(tmp_path)]) == 2
    err = _one_line_error(capsys)
    assert FLAGS[field] in err
    assert f"{field} " not in err.replace(FLAGS[field], "")  # the field's name is gone, its flag in its place
    assert not any(tmp_path.iterdir())


def test_an_error_about_two_fields_names_both_flags(capsys, tmp_path):
    assert main(["--max-rounds", "2", "--grace-period", "3", "--storage", str(tmp_path)]) == 2
    assert _one_line_error(capsys) == "error: --grace-period (3) must not exceed --max-rounds (2)"


def test_renaming_leaves_quoted_values_and_other_fields_alone():
    error = ConfigError("name 'name a/b' must be letters; see reduction_factor", "name", "reduction_factor")
    assert error.renamed({"name": "--name"}) == "--name 'name a/b' must be letters; see reduction_factor"
    assert ConfigError("unknown dataset 'x'", "dataset").renamed(FLAGS) == "unknown --dataset 'x'"


def test_smoke_test_is_the_fields_smoke_values():
    assert SMOKE_TEST == {f.name: option_of(f).smoke for f in dataclasses.fields(SearchConfig)
                          if f.name in SMOKE_TEST}
    assert SMOKE_TEST["max_rounds"] == 2 and SMOKE_TEST["reduction_factor"] == 2  # a Python-only field too
    config = config_from_args(build_parser().parse_args(["--smoke-test", "--wandb-mode", "disabled"]))
    assert all(getattr(config, name) == value for name, value in SMOKE_TEST.items())
    resumed = config_from_args(build_parser().parse_args(["--smoke-test", "--resume"]))
    assert resumed.trials is None  # the experiment's own number
    assert resumed.max_rounds == SMOKE_TEST["max_rounds"]


def test_resume_notes_exactly_the_flags_of_the_fields_it_does_not_override(tmp_path):
    parser = build_parser()
    noted = set()
    for argument in OPTIONS.items:
        args = parser.parse_args(["--resume", *_argv(argument, tmp_path)])
        config_from_args(args)  # a valid value
        ignored = resume_ignored(args)
        overridden = argument.top in RESUME_OVERRIDES
        assert ignored == ([] if overridden else [argument.flag]), argument.flag
        noted.update(ignored)
    assert {"--max-rounds", "--space", "--latent-width", "--lr", "--batch-sizes", "--searcher", "--seed"} <= noted
    assert not {"--trials", "--address", "--num-cpus", "--storage", "--name", "--verbose", "--resume",
                "--time-budget"} & noted
    assert resume_ignored(parser.parse_args(["--resume", "--smoke-test"])) == ["--smoke-test"]


def test_resumed_takes_the_overridable_fields_from_this_run_and_the_rest_from_the_experiment():
    original = SearchConfig(max_rounds=5, grace_period=1, seed=3, address="head:6379", num_cpus=8, verbose=2,
                            storage="/old", name="exp", space=SearchSpace(batch_size=(64,)))
    run = SearchConfig(resume=True, max_rounds=70, seed=9, num_cpus=2, verbose=0, storage="/new", name="exp")
    resumed = run.resumed(original, trials=12)
    for name in RESUME_OVERRIDES:
        assert getattr(resumed, name) == (12 if name == "trials" else getattr(run, name)), name
    assert (resumed.max_rounds, resumed.seed, resumed.space) == (5, 3, original.space)
    assert resumed.address is None and resumed.resume
