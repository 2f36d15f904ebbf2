"""The real ``taskvpc image`` command: import, import-busybox, ls, rm and pull, and its one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.server import VENV_BIN
from tests.support.images import Layer, docker_archive, layer_blob_path, oci_layout


def taskvpc_image(state_dir: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TASKVPC_HOME"}
    return subprocess.run(
        [str(VENV_BIN / "taskvpc"), "image", "--state-dir", str(state_dir), *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_import_ls_rm(tmp_path: Path) -> None:
    layer = Layer().file("hello", b"world")
    manifest_digest = oci_layout(tmp_path / "layout", [layer])
    config_digest = docker_archive(tmp_path / "saved.tar", [layer], ["saved:1"])
    state = tmp_path / "state"

    imported = taskvpc_image(state, "import", "web:1", str(tmp_path / "layout"))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == f"imported web:1 ({manifest_digest})"
    assert taskvpc_image(state, "import", "ghcr.io/team/saved:1", str(tmp_path / "saved.tar")).returncode == 0

    table = taskvpc_image(state, "ls").stdout.splitlines()
    assert table[0].split() == ["NAME", "IMAGE", "ID", "DIGEST", "LAYERS"]
    assert (
        [row.split()[:2] for row in table[1:]]
        == [
            ["web:1", config_digest.partition(":")[2][:12]],  # one image (same config) under two names
            ["ghcr.io/team/saved:1", config_digest.partition(":")[2][:12]],
        ]
    )
    listed = json.loads(taskvpc_image(state, "ls", "--json").stdout)
    assert {entry["name"]: entry["digest"] for entry in listed} == {
        "web:1": manifest_digest,
        "ghcr.io/team/saved:1": config_digest,
    }
    rootfs = Path(listed[0]["rootfs"])
    assert rootfs.is_relative_to(state / "agent" / "images")
    assert (rootfs / "hello").read_text() == "world"

    removed = taskvpc_image(state, "rm", "web:1", "ghcr.io/team/saved:1")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.splitlines() == ["removed web:1", "removed ghcr.io/team/saved:1"]
    assert json.loads(taskvpc_image(state, "ls", "--json").stdout) == []
    assert not rootfs.exists()
    assert_one_line_error(taskvpc_image(state, "rm", "web:1"), "taskvpc image rm: no image web:1 here")


def test_import_busybox_gives_a_working_image(tmp_path: Path) -> None:
    if not Path("/bin/busybox").is_file():
        pytest.skip("busybox-static not installed")
    state = tmp_path / "state"
    first = taskvpc_image(state, "import-busybox")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("imported busybox:latest (sha256:")
    again = taskvpc_image(state, "import-busybox")
    assert again.stdout == first.stdout  # the same busybox makes the same image
    listed = json.loads(taskvpc_image(state, "ls", "--json").stdout)
    assert [entry["reference"] for entry in listed] == ["docker.io/library/busybox:latest"]
    rootfs = Path(listed[0]["rootfs"])
    echoed = subprocess.run(
        [str(rootfs / "bin" / "echo"), "from", "the", "image"], capture_output=True, text=True
    )
    assert echoed.stdout == "from the image\n"


def test_import_a_rootfs_directory_with_its_command(tmp_path: Path) -> None:
    (tmp_path / "rootfs" / "srv").mkdir(parents=True)
    (tmp_path / "rootfs" / "srv" / "index.html").write_text("page")
    state = tmp_path / "state"
    result = taskvpc_image(
        state, "import", "site:v1", str(tmp_path / "rootfs"), "--cmd", "httpd -f -p '8080'"
    )
    assert result.returncode == 0, result.stderr
    [entry] = json.loads(taskvpc_image(state, "ls", "--json").stdout)
    assert entry["name"] == "site:v1"
    assert entry["config"] == {"Cmd": ["httpd", "-f", "-p", "8080"]}
    assert (Path(entry["rootfs"]) / "srv" / "index.html").read_text() == "page"


def test_errors_are_one_line_and_non_zero(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert_one_line_error(
        taskvpc_image(state, "import", "x", str(tmp_path / "missing")), "no such directory or file"
    )
    assert_one_line_error(taskvpc_image(state, "import", "Bad", str(tmp_path)), "lowercase")
    layer = Layer().file("f", b"x" * 1000)
    oci_layout(tmp_path / "layout", [layer])
    layer_blob_path(tmp_path / "layout", layer).unlink()
    assert_one_line_error(taskvpc_image(state, "import", "x", str(tmp_path / "layout")), "is missing")
    assert taskvpc_image(state, "ls").stdout.splitlines()[1:] == []


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
def test_pull_failure_is_one_line(tmp_path: Path) -> None:
    result = taskvpc_image(tmp_path / "state", "pull", "127.0.0.1:9/app")
    assert_one_line_error(result, "taskvpc image pull: failed to pull 127.0.0.1:9/app:latest:", "refused")
