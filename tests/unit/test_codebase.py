"""Checks over the whole product: no module over 350 lines, every package folder listed for the
wheel."""

from __future__ import annotations

import tomllib
from helpers import REPO


def test_no_module_of_the_product_is_over_350_lines():
    sizes = {
        str(path.relative_to(REPO)): len(path.read_text().splitlines())
        for package in ("search", "trainables")
        for path in (REPO / package).rglob("*.py")
    }
    assert len(sizes) > 40, sizes  # the packages were found
    assert {name: n for name, n in sizes.items() if n > 350} == {}


def test_every_package_folder_of_the_checkout_is_listed_for_the_wheel():
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("search", "trainables")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert "freezeframe_configs" in listed
