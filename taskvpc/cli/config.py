"""Where taskvpc keeps its state, and the root credentials it creates on first start."""

from __future__ import annotations

import json
import os
import secrets
import stat
import string
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 4599
DEFAULT_HOST = "127.0.0.1"
DEFAULT_ACCOUNT_ID = "000000000000"
DEFAULT_REGION = "us-east-1"
CREDENTIALS_FILE = "credentials.json"
SERVER_FILE = "server.json"
DATABASE_FILES = ("taskvpc.db", "taskvpc.db-wal", "taskvpc.db-shm")
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


class StateDirError(Exception):
    """The state dir cannot be made private (owned by someone else, not a directory)."""


def ensure_private_state_dir(state_dir: Path) -> list[str]:
    """Make ``state_dir`` a 0700 directory of ours and its secrets 0600, whatever the umask.

    The database holds task definitions' environment secrets and the credentials file the root keys:
    nobody else on the host may read them. A missing dir is created 0700; an existing one that is too
    open is closed (and each fix is returned as a one-line note to print); one owned by another user,
    or not a directory, is refused with :class:`StateDirError`.
    """
    notes: list[str] = []
    if not state_dir.exists():
        state_dir.mkdir(parents=True, mode=PRIVATE_DIR_MODE)
        os.chmod(state_dir, PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask
        return notes
    info = state_dir.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise StateDirError(f"state dir {state_dir} is not a directory")
    if info.st_uid != os.geteuid():
        raise StateDirError(
            f"state dir {state_dir} belongs to uid {info.st_uid}, not to this user ({os.geteuid()}): "
            "refusing to keep secrets where its owner can read them"
        )
    if stat.S_IMODE(info.st_mode) != PRIVATE_DIR_MODE:
        os.chmod(state_dir, PRIVATE_DIR_MODE)
        notes.append(f"state dir {state_dir} was mode {stat.S_IMODE(info.st_mode):o}; made it 700")
    for name in (CREDENTIALS_FILE, SERVER_FILE, *DATABASE_FILES):
        path = state_dir / name
        try:
            mode = stat.S_IMODE(path.lstat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(path, PRIVATE_FILE_MODE)
            notes.append(f"{path} was mode {mode:o}; made it 600")
    return notes


def default_state_dir() -> Path:
    if home := os.environ.get("TASKVPC_HOME"):
        return Path(home)
    if os.geteuid() == 0:
        return Path("/var/lib/taskvpc")
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "taskvpc"


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str


def _new_credentials() -> Credentials:
    upper = string.ascii_uppercase + string.digits
    key_id = "AKIA" + "".join(secrets.choice(upper) for _ in range(16))
    alphabet = string.ascii_letters + string.digits + "+/"
    secret = "".join(secrets.choice(alphabet) for _ in range(40))
    return Credentials(key_id, secret)


def load_or_create_credentials(state_dir: Path) -> Credentials:
    """Environment first (test suites fix them), then the 0600 file, else a new pair saved there."""
    key_id = os.environ.get("TASKVPC_ACCESS_KEY_ID")
    secret = os.environ.get("TASKVPC_SECRET_ACCESS_KEY")
    if key_id and secret:
        return Credentials(key_id, secret)
    path = state_dir / CREDENTIALS_FILE
    if path.exists():
        document = json.loads(path.read_text())
        return Credentials(document["access_key_id"], document["secret_access_key"])
    credentials = _new_credentials()
    state_dir.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(
            {"access_key_id": credentials.access_key_id, "secret_access_key": credentials.secret_access_key},
            handle,
        )
    return credentials


def read_credentials(state_dir: Path) -> Credentials | None:
    key_id = os.environ.get("TASKVPC_ACCESS_KEY_ID")
    secret = os.environ.get("TASKVPC_SECRET_ACCESS_KEY")
    if key_id and secret:
        return Credentials(key_id, secret)
    path = state_dir / CREDENTIALS_FILE
    if not path.exists():
        return None
    document = json.loads(path.read_text())
    return Credentials(document["access_key_id"], document["secret_access_key"])


def account_id() -> str:
    return os.environ.get("TASKVPC_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)


def write_server_file(state_dir: Path, endpoint: str) -> None:
    descriptor = os.open(state_dir / SERVER_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(descriptor, "w") as handle:
        os.fchmod(descriptor, PRIVATE_FILE_MODE)
        json.dump({"endpoint": endpoint}, handle)


def read_endpoint(state_dir: Path) -> str:
    path = state_dir / SERVER_FILE
    if path.exists():
        return str(json.loads(path.read_text())["endpoint"])
    return f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
