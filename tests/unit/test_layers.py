"""The package layout is the data path: no module imports a package above its own.

Order, bottom to top: core → sweep → plan → engines → measure → cluster → results → report,
then the modules at the root of ``runner/`` (``cli``, ``preflight``, ``session``, ``tinymodel``). Every import
of ``runner…`` is checked, including the lazy ones inside functions. A module in another package
imports from the package itself (``from runner.plan import Trial``), and only names the
package lists in its ``__all__``; reaching into a sibling's module (``from runner.plan.trial
import Trial``) is flagged.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parents[2] / "runner"
ORDER = ["core", "sweep", "plan", "engines", "measure", "cluster", "results", "report"]
ROOT = "<root>"
RANK = {**{p: i for i, p in enumerate(ORDER)}, ROOT: len(ORDER)}


def package_of(path: Path) -> str:
    rel = path.relative_to(RUNNER)
    return rel.parts[0] if len(rel.parts) > 1 else ROOT


def imports(tree: ast.AST) -> list[tuple[int, list[str], list[str]]]:
    """(line, dotted target split, imported names) for every absolute import of ``runner``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                out.append((node.lineno, ["<relative>"], []))
            elif node.module and node.module.split(".")[0] == "runner":
                out.append((node.lineno, node.module.split("."), [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "runner":
                    out.append((node.lineno, a.name.split("."), []))
    return out


def violations(source: str, own: str, where: str, exported: dict[str, set[str]]) -> list[str]:
    """Every import in ``source`` (a module of package ``own``) that breaks the layering."""
    found = []
    for line, parts, names in imports(ast.parse(source)):
        at = f"{where}:{line}"
        if parts == ["<relative>"]:
            found.append(f"{at}: relative import (write the absolute package)")
            continue
        if len(parts) == 1:  # from runner import X
            targets = [(n if n in RANK else ROOT, n) for n in names] or [(ROOT, "")]
        else:
            targets = [(parts[1] if parts[1] in RANK else ROOT, "")]
        for target, _ in targets:
            if RANK[target] > RANK[own]:
                found.append(f"{at}: {own} imports {'.'.join(parts)} ({target} stands above {own})")
        if len(parts) >= 2 and parts[1] in RANK and parts[1] != own:
            pkg = parts[1]
            if len(parts) > 2:
                found.append(f"{at}: {own} reaches into {'.'.join(parts)}; import from runner.{pkg}")
            else:
                for n in names:
                    if n not in exported.get(pkg, set()):
                        found.append(f"{at}: runner.{pkg} does not export {n!r} in __all__")
    return found


def exported() -> dict[str, set[str]]:
    return {p: set(importlib.import_module(f"runner.{p}").__all__) for p in ORDER}


def test_every_package_names_what_it_offers():
    for p in ORDER:
        mod = importlib.import_module(f"runner.{p}")
        assert "__all__" in vars(mod), f"runner/{p}/__init__.py has no __all__"
        assert mod.__doc__, f"runner/{p}/__init__.py has no docstring"
        for name in mod.__all__:
            assert hasattr(mod, name), f"runner.{p}.__all__ names {name!r}, which it does not define"


def test_no_module_imports_a_package_above_its_own():
    ex = exported()
    found = []
    for path in sorted(RUNNER.rglob("*.py")):
        own = package_of(path)
        found += violations(path.read_text(), own, str(path.relative_to(RUNNER.parent)), ex)
    assert not found, "\n".join(found)


def test_every_module_sits_in_a_package_of_the_data_path():
    for path in RUNNER.rglob("*.py"):
        own = package_of(path)
        assert own == ROOT or own in RANK, f"{path}: package {own!r} is not one of {ORDER}"
    roots = sorted(p.stem for p in RUNNER.glob("*.py"))
    assert roots == ["__init__", "__main__", "cli", "preflight", "session", "tinymodel"], roots


@pytest.mark.parametrize("source, own, expect", [
    ("from runner.results import Store\n", "plan", "results stands above plan"),
    ("def f():\n    from runner.report import rows\n", "measure", "report stands above measure"),
    ("from runner import session\n", "cluster", "<root> stands above cluster"),
    ("from runner.plan.trial import Trial\n", "cluster", "reaches into runner.plan.trial"),
    ("from runner.plan import not_exported\n", "cluster", "does not export 'not_exported'"),
    ("from . import spec\n", "sweep", "relative import"),
    ("import runner.report.plots\n", "engines", "report stands above engines"),
])
def test_the_checker_flags_what_it_should(source, own, expect):
    found = violations(source, own, "x.py", exported())
    assert any(expect in f for f in found), found


@pytest.mark.parametrize("source, own", [
    ("from runner.core import redact\n", "sweep"),
    ("from runner.plan.trial import Trial\n", "plan"),
    ("from runner.plan import Trial\n", "report"),
    ("from runner.cluster import Scheduler\n", ROOT),
])
def test_the_checker_passes_what_is_allowed(source, own):
    assert violations(source, own, "x.py", exported()) == []


def test_every_runner_import_written_in_tests_scripts_and_benchmarks_resolves():
    """Also the imports inside code strings (scripts the tests run in subprocesses, lane probes),
    which no import of the test module itself would catch after a module moves."""
    import re

    pattern = re.compile(r"(?:from|import) (runner(?:\.\w+)*)(?: import ([\w, ]+))?")
    root = RUNNER.parent
    missing = []
    for path in [*root.glob("tests/**/*.py"), *root.glob("benchmarks/*.py"), *root.glob("scripts/*")]:
        if not path.is_file() or path.resolve() == Path(__file__).resolve():  # this file's examples are bad on purpose
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for mod, names in pattern.findall(line):
                try:
                    m = importlib.import_module(mod)
                except ImportError:
                    missing.append(f"{path.relative_to(root)}:{n}: {mod}")
                    continue
                for name in filter(None, (x.strip().split(" as ")[0] for x in (names or "").split(","))):
                    if not hasattr(m, name):
                        try:
                            importlib.import_module(f"{mod}.{name}")
                        except ImportError:
                            missing.append(f"{path.relative_to(root)}:{n}: {mod}.{name}")
    assert not missing, "\n".join(missing)
