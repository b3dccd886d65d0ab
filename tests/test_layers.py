"""The layer contracts (pyproject.toml [tool.importlinter]) hold, and the circle check can fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import grimp
import pytest

from tests.import_cycles import module_cycles

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")


def test_the_layer_contracts_hold() -> None:
    run = subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_module_cycles_finds_circles_and_only_them() -> None:
    graph = grimp.ImportGraph()
    for module in ("p", "p.a", "p.b", "p.c", "p.d", "q", "q.x"):
        graph.add_module(module)
    for importer, imported in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.d", "p.a"), ("p.d", "q.x")]:
        graph.add_import(importer=importer, imported=imported)
    assert module_cycles(graph, ["p", "q"]) == [["p.a", "p.b", "p.c"]]
    graph.remove_import(importer="p.c", imported="p.a")
    assert module_cycles(graph, ["p", "q"]) == []


@pytest.mark.parametrize("where", ["top", "function"])
def test_lint_imports_fails_on_a_circle(tmp_path: Path, where: str) -> None:
    """Two modules that import each other, once at the top of the file and once inside a function body (the
    way circles used to hide here): the contract is broken and lint-imports exits non-zero."""
    pkg = tmp_path / "circle"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from circle import b\n")
    body = "from circle import a\n" if where == "top" else "def f():\n    from circle import a\n    return a\n"
    (pkg / "b.py").write_text(body)
    (tmp_path / ".importlinter").write_text(textwrap.dedent("""\
        [importlinter]
        root_packages =
            circle
        contract_types =
            acyclic_modules: tests.import_cycles.AcyclicModulesContract

        [importlinter:contract:acyclic]
        name = no circles
        type = acyclic_modules
        packages =
            circle
        """))
    env = {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    run = subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "circle.a -> circle.b -> circle.a" in run.stdout
