"""The producer side installs and imports without the engine."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

from ops.localfleet import REPO_ROOT

HEAVY = (
    "ctranslate2",
    "torch",
    "transformers",
    "tokenizers",
    "qdrant_client",
    "qdrant_edge",
    "workers",
)


def test_producer_imports_no_engine() -> None:
    code = (
        "import sys, producer, producer.cli, producer.client, producer.knowledge, tasks;"
        "import producer.documents, tasks.knowledge;"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules];"
        "assert not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


def test_plain_install_has_no_engine(tmp_path: Path) -> None:
    # Given `pip install .` with no extras into a fresh virtual environment
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    # Then the producer and the contract import, and no engine package was installed
    probe = (
        "import importlib.util, producer, tasks;"
        "from producer import FleetClient;"
        f"present = [m for m in {HEAVY[:-1]!r} if importlib.util.find_spec(m)];"
        "assert not present, present"
    )
    done = subprocess.run([python, "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    help_text = subprocess.run(
        [tmp_path / "venv" / "bin" / "qfleet", "--help"], capture_output=True, text=True
    )
    assert "generate" in help_text.stdout
    # And model conversion says which extra it needs instead of failing on an import
    convert = subprocess.run(
        [tmp_path / "venv" / "bin" / "qfleet", "model", "convert", "a.gguf", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert convert.returncode == 4, convert.stderr
    assert "qfleet[convert]" in convert.stderr
