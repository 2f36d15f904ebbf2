"""``ImageStore.pull``: skopeo's failures become one clean ImageError (this machine has no registry), and
what a successful skopeo writes is stored under the registry's digest (shown with a stand-in skopeo)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from taskvpc.agent.images import ImageError, ImageStore
from tests.support.images import Layer, oci_layout, skopeo_dir

FAKE_SKOPEO = f"""#!{sys.executable}
import json, os, shutil, sys
argv = sys.argv[1:]
record = {{"argv": argv}}
if "--src-authfile" in argv:
    with open(argv[argv.index("--src-authfile") + 1]) as handle:
        record["authfile"] = json.load(handle)
with open(os.environ["FAKE_SKOPEO_LOG"], "w") as handle:
    json.dump(record, handle)
if os.environ.get("FAKE_SKOPEO_FAIL"):
    sys.stderr.write('time="2026-01-01T00:00:00Z" level=fatal msg="' + os.environ["FAKE_SKOPEO_FAIL"] + '"\\n')
    sys.exit(1)
shutil.copytree(os.environ["FAKE_SKOPEO_SOURCE"], argv[-1].removeprefix("dir:"))
"""


@pytest.fixture()
def fake_skopeo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "skopeo").write_text(FAKE_SKOPEO)
    (bin_dir / "skopeo").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_SKOPEO_LOG", str(tmp_path / "skopeo.json"))
    return tmp_path / "skopeo.json"


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
def test_unreachable_registry_is_an_image_error_fit_for_ecs(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    with pytest.raises(ImageError) as failure:
        store.pull("127.0.0.1:9/team/app")
    message = str(failure.value)
    assert message.startswith("failed to pull 127.0.0.1:9/team/app:latest: ")
    assert "connection refused" in message and "\n" not in message and "level=" not in message
    assert store.list() == []
    assert list((tmp_path / "images" / "downloads").iterdir()) == []


def test_without_skopeo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(
        ImageError, match=r"cannot pull docker.io/library/busybox:latest: skopeo is not installed"
    ):
        ImageStore(tmp_path / "images").pull("busybox")


def test_pull_stores_under_the_registry_digest(
    tmp_path: Path, fake_skopeo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest_digest = skopeo_dir(tmp_path / "registry-copy", [Layer().file("bin/app", b"app", mode=0o755)])
    monkeypatch.setenv("FAKE_SKOPEO_SOURCE", str(tmp_path / "registry-copy"))
    store = ImageStore(tmp_path / "images")

    image = store.pull("ghcr.io/team/app:1", credentials=("robot", "s3cret"))

    assert image.digest == manifest_digest
    assert (image.rootfs / "bin" / "app").read_bytes() == b"app"
    assert store.resolve(f"ghcr.io/team/app@{manifest_digest}").id == image.id
    call = json.loads(fake_skopeo.read_text())
    assert call["argv"][-2:][0] == "docker://ghcr.io/team/app:1"
    assert call["argv"][-1].startswith("dir:")
    assert not any("s3cret" in argument for argument in call["argv"])  # never visible in ps
    token = call["authfile"]["auths"]["ghcr.io"]["auth"]
    assert base64.b64decode(token) == b"robot:s3cret"
    assert list((tmp_path / "images" / "downloads").iterdir()) == []


def test_skopeo_failure_message_is_one_clean_line(
    tmp_path: Path, fake_skopeo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = "reading manifest latest in docker.io/library/nope: requested access to the resource is denied"
    monkeypatch.setenv("FAKE_SKOPEO_FAIL", reason)
    with pytest.raises(ImageError) as failure:
        ImageStore(tmp_path / "images").pull("nope")
    assert str(failure.value) == f"failed to pull docker.io/library/nope:latest: {reason}"
    assert "--src-authfile" not in json.loads(fake_skopeo.read_text())["argv"]


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
def test_what_the_real_skopeo_writes_imports(tmp_path: Path) -> None:
    """skopeo's own ``dir:`` (what pull reads) and ``docker-archive:`` output, from an OCI layout."""
    manifest_digest = oci_layout(
        tmp_path / "layout",
        [Layer().file("etc/a", b"a").symlink("bin/sh", "busybox"), Layer().whiteout("etc/a")],
    )
    for destination in ("dir:copied", "docker-archive:saved.tar:team/app:1"):
        subprocess.run(
            ["skopeo", "copy", "--quiet", "oci:layout:latest", destination],
            cwd=tmp_path,
            check=True,
            timeout=60,
        )
    store = ImageStore(tmp_path / "images")

    copied = store.import_source("copied", tmp_path / "copied")
    saved = store.import_source("team/app:1", tmp_path / "saved.tar")

    assert copied.digest == manifest_digest  # the manifest byte for byte, as a registry serves it
    assert saved.id == copied.id and saved.rootfs == copied.rootfs
    assert sorted(path.name for path in copied.rootfs.rglob("*")) == ["bin", "etc", "sh"]
