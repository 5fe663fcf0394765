"""The library never reaches up into its entry points: no module under shared/ imports functions/ or jobs/.

The entry points (functions/main.py, jobs/, cli/) wire the library and hand it what it calls
(shared.runtime.wire); an import the other way is how the Cloud Functions archive would need jobs/.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = {"functions", "jobs"}


def upward_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import, at any depth (inside functions too), naming an entry-point package."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.split(".")[0] in ENTRY_POINTS]
    return found


def test_no_module_under_shared_imports_functions_or_jobs():
    modules = sorted((ROOT / "shared").rglob("*.py"))
    assert len(modules) > 30, "the walk found too few modules under shared/"
    offenders = [f"{p.relative_to(ROOT)}:{line} imports {name}"
                 for p in modules for line, name in upward_imports(p.read_text())]
    assert not offenders, "shared/ must not import functions/ or jobs/:\n" + "\n".join(offenders)


@pytest.mark.parametrize("source", [
    "from jobs.base import ExtractError",
    "import functions.main as fn",
    "import json, jobs",
    "def f():\n    from jobs.runner import run_job\n",
    "class C:\n    def m(self):\n        import functions\n",
])
def test_the_walk_sees_every_form_of_import(source):
    assert upward_imports(source)


@pytest.mark.parametrize("source", ["from shared.jobs import x", "import jobsite", "from . import jobs",
                                    "from functionsx import y"])
def test_the_walk_names_only_the_entry_point_packages(source):
    assert not upward_imports(source)


def test_an_unwired_embedded_runtime_refuses_instead_of_queueing_runs_nobody_takes(home, monkeypatch):
    from shared import runtime

    monkeypatch.setattr(runtime, "_wiring", None)
    with pytest.raises(RuntimeError, match="not wired"):
        runtime.embedded()


def test_the_entry_points_wire_the_job_and_every_topic():
    from functions import main
    from jobs import runner
    from shared import runtime
    from shared.bus.base import TOPICS

    assert set(main.HANDLERS) == set(TOPICS)
    runner.wire()
    assert runtime._wiring.run_job is runner.run_job and runtime._wiring.handlers is main.HANDLERS
