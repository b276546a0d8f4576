"""Command-line options derived from a frozen config dataclass: what the CLI needs to know about a field
(its help, its group, how --resume and --smoke-test treat it) is declared on the field itself, with
``option(...)`` or ``python_only(...)``, and ``Arguments`` turns the fields into argparse options and the
parsed arguments back into field values.

From the field's type hint and default: ``max_epochs: int`` becomes ``--max-epochs MAX_EPOCHS`` (type int),
a ``bool`` that defaults to True becomes a switch ``--no-<name>`` (False: ``--<name>``), a ``Literal`` a
choice, ``tuple[int, int]`` two values (LOW HIGH), ``tuple[int, ...]`` one or more, ``X | None`` an
optional X; a field whose type is itself such a dataclass (``SearchConfig.space``) adds its own fields'
options to its group, and so does a type that lists its own (``cli_options()``, as the search space does from
the hyperparameter registry). Every option's help ends with its default.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass
from typing import Any, Literal, NoReturn, Union, get_args, get_origin

OPTION = "option"  # the key of a field's Option in its dataclass metadata
NO_SMOKE = object()  # Option.smoke: --smoke-test leaves the field alone


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a mistake on the command line is one line on stderr and exit status 2 (argparse would print
    the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see --help)\n")


@dataclass(frozen=True)
class Option:
    """What the CLI knows about one config field."""

    help: str  # what the option is; for a switch, what giving its flag does
    group: str | None = None  # help section (a nested dataclass's fields: None, their parent's section)
    cli: bool = True  # False: settable from Python only, deliberately (help then says why)
    flag: str | None = None  # default: --field-name, or --no-field-name for a switch that defaults to True
    metavar: str | tuple[str, ...] | None = None
    shown_default: str | None = None  # the help's "(default ...)" where the value does not say it (None)
    resume: bool = False  # True: --resume uses this run's value; False: the experiment keeps its own
    smoke: Any = NO_SMOKE  # the value under --smoke-test (unless the flag is given)
    cli_default: Callable[[], Any] | None = None  # the CLI's default when not the field's (then parsed too)
    parse: Callable[[Any], Any] | None = None  # CLI value -> field value; may raise ConfigError


def option(default: Any = MISSING, *, default_factory: Callable[[], Any] | Any = MISSING, **settings: Any) -> Any:
    """A dataclass field with a command-line option; ``settings`` are Option's."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={OPTION: Option(**settings)})


def python_only(default: Any = MISSING, *, default_factory: Callable[[], Any] | Any = MISSING, help: str,
                smoke: Any = NO_SMOKE) -> Any:
    """A dataclass field deliberately without a command-line option (``help`` says what it is)."""
    return option(default, default_factory=default_factory, help=help, cli=False, smoke=smoke)


def option_of(f: Field) -> Option:
    if OPTION not in f.metadata:
        raise TypeError(f"field {f.name} declares no command-line option: use option(...) or python_only(...)")
    return f.metadata[OPTION]


@dataclass(frozen=True)
class Argument:
    """One command-line option: ``field`` of the config (``top`` is the config's own field it sets, the
    same unless the option belongs to a nested dataclass such as the search space)."""

    field: str
    top: str
    flag: str
    dest: str
    option: Option
    switch: bool
    kwargs: dict[str, Any]


class Arguments:
    """The command-line options of a config dataclass ``cls`` (every field of it, and of a nested config
    dataclass, with an ``option``), in field order."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.items: list[Argument] = []
        self.nested: dict[str, type] = {}  # config field -> its dataclass type
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            opt = option_of(f)
            hint = hints[f.name]
            if not opt.cli:
                continue
            if opt.group is None:
                raise TypeError(f"field {f.name}: a command-line option needs a group")
            nested = _nested_options(hint)
            if nested is not None:
                self.nested[f.name] = hint
                self.items.append(_argument(f.name, f.name, f.name, opt, str, _default(f)))
                for sub_name, sub_opt, sub_hint, sub_default in nested:
                    if sub_opt.cli:
                        sub_opt = dataclasses.replace(sub_opt, group=sub_opt.group or opt.group)
                        self.items.append(_argument(sub_name, f.name, f"{f.name}.{sub_name}", sub_opt, sub_hint,
                                                    sub_default))
            else:
                self.items.append(_argument(f.name, f.name, f.name, opt, hint, _default(f)))

    @property
    def flags(self) -> dict[str, str]:
        """The config's own fields by name -> their flag (how the CLI names a field in an error)."""
        return {a.field: a.flag for a in self.items if a.field == a.top}

    def add_to(self, parser: argparse.ArgumentParser) -> dict[str, Any]:
        """Add every option to ``parser`` in a group per section, in order; returns the groups by title."""
        groups: dict[str, Any] = {}
        for a in self.items:
            title = a.option.group
            assert title is not None
            if title not in groups:
                groups[title] = parser.add_argument_group(title)
            groups[title].add_argument(a.flag, dest=a.dest, default=None, **a.kwargs)
        return groups

    def given(self, args: argparse.Namespace) -> list[Argument]:
        """The options given on the command line."""
        return [a for a in self.items if getattr(args, a.dest, None) is not None]

    def values(self, args: argparse.Namespace, presets: dict[str, Any] | None = None) -> dict[str, Any]:
        """The config's field values from ``args``: each given option's value (parsed), else its preset
        (``presets``, by field), else its CLI default; a nested config is built from its own option (its
        base) and its fields' options. Fields left out keep the dataclass default."""
        values: dict[str, Any] = dict(presets or {})
        nested: dict[str, dict[str, Any]] = {name: {} for name in self.nested}
        for a in self.items:
            raw = getattr(args, a.dest, None)
            if raw is None and a.option.cli_default is None:
                continue
            value = raw if raw is not None else a.option.cli_default() if a.option.cli_default else None
            value = tuple(value) if isinstance(value, list) else value
            value = a.option.parse(value) if a.option.parse else value
            if a.field == a.top:
                values[a.field] = value
            else:
                nested[a.top][a.field] = value
        for name, changes in nested.items():
            if changes:
                base = values.get(name, self.nested[name]())
                values[name] = base.replace(**changes) if hasattr(base, "replace") else \
                    dataclasses.replace(base, **changes)
        return values


