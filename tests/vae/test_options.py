"""vae.options: command-line options generated from a config dataclass's fields (toy configs here;
SearchConfig's own CLI in test_cli_from_config.py)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Literal

import pytest

from vae.options import Arguments, option, python_only, resume_overrides, smoke_values


@dataclass(frozen=True)
class Inner:
    width: tuple[int, int] = option((2, 8), help="width range")
    sizes: tuple[int, ...] = option((1, 2), flag="--size-list", metavar="N", help="sizes")

    @staticmethod
    def load(path: str) -> Inner:
        return Inner(width=(int(path), int(path)))


@dataclass(frozen=True)
class Toy:
    count: int = option(3, group="main", help="how many", smoke=1, resume=True)
    rate: float | None = option(None, group="main", help="a rate", shown_default="none: no limit")
    label: str = option("a", group="main", help="a label", cli_default=lambda: "from-cli", parse=str.upper)
    colour: Literal["red", "blue"] = option("red", group="main", help="a colour")
    level: Literal[0, 1] = option(1, group="main", help="a level")
    fast: bool = option(True, group="main", help="go slowly")
    loud: bool = option(False, group="main", help="be loud")
    inner: Inner = option(default_factory=Inner, group="nested", metavar="N", parse=Inner.load,
                          shown_default="the ranges below", help="a base")
    table: dict[str, Any] | None = python_only(None, help="set from Python only", smoke={"x": 1})


def _parser(cls: type = Toy) -> tuple[argparse.ArgumentParser, Arguments]:
    parser = argparse.ArgumentParser(prog="toy")
    arguments = Arguments(cls)
    arguments.add_to(parser)
    return parser, arguments


def test_flags_types_and_switches_come_from_the_fields():
    parser, arguments = _parser()
    assert arguments.flags == {"count": "--count", "rate": "--rate", "label": "--label", "colour": "--colour",
                               "level": "--level", "fast": "--no-fast", "loud": "--loud", "inner": "--inner"}
    assert [a.flag for a in arguments.items if a.top == "inner"] == ["--inner", "--width", "--size-list"]
    args = parser.parse_args(["--count", "5", "--rate", "0.5", "--colour", "blue", "--level", "0", "--no-fast",
                              "--loud", "--width", "3", "4", "--size-list", "7", "8", "9"])
    values = arguments.values(args)
    assert values == {"count": 5, "rate": 0.5, "label": "FROM-CLI", "colour": "blue", "level": 0, "fast": False,
                      "loud": True, "inner": Inner(width=(3, 4), sizes=(7, 8, 9))}
    assert Toy(**values).count == 5
    with pytest.raises(SystemExit):
        parser.parse_args(["--colour", "green"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--level", "2"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--width", "3"])


def test_options_not_given_keep_the_dataclass_default_and_presets_apply_unless_given():
    parser, arguments = _parser()
    assert arguments.values(parser.parse_args([])) == {"label": "FROM-CLI"}  # its CLI default, parsed
    assert Toy(**arguments.values(parser.parse_args([]))).fast is True
    presets = smoke_values(Toy)
    assert presets == {"count": 1, "table": {"x": 1}}
    assert arguments.values(parser.parse_args([]), presets)["count"] == 1
    assert arguments.values(parser.parse_args(["--count", "9"]), presets)["count"] == 9
    assert [a.field for a in arguments.given(parser.parse_args(["--count", "9", "--width", "1", "2"]))] == [
        "count", "width"]
    assert resume_overrides(Toy) == ("count",)


def test_a_nested_config_starts_from_its_own_option_and_its_fields_override_it():
    parser, arguments = _parser()
    assert arguments.values(parser.parse_args(["--inner", "5"]))["inner"] == Inner(width=(5, 5))
    assert arguments.values(parser.parse_args(["--inner", "5", "--size-list", "3"]))["inner"] == Inner(
        width=(5, 5), sizes=(3,))


def test_help_shows_every_option_with_its_default():
    parser, _ = _parser()
    text = " ".join(parser.format_help().split())
    for fragment in ("--count COUNT how many (default 3)", "--rate RATE a rate (default none: no limit)",
                     "--colour {red,blue} a colour (default red)", "--no-fast go slowly", "--loud be loud",
                     "--width LOW HIGH width range (default 2 8)", "--size-list N [N ...] sizes (default 1 2)",
                     "--inner N a base (default the ranges below)", "nested:"):
        assert fragment in text
    assert "--table" not in text


def test_every_field_must_declare_its_option():
    @dataclass(frozen=True)
    class Bare:
        count: int = 3

    with pytest.raises(TypeError, match="field count declares no command-line option"):
        Arguments(Bare)


def test_a_field_the_cli_cannot_show_is_refused():
    @dataclass(frozen=True)
    class NoneDefault:
        value: int | None = option(None, group="g", help="h")

    @dataclass(frozen=True)
    class Table:
        value: dict[str, int] = option(default_factory=dict, group="g", help="h")

    @dataclass(frozen=True)
    class NoGroup:
        value: int = option(1, help="h")

    for cls, fragment in ((NoneDefault, "say what its default means"), (Table, "no command-line form"),
                          (NoGroup, "needs a group")):
        with pytest.raises(TypeError, match=f"field value: .*{fragment}"):
            Arguments(cls)
