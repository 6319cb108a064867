"""The API reference in docs/ documents every public function, once, under its family.

This reads the reStructuredText sources of the reference pages; it does not build the site
(the build itself runs with warnings as errors in CI).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

import jaxloss

API = Path(__file__).resolve().parent.parent / "docs" / "api"
PUBLIC = sorted(n for n in dir(jaxloss) if not n.startswith("_") and callable(getattr(jaxloss, n)))

_DIRECTIVE = re.compile(r"^\s*\.\.\s+autofunction::\s+(?:jaxloss\.)?(\w+)\s*$", re.MULTILINE)
_AUTOSUMMARY = re.compile(r"^\.\. autosummary::\n((?:[ \t]+.*\n|[ \t]*\n)+)", re.MULTILINE)


def _documented() -> Counter[str]:
    """Names given to `.. autofunction::` on the family pages, with their counts."""
    return Counter(
        name
        for page in sorted(API.glob("*.rst"))
        if page.name != "index.rst"
        for name in _DIRECTIVE.findall(page.read_text())
    )


def _summarised() -> list[str]:
    """Names listed in the `.. autosummary::` tables of the reference's index page."""
    names = []
    for block in _AUTOSUMMARY.findall((API / "index.rst").read_text()):
        for line in block.splitlines():
            entry = line.strip()
            if entry and not entry.startswith(":"):
                names.append(entry.removeprefix("jaxloss."))
    return names


def test_public_api_is_not_empty() -> None:
    assert len(PUBLIC) >= 10, PUBLIC


@pytest.mark.parametrize("name", PUBLIC)
def test_public_function_has_a_reference_entry(name: str) -> None:
    assert _documented()[name] == 1, f"add `.. autofunction:: {name}` to one page of docs/api/"


@pytest.mark.parametrize("name", PUBLIC)
def test_public_function_is_in_the_overview(name: str) -> None:
    assert name in _summarised(), f"list {name} in an autosummary table of docs/api/index.rst"


def test_reference_lists_only_public_functions() -> None:
    stale = (set(_documented()) | set(_summarised())) - set(PUBLIC)
    assert not stale, f"docs/api/ names functions that jaxloss does not export: {sorted(stale)}"
