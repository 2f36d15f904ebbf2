"""The servers integration tests talk to, with fixed credentials.

* :class:`InProcessServer` (the default): the real control plane and ASGI application on a real store
  (SQLite file or PostgreSQL), called in this process by real boto3 clients, the ``aws`` CLI's driver and
  urllib (tests.support.inprocess) - no process to start, no socket, no HTTP parsing;
* :class:`TaskvpcServer`: a real ``taskvpc up`` process on loopback, for what only a process shows
  (kill -9, the CLI's start-up, ``taskvpc env``).

Both offer ``client``, ``aws``, ``reset``, ``http`` and ``endpoint``, so a test does not care which it has.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from taskvpc.api.app import ControlPlane, Settings
from taskvpc.api.asgi import Application
from taskvpc.control import reconcile
from taskvpc.store.db import Database, sqlite_url
from tests.support.inprocess import HOST, AsgiTransport

ACCESS_KEY_ID = "AKIATESTTASKVPC00001"
SECRET_ACCESS_KEY = "taskvpc-test-secret-key-0000000000000000"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
VENV_BIN = Path(sys.executable).parent


def aws_error(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    """(code, message, HTTP status) of the AWS error a boto3 call raised."""
    response = excinfo.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TaskvpcServer:
    """Starts ``taskvpc up --no-agent --allow-reset`` and stops it by PID."""

    def __init__(
        self, state_dir: Path, database_url: str | None = None, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.state_dir = state_dir
        self.database_url = database_url
        self.extra_args = extra_args  # more `taskvpc up` flags
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = state_dir / "server.log"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "TASKVPC_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "TASKVPC_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "TASKVPC_ACCOUNT_ID": ACCOUNT_ID,
        }

    def start(self) -> TaskvpcServer:
        command = [str(VENV_BIN / "taskvpc"), "up", "--no-agent", "--allow-reset", "--port", str(self.port)]
        command += ["--state-dir", str(self.state_dir)]
        if self.database_url:
            command += ["--database-url", self.database_url]
        command += self.extra_args
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"taskvpc exited early:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/_taskvpc/health", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"taskvpc did not become healthy:\n{self.log_path.read_text()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.process = None

    def http(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, bytes, dict[str, str]]:
        """One raw HTTP exchange: (status, body, lower-case headers)."""
        parts = urlsplit(self.endpoint)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            connection.request(method, target, body=body, headers=dict(headers))
            response = connection.getresponse()
            return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()

    def client(self, service: str, region: str = REGION, **config: Any) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=region,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            config=Config(retries={"max_attempts": 1}, **config),
        )

    def reset(self) -> None:
        request = AWSRequest(method="POST", url=f"{self.endpoint}/_taskvpc/reset", data=b"")
        SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY), "ecs", REGION).add_auth(request)
        prepared = request.prepare()
        raw = urllib.request.Request(prepared.url, data=b"", method="POST", headers=dict(prepared.headers))
        with urllib.request.urlopen(raw, timeout=10) as response:
            assert response.status == 200

    def aws_cli_env(self, region: str = REGION) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ENDPOINT_URL=self.endpoint,
            AWS_ACCESS_KEY_ID=ACCESS_KEY_ID,
            AWS_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
            AWS_DEFAULT_REGION=region,
            AWS_CONFIG_FILE="/dev/null",
            AWS_SHARED_CREDENTIALS_FILE="/dev/null",
            PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        )
        return env

    def aws(self, *args: str, region: str = REGION, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The real ``aws`` CLI (installed in the venv), pointed here through the environment only."""
        result = subprocess.run(
            [str(VENV_BIN / "aws"), *args],
            env=self.aws_cli_env(region),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result


class InProcessServer:
    """The control plane in this process on a real store; the same surface as :class:`TaskvpcServer`."""

    def __init__(
        self, state_dir: Path, database_url: str | None = None, credentials: Any = None, host: str = HOST
    ) -> None:
        self.state_dir = state_dir
        self.database_url = database_url
        self.credentials = credentials
        self.host = host
        self.endpoint = f"http://{host}"
        self.transport: AsgiTransport | None = None
        self.control_plane: ControlPlane | None = None
        self._database: Database | None = None

    def start(self, services: Any = None) -> InProcessServer:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        database = self._database = Database(self.database_url or sqlite_url(self.state_dir))
        database.migrate()
        settings = Settings(ACCOUNT_ID, ACCESS_KEY_ID, SECRET_ACCESS_KEY, allow_reset=True)
        options: dict[str, Any] = {"credentials": self.credentials}
        if services is not None:
            options["services"] = services
        self.control_plane = ControlPlane(settings, database, **options)
        self.control_plane.prepare_region(REGION)
        # The reconcile loops of `taskvpc up` (its default windows), started with the lifespan.
        runner = reconcile.build_runner(database, self.control_plane.context)
        # From here on urllib (the fake agent, raw-HTTP tests) reaches this server by its host name too.
        self.transport = AsgiTransport(Application(self.control_plane, runner), self.host)
        return self

    def stop(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        if self._database is not None:
            self._database.dispose()
            self._database = None

    def _transport(self) -> AsgiTransport:
        assert self.transport is not None, "server not started"
        return self.transport

    def attach(self, client: Any) -> Any:
        """Route a boto3/botocore client made elsewhere (other keys, another model) to this server."""
        return self._transport().attach(client)

    def http(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, bytes, dict[str, str]]:
        headers = {"host": self.host, **{k.lower(): v for k, v in headers.items()}}
        status, out, body_bytes = self._transport().request(method, target, headers, body)
        return status, body_bytes, {k.lower(): v for k, v in out}

    def client(self, service: str, region: str = REGION, **config: Any) -> Any:
        client = boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=region,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            config=Config(retries={"max_attempts": 1}, **config),
        )
        return self._transport().attach(client)

    def reset(self) -> None:
        request = AWSRequest(method="POST", url=f"{self.endpoint}/_taskvpc/reset", data=b"")
        SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY), "ecs", REGION).add_auth(request)
        prepared = request.prepare()
        status, body, _ = self.http("POST", "/_taskvpc/reset", dict(prepared.headers))
        assert status == 200, body

    def aws(self, *args: str, region: str = REGION, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The ``aws`` CLI's own driver, run here with its requests routed to this server."""
        from awscli.clidriver import create_clidriver

        env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": region,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }
        stdout, stderr = io.StringIO(), io.StringIO()
        with _environment(env), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            driver = create_clidriver()
            self._transport().attach(driver.session)
            code = driver.main(list(args))
        result = subprocess.CompletedProcess(["aws", *args], code, stdout.getvalue(), stderr.getvalue())
        if check and code != 0:
            raise AssertionError(f"aws {' '.join(args)} failed ({code}):\n{result.stderr}")
        return result


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` without the user's AWS_ settings but with ``values`` for the duration (the CLI reads
    it). ``AWS_DATA_PATH`` stays: importing awscli put its own data directory there."""
    saved = dict(os.environ)
    for name in [name for name in os.environ if name.startswith("AWS_") and name != "AWS_DATA_PATH"]:
        del os.environ[name]
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# What the ``api``/``live_api`` fixtures hand a test.
Server = TaskvpcServer | InProcessServer
