"""The app needs Gradio 6: serve/app.py passes arguments that Gradio 5 does not have (launch(css=...),
Image(buttons=...), api_visibility=...). pyproject.toml says so, and on an older Gradio this test fails
first, naming the versions, instead of the app failing later with a TypeError."""

from __future__ import annotations

import re
from pathlib import Path

import gradio
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def declared_gradio() -> Requirement:
    """pyproject.toml's requirement on gradio (read as text: tomllib needs Python 3.11, the project 3.10)."""
    found = re.findall(r'"(gradio\s*[<>=!~][^"]*)"', PYPROJECT.read_text())
    assert len(found) == 1, f"expected one gradio requirement in pyproject.toml, found {found}"
    return Requirement(found[0])


def test_installed_gradio_is_one_that_pyproject_allows() -> None:
    requirement = declared_gradio()
    assert requirement.specifier.contains(gradio.__version__), (
        f"gradio {gradio.__version__} is installed, pyproject.toml asks for {requirement}")


def test_pyproject_allows_only_the_gradio_whose_internals_were_checked() -> None:
    specifier = declared_gradio().specifier
    assert not any(specifier.contains(v) for v in ("5.0.0", "5.50.0", "6.0.0", "6.32.0", "7.0.0")), specifier
    assert specifier.contains("6.31.0")
