"""The house's rules, read from the imports of every module (function-level imports included).

- `core` imports only the standard library, numpy, `errors` and `power.energy`/`power.record`;
- `power` never imports torch (sources must load on a machine without it);
- `view`, `store`, `exports` and `analysis` never import `profiling` (consumers read runs, they
  never reach into the producer);
- nothing outside `notebook/` touches ipykernel internals (`ipykernel`, `get_ipython()`, the
  shell's parent message); `IPython.display` is public API and allowed everywhere.

Each rule is also checked to fail on a planted violation, so a broken reader cannot pass.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PKG = "llm_energy_widget"
ROOT = Path(__file__).resolve().parents[1] / PKG
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


@dataclass(frozen=True)
class Import:
    module: str  # absolute, dotted
    line: int


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool) -> list[Import]:
    """Every module an import statement names, relative ones made absolute; `from X import y`
    counts as `X.y` too when `X.y` may be a submodule."""
    out: list[Import] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend(Import(a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            out.append(Import(target, node.lineno))
            out.extend(Import(f"{target}.{a.name}", node.lineno) for a in node.names)
    return out


def uses_kernel_internals(source: str) -> list[int]:
    """Lines that import ipykernel or IPython (other than IPython.display) or call get_ipython."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            if any(a.name.split(".")[0] == "ipykernel" for a in node.names):
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            top = (node.module or "").split(".")[0]
            if top == "ipykernel" or (top == "IPython" and node.module != "IPython.display"):
                lines.append(node.lineno)
        elif isinstance(node, ast.Name) and node.id == "get_ipython":
            lines.append(node.lineno)
    return lines


def package_modules() -> dict[str, tuple[Path, str]]:
    return {
        module_name(p): (p, p.read_text(encoding="utf-8"))
        for p in sorted(ROOT.rglob("*.py"))
        if "static" not in p.parts
    }


def _in(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def core_violations(module: str, imports: list[Import]) -> list[str]:
    allowed = (f"{PKG}.core", f"{PKG}.errors", f"{PKG}.power.energy", f"{PKG}.power.record")
    bad = []
    for imp in imports:
        top = imp.module.split(".")[0]
        if top == PKG:
            # `from ..power import record` names the package `power` first: allowed when the
            # name imported from it is allowed
            if _in(imp.module, *allowed) or imp.module in (PKG, f"{PKG}.power"):
                continue
        elif top in STDLIB or top in ("numpy", "typing_extensions"):
            continue
        bad.append(f"{module}:{imp.line} imports {imp.module}")
    return bad


def rule_violations(modules: dict[str, tuple[Path, str]]) -> list[str]:
    bad: list[str] = []
    for module, (path, source) in modules.items():
        imports = imports_of(source, module, path.name == "__init__.py")
        if _in(module, f"{PKG}.core"):
            bad += core_violations(module, imports)
        if _in(module, f"{PKG}.power"):
            bad += [
                f"{module}:{i.line} imports torch"
                for i in imports
                if i.module.split(".")[0] == "torch"
            ]
        if _in(module, f"{PKG}.view", f"{PKG}.store", f"{PKG}.exports", f"{PKG}.analysis"):
            bad += [
                f"{module}:{i.line} imports the producer's {i.module}"
                for i in imports
                if _in(i.module, f"{PKG}.profiling")
            ]
        if not _in(module, f"{PKG}.notebook"):
            bad += [
                f"{module}:{n} touches ipykernel internals" for n in uses_kernel_internals(source)
            ]
    return bad


def test_the_package_keeps_the_import_rules() -> None:
    modules = package_modules()
    assert len(modules) > 40, "the reader found the package"
    assert rule_violations(modules) == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (f"{PKG}.core.x", "import pandas\n", "imports pandas"),
        (
            f"{PKG}.core.x",
            "def f():\n    from ..view import widget\n",
            "imports llm_energy_widget.view",
        ),
        (
            f"{PKG}.core.x",
            "from ..power import sampler\n",
            "imports llm_energy_widget.power.sampler",
        ),
        (f"{PKG}.power.x", "def f():\n    import torch.cuda\n", "imports torch"),
        (f"{PKG}.view.x", "from ..profiling.hooks import LayerProfiler\n", "producer's"),
        (f"{PKG}.store.x", "from .. import profiling\n", "producer's"),
        (f"{PKG}.view.x", "from IPython import get_ipython\n", "ipykernel internals"),
        (f"{PKG}.models", "def f():\n    return get_ipython()\n", "ipykernel internals"),
        (f"{PKG}.cli.x", "import ipykernel.kernelbase\n", "ipykernel internals"),
    ],
)
def test_each_rule_catches_a_planted_violation(module: str, source: str, expected: str) -> None:
    planted = {module: (ROOT / "planted.py", source)}
    found = rule_violations(planted)
    assert any(expected in v for v in found), found


@pytest.mark.parametrize(
    ("module", "source"),
    [
        (f"{PKG}.core.x", "import numpy as np\nfrom ..power.record import RAILS\nimport json\n"),
        (f"{PKG}.core.x", "from ..errors import InvalidInputError\nfrom .schema import METRICS\n"),
        (f"{PKG}.view.x", "from IPython.display import display\nfrom ..core.run import RunData\n"),
        (f"{PKG}.notebook.x", "from IPython import get_ipython\nimport ipykernel\n"),
    ],
)
def test_what_the_rules_allow_passes(module: str, source: str) -> None:
    assert rule_violations({module: (ROOT / "allowed.py", source)}) == []
