"""The lazy package namespaces (PEP 562) of gancore and ganomaly stay consistent.

Each package lists its public names twice: in ``_SOURCE`` (name -> module, what the
lazy loader imports) and in an ``if TYPE_CHECKING:`` block (what static analysers and
IDEs see).  This test keeps the two lists equal, so neither can drift.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _type_checking_imports(package: str) -> dict[str, str]:
    tree = ast.parse((ROOT / package / "__init__.py").read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        is_block = isinstance(node, ast.If) and getattr(node.test, "id", None) == (
            "TYPE_CHECKING"
        )
        if not is_block:
            continue
        for statement in node.body:
            assert isinstance(statement, ast.ImportFrom) and statement.level == 1
            for alias in statement.names:
                found[alias.asname or alias.name] = statement.module
    return found


@pytest.mark.parametrize("package", ["gancore", "ganomaly"])
def test_lazy_names_match_the_type_checking_imports(package):
    module = importlib.import_module(package)
    assert _type_checking_imports(package) == module._SOURCE
    assert module.__all__ == sorted(module._SOURCE)
    for name in module.__all__:  # every name loads, from the module it names
        value = getattr(module, name)
        source = importlib.import_module(f"{package}.{module._SOURCE[name]}")
        assert getattr(source, name) is value