def smoke_values(cls: type) -> dict[str, Any]:
    """The field values of ``cls`` under --smoke-test."""
    return {f.name: option_of(f).smoke for f in dataclasses.fields(cls) if option_of(f).smoke is not NO_SMOKE}


def resume_overrides(cls: type) -> tuple[str, ...]:
    """The fields of ``cls`` that --resume takes from this run (the experiment keeps its own of the rest)."""
    return tuple(f.name for f in dataclasses.fields(cls) if option_of(f).resume)


def _nested_options(hint: Any) -> list[tuple[str, Option, Any, Any]] | None:
    """The options of a nested config type: (name, Option, type hint, default) of each field of a config
    dataclass, or what a type with ``cli_options()`` (search.space.SearchSpace) declares; None otherwise."""
    if isinstance(hint, type) and hasattr(hint, "cli_options"):
        return hint.cli_options()
    if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
        return None
    hints = typing.get_type_hints(hint)
    return [(f.name, option_of(f), hints[f.name], _default(f)) for f in dataclasses.fields(hint)]


def _default(f: Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise TypeError(f"field {f.name}: a command-line option needs a default")


def _argument(name: str, top: str, dest: str, opt: Option, hint: Any, default: Any) -> Argument:
    kwargs: dict[str, Any] = {}
    switch = hint is bool
    if switch:
        if not isinstance(default, bool):
            raise TypeError(f"field {name}: a switch needs a True or False default")
        flag = opt.flag or f"--{'no-' if default else ''}{name.replace('_', '-')}"
        kwargs["action"] = "store_false" if default else "store_true"
    else:
        flag = opt.flag or f"--{name.replace('_', '-')}"
        kwargs.update(_value_kwargs(name, hint))
        if opt.metavar is not None:
            kwargs["metavar"] = opt.metavar
    help_text = opt.help if switch else f"{opt.help} (default {_shown_default(name, opt, default)})"
    kwargs["help"] = help_text.replace("%", "%%")
    return Argument(field=name, top=top, flag=flag, dest=dest, option=opt, switch=switch, kwargs=kwargs)


def _value_kwargs(name: str, hint: Any) -> dict[str, Any]:
    """argparse's type / nargs / choices / metavar for a field's type hint."""
    origin, parts = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        inner = [p for p in parts if p is not type(None)]
        if len(inner) == 1:
            return _value_kwargs(name, inner[0])
    elif origin is Literal:
        return {"type": type(parts[0]), "choices": parts}
    elif origin is tuple and len(parts) == 2 and parts[1] is Ellipsis and parts[0] in (int, float, str):
        return {"type": parts[0], "nargs": "+"}
    elif origin is tuple and len(parts) == 2 and parts[0] is parts[1] and parts[0] in (int, float):
        return {"type": parts[0], "nargs": 2, "metavar": ("LOW", "HIGH")}
    elif hint in (int, float, str):
        return {"type": hint}
    raise TypeError(f"field {name}: no command-line form for {hint}; declare it python_only(...)")


def _shown_default(name: str, opt: Option, default: Any) -> str:
    if opt.shown_default is not None:
        return opt.shown_default
    if default is None or dataclasses.is_dataclass(default):
        raise TypeError(f"field {name}: say what its default means for the help (shown_default=...)")
    items = default if isinstance(default, tuple) else (default,)
    return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in items)
