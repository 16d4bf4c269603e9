"""What the package exports, so nothing becomes public by accident (after httpx's exported-members
test): the top-level API is this exact list, every module declares `__all__`, every name in it
exists, and every public def or class a module defines is either listed or made private."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import llm_energy_widget

PUBLIC_API = {
    "EnergyProfiler",
    "EnergyWidget",
    "EnergyWidgetError",
    "PowerSampler",
    "Run",
    "Store",
    "__version__",
    "compare",
    "get_source",
    "list_sources",
    "live",
    "load_default_model",
    "load_model",
    "predict",
    "profile",
    "sweep",
}

ROOT = Path(llm_energy_widget.__file__).parent
MODULES = sorted(
    ".".join(p.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")
    for p in ROOT.rglob("*.py")
    if p.name != "__main__.py"
)


def test_the_top_level_api_is_the_documented_list() -> None:
    assert set(llm_energy_widget.__all__) == PUBLIC_API
    for name in PUBLIC_API:
        assert getattr(llm_energy_widget, name) is not None, name


def test_import_is_light() -> None:
    """`import llm_energy_widget` must not load torch, transformers, anywidget or plotly."""
    import subprocess
    import sys

    code = (
        "import sys, llm_energy_widget; "
        "print(sorted(m for m in ('torch', 'transformers', 'anywidget', 'plotly') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = llm_energy_widget.nope


@pytest.mark.parametrize("module", MODULES)
def test_every_module_declares_what_it_exports(module: str) -> None:
    mod = importlib.import_module(module)
    exported = getattr(mod, "__all__", None)
    assert isinstance(exported, list), f"{module} has no __all__ list"
    assert len(exported) == len(set(exported)), f"{module}.__all__ repeats a name"
    for name in exported:
        assert hasattr(mod, name), f"{module}.__all__ names {name!r}, which it lacks"
    path = Path(mod.__file__ or "")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    defined = {
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and not node.name.startswith("_")
    }
    assert defined <= set(exported), f"{module} defines public {sorted(defined - set(exported))}"
