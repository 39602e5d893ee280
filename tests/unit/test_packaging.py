"""The producer side installs and imports without the engine, beside any project."""

from __future__ import annotations

import ast
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from ops.localfleet import REPO_ROOT, WorkerProcess

HEAVY = ("ctranslate2", "torch", "transformers", "tokenizers", "qdrant_client", "qdrant_edge")
# The CLI loads the light worker-side commands (`qfleet.workers.commands`); nothing else of it.
WORKER_SIDE = ("qfleet.workers.main", "qfleet.workers.engine", "qfleet.workers.knowledge")

# A service folder as Celery's tutorial leaves it: its own tasks.py, and names that would clash
# with qfleet's folders if qfleet installed them as top-level packages.
CLASHING_FILES = {
    "tasks.py": "from celery import Celery\napp = Celery('service')\n",
    "producer.py": "raise SystemExit('the service producer.py was imported')\n",
    "workers/__init__.py": "raise SystemExit('the service workers/ was imported')\n",
}


def test_producer_imports_no_engine() -> None:
    code = (
        "import sys, qfleet, qfleet.producer.cli, qfleet.producer.client,"
        " qfleet.producer.knowledge, qfleet.producer.documents, qfleet.producer.runs,"
        " qfleet.tasks.knowledge, qfleet.producer.gateway.app;"
        f"heavy = [m for m in {HEAVY + WORKER_SIDE!r} if m in sys.modules];"
        "assert not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("package", ["producer", "tasks"])
def test_producer_side_never_imports_workers(package: str) -> None:
    # Every import statement of the producer side and the contract, top-level or inside functions.
    offenders = [
        f"{path.relative_to(REPO_ROOT)}: {name}"
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        for name in _imports(path)
        if name.split(".")[:2] == ["qfleet", "workers"] or name.split(".")[0] == "workers"
    ]
    assert not offenders, offenders


def test_every_import_uses_the_namespace() -> None:
    bare = [
        f"{path.relative_to(REPO_ROOT)}: {name}"
        for folder in ("tasks", "producer", "workers", "ops", "tests", "qfleet")
        for path in sorted((REPO_ROOT / folder).rglob("*.py"))
        if ".venv" not in path.parts
        for name in _imports(path)
        if name.split(".")[0] in {"tasks", "producer", "workers"}
    ]
    assert not bare, bare


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """qfleet built as a wheel, the way an index would ship it."""
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(REPO_ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("qfleet-*.whl")
    return path


def test_wheel_carries_the_console_page(wheel: Path) -> None:
    # The console has no build step: its static files must travel inside the package.
    static = REPO_ROOT / "producer" / "gateway" / "console" / "static"
    expected = {f"qfleet/producer/gateway/console/static/{p.name}" for p in static.iterdir()}
    assert {"index.html", "app.js", "app.css"} <= {p.name for p in static.iterdir()}
    assert expected <= set(zipfile.ZipFile(wheel).namelist())


def test_wheel_installs_beside_a_celery_service(
    wheel: Path, tmp_path: Path, fleet_env: dict[str, str], worker: WorkerProcess
) -> None:
    # Given the wheel installed (no extras) into a fresh venv
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    # And a service folder with its own tasks.py, producer.py and workers/
    service = tmp_path / "service"
    for name, text in CLASHING_FILES.items():
        (service / name).parent.mkdir(parents=True, exist_ok=True)
        (service / name).write_text(text)
    # When the service submits a job from its own folder
    probe = (
        "import importlib.util, sys, tasks;"
        "from qfleet import FleetClient, GenerateJob, Settings;"
        "assert tasks.app.main == 'service';"
        f"present = [m for m in {HEAVY!r} if importlib.util.find_spec(m)];"
        "assert not present, present;"
        "fleet = FleetClient(Settings());"
        "job = fleet.submit(GenerateJob(prompt='hello', max_tokens=4));"
        "print(fleet.wait(job, timeout=60).usage.completion_tokens)"
    )
    env = {"PATH": "/usr/bin:/bin", **fleet_env}
    done = subprocess.run(
        [python, "-c", probe], cwd=service, env=env, capture_output=True, text=True, timeout=120
    )
    # Then its own modules stay its own and a worker answered the job
    assert done.returncode == 0, done.stderr
    assert 1 <= int(done.stdout.strip()) <= 4
    # And the command works, and conversion names the extra it needs instead of crashing
    qfleet = tmp_path / "venv" / "bin" / "qfleet"
    assert "generate" in subprocess.run([qfleet, "--help"], capture_output=True, text=True).stdout
    convert = subprocess.run(
        [qfleet, "model", "convert", "a.gguf", str(tmp_path / "m")],
        capture_output=True, text=True, cwd=service,
    )  # fmt: skip
    assert convert.returncode == 4, convert.stderr
    assert "qfleet[convert]" in convert.stderr
