"""Fetching an image from a registry with ``skopeo copy`` (Debian package ``skopeo``).

skopeo writes its ``dir:`` format, which keeps the registry's manifest byte for byte, so the image's
digest is the one the registry (and ECS's ``imageDigest``) shows. Credentials go in a private auth file,
never on the command line where ``ps`` would show them.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from taskvpc.agent.images.model import ImageError
from taskvpc.agent.images.refs import ImageReference

PULL_TIMEOUT = 600.0  # seconds; a stalled registry must not hold a task in PROVISIONING for ever
_POLICY = Path("/etc/containers/policy.json")


def skopeo_copy(
    reference: ImageReference,
    destination: Path,
    credentials: tuple[str, str] | None = None,
    timeout: float = PULL_TIMEOUT,
) -> None:
    """Copy ``reference`` from its registry into ``destination`` (skopeo's ``dir:`` format)."""
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        raise ImageError(f"cannot pull {reference}: skopeo is not installed (apt-get install skopeo)")
    command = [skopeo]
    if not _POLICY.exists():
        command.append("--insecure-policy")  # no signature policy on this host: accept what the registry has
    command += ["copy", "--quiet", "--retry-times", "2"]
    with tempfile.TemporaryDirectory() as private:
        if credentials is not None:
            command += ["--src-authfile", _write_authfile(Path(private), reference.registry, credentials)]
        command += [f"docker://{reference}", f"dir:{destination}"]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ImageError(f"pulling {reference} timed out after {timeout:.0f} s") from None
    if result.returncode != 0:
        raise ImageError(f"failed to pull {reference}: {_reason(result.stderr)}")


def _write_authfile(directory: Path, registry: str, credentials: tuple[str, str]) -> str:
    user, password = credentials
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path = directory / "auth.json"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"auths": {registry: {"auth": token}}}, handle)
    return str(path)


def _reason(stderr: str) -> str:
    """skopeo's last message without its logrus decoration (``time="…" level=fatal msg="…"``)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return "skopeo failed without a message"
    last = lines[-1]
    if 'msg="' in last:
        last = last.split('msg="', 1)[1].rsplit('"', 1)[0].replace('\\"', '"')
    return last.removeprefix("Error: ").removeprefix("FATA[0000] ")
