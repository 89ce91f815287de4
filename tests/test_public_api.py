"""Every package re-exports what its ``__all__`` promises, sorted (STYLE.md convention 1)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import lightning_xai

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(lightning_xai.__path__, "lightning_xai.") if m.ispkg
)


@pytest.mark.parametrize("name", ["lightning_xai", *MODULES])
def test_all_names_exist_and_are_sorted(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(getattr(module, "__all__", []))
    assert exported, f"{name} has no __all__"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names {missing}, which it does not define"
    # isort style, as ruff keeps it: CONSTANTS, then Classes, then functions
    kind = lambda n: (0 if n.isupper() else 1 if n[:1].isupper() else 2, n)  # noqa: E731
    assert exported == sorted(exported, key=kind), f"{name}.__all__ is not sorted"
