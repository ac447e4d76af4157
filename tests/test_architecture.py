"""The layering of app/ is a lint contract (``[tool.importlinter]`` in pyproject.toml, checked by
``lint-imports`` in scripts/lint.sh). These tests prove that it holds, that it fails when a
forbidden import is added (at the top of a module or inside a function), and that app/ has no
import cycle. Every import counts: those inside functions and under ``TYPE_CHECKING`` too."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from app.jobs.kinds import KINDS, JobKinds
from app.jobs.services import Services
from app.settings import Settings
from tests.conftest import REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
# The import graph of the package `app` found from the working directory, as JSON.
_GRAPH_SCRIPT = (
    "import json, grimp\n"
    "graph = grimp.build_graph('app', cache_dir=None)\n"
    "print(json.dumps({m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}))\n"
)


def _lint_imports(root: Path) -> tuple[int, str]:
    """Run lint-imports on the tree at ``root``; its exit code and its report on one line."""
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300
    )
    return done.returncode, " ".join((done.stdout + done.stderr).split())


def _import_graph(root: Path) -> dict[str, list[str]]:
    """Module -> the modules of app/ it imports, for the tree at ``root``."""
    done = subprocess.run(
        [sys.executable, "-c", _GRAPH_SCRIPT], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    graph: dict[str, list[str]] = json.loads(done.stdout)
    return graph


def find_cycle(imports: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle of an import graph, as ``[a, b, ..., a]``; None if it has none."""
    finished: set[str] = set()
    path: list[str] = []  # the modules being visited, each importing the next

    def visit(module: str) -> list[str] | None:
        path.append(module)
        for imported in sorted(imports.get(module, ())):
            if imported in path:
                return [*path[path.index(imported) :], imported]
            if imported not in finished and (cycle := visit(imported)) is not None:
                return cycle
        path.pop()
        finished.add(module)
        return None

    for module in sorted(imports):
        if module not in finished and (cycle := visit(module)) is not None:
            return cycle
    return None


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of app/ and of the contracts, to break."""
    shutil.copytree(REPO / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _add_import(tree: Path, module: str, statement: str, *, lazy: bool) -> None:
    path = tree / "app" / module
    code = f"\n\ndef _added() -> None:\n    {statement}\n" if lazy else f"\n{statement}\n"
    path.write_text(path.read_text() + code)


def test_the_contracts_hold() -> None:
    code, report = _lint_imports(REPO)
    assert code == 0, report
    assert "0 broken" in report


@pytest.mark.parametrize(
    ("module", "statement", "lazy", "contract"),
    [
        ("engine/render.py", "import app.web", False, "The engine imports nothing else of app/"),
        ("engine/features.py", "from app.settings import Settings", True, "The engine imports nothing"),
        ("jobs/runner.py", "from app.web import deps", True, "Background work never imports the web"),
        ("storage.py", "from app.jobs import records", True, "Storage imports neither the web layer"),
        ("jobs/dispatch.py", "from app.jobs.runner import Jobs", True, "Sending a job does not import"),
        ("web/deps.py", "import app.main", True, "Layers: cli -> main, server -> web"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(
    tree: Path, module: str, statement: str, lazy: bool, contract: str
) -> None:
    _add_import(tree, module, statement, lazy=lazy)
    code, report = _lint_imports(tree)
    assert code != 0, report
    assert contract in report and "BROKEN" in report.split(contract, 1)[1], report


def test_app_has_no_import_cycle() -> None:
    cycle = find_cycle(_import_graph(REPO))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_a_lazy_import_that_closes_a_circle_is_found(tree: Path) -> None:
    _add_import(tree, "jobs/kinds.py", "from app.jobs import services", lazy=True)
    cycle = find_cycle(_import_graph(tree))
    assert cycle is not None and cycle[0] == cycle[-1]
    assert {"app.jobs.kinds", "app.jobs.services"} <= set(cycle)


def test_the_engine_imports_only_itself() -> None:
    """Nothing else of app/, not even the package (``from app import __version__``)."""
    graph = _import_graph(REPO)
    engine = {m for m in graph if m == "app.engine" or m.startswith("app.engine.")}
    outside = {(m, i) for m in engine for i in graph[m] if i not in engine}
    assert not outside


def test_find_cycle() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]


def test_every_job_kind_has_one_runner(tmp_path: Path) -> None:
    """The index/render jobs and the zoom jobs register their kinds in one table, which the
    dispatcher runs every job through."""
    services = Services.build(Settings(data_dir=tmp_path / "data"))
    try:
        assert services.kinds.registered() == set(KINDS)
        with pytest.raises(ValueError, match="unknown job kind 'nope'"):
            services.kinds.run("nope", "x")
        services.kinds.run("index", "no-such-session")  # a deleted session: nothing to do
    finally:
        services.jobs.shutdown(wait=True)


def test_a_kind_is_registered_once() -> None:
    kinds = JobKinds()
    kinds.register("render", lambda record_id, /, *, worker=None: None)
    with pytest.raises(ValueError, match="registered twice"):
        kinds.register("render", lambda record_id, /, *, worker=None: None)
    with pytest.raises(ValueError, match="unknown job kind"):
        kinds.register("thumbnail", lambda record_id, /, *, worker=None: None)
