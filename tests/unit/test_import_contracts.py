"""The import contracts in pyproject.toml bite: each fails when a forbidden import is planted in a copy of
the package, and the tree as it is passes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
LAYERS = "Layers import downward only"
PURE = "The pure core does no I/O"


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the copy shadows the editable install
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("pristine")
    shutil.copytree(ROOT / "taskvpc", tree / "taskvpc", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def _planted(pristine: Path, tmp_path: Path, plants: list[tuple[str, str, str]]) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(pristine, tree)
    for module, line, _ in plants:
        path = tree / (module.replace(".", "/") + ".py")
        path.write_text(path.read_text() + f"\n{line}  # planted by the test\n")
    return tree


def test_the_tree_keeps_every_contract(pristine: Path) -> None:
    result = _lint(pristine)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{LAYERS} KEPT" in result.stdout and f"{PURE} KEPT" in result.stdout


# (module, the line planted in it, the import the report must name); one copy per contract, and the
# report must name every planted import, so each one alone is shown to break the contract
PLANTS = {
    LAYERS: [
        # the agent reaches the control plane only over HTTP, and the server side never imports it
        ("taskvpc.agent.engine", "import taskvpc.control.agent", "taskvpc.control.agent"),
        ("taskvpc.agent.main", "import taskvpc.store.tasks_repo", "taskvpc.store.tasks_repo"),
        ("taskvpc.agent.client", "import taskvpc.api.asgi", "taskvpc.api.asgi"),
        ("taskvpc.store.tasks_repo", "import taskvpc.agent.engine", "taskvpc.agent.engine"),
        ("taskvpc.agentapi.answer", "import taskvpc.wire.http", "taskvpc.wire.http"),
        ("taskvpc.domain.units", "import taskvpc.agentapi.answer", "taskvpc.agentapi.answer"),
    ],
    PURE: [  # no I/O, clocks, randomness, threads or netlink (the example first)
        ("taskvpc.domain.units", "import os", "os"),
        ("taskvpc.domain.lifecycle", "import time", "time"),
        ("taskvpc.netmodel.nft_compile", "import uuid", "uuid"),
        ("taskvpc.scheduler.placement", "import random", "random"),
        ("taskvpc.wire.sigv4", "import threading", "threading"),
        ("taskvpc.wire.json11", "from pathlib import Path", "pathlib"),
        ("taskvpc.agentapi.tasks", "import asyncio", "asyncio"),
        ("taskvpc.agentapi.network", "import socket", "socket"),
        ("taskvpc.agent.netplan", "import pyroute2", "pyroute2"),
        ("taskvpc.agent.netplan", "import subprocess", "subprocess"),
        ("taskvpc.agent.taskplan", "from taskvpc.agent import runtime", "taskvpc.agent.runtime"),
        ("taskvpc.agent.taskplan", "import taskvpc.agent.drivers.netlink", "taskvpc.agent.drivers.netlink"),
    ],
}


@pytest.mark.parametrize("contract", list(PLANTS))
def test_planted_imports_break_their_contract(pristine: Path, tmp_path: Path, contract: str) -> None:
    result = _lint(_planted(pristine, tmp_path, PLANTS[contract]))
    assert result.returncode != 0, result.stdout
    assert f"{contract} BROKEN" in result.stdout, result.stdout
    for module, _, target in PLANTS[contract]:
        assert f"{module} -> {target} " in result.stdout, (module, target, result.stdout)
