"""Where taskvpc keeps its state, and the root credentials it creates on first start."""

from __future__ import annotations

import json
import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 4599
DEFAULT_HOST = "127.0.0.1"
DEFAULT_ACCOUNT_ID = "000000000000"
DEFAULT_REGION = "us-east-1"
CREDENTIALS_FILE = "credentials.json"
SERVER_FILE = "server.json"


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
    state_dir.mkdir(parents=True, exist_ok=True)
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
    (state_dir / SERVER_FILE).write_text(json.dumps({"endpoint": endpoint}))


def read_endpoint(state_dir: Path) -> str:
    path = state_dir / SERVER_FILE
    if path.exists():
        return str(json.loads(path.read_text())["endpoint"])
    return f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
