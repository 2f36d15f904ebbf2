"""The tasks' path to the AWS API: a connection a task opens to ``169.254.170.2:<api port>`` is piped byte
for byte to the control plane the agent itself talks to now, so SigV4 (the ``Host`` header included) is
what the task's client signed.

With several control planes (``taskvpc agent --endpoint URL1,URL2``) the relay follows the agent's
client: each connection goes to the client's current endpoint. A control plane that refuses the
connection (or does not accept it within :data:`CONNECT_TIMEOUT`) is reported to the client, which moves
on exactly as after one of its own failed calls, and the relay tries the next one; the task sees one
connection that works. Only the connect is retried: once bytes flowed, a control plane dying mid-request
closes the task's connection and the task's SDK retries it (a new connection, to the new endpoint). The
task's request goes out as sent: an endpoint's path prefix is not added.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

from taskvpc.agent.client import Endpoint
from taskvpc.agent.kvlog import kv

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0  # a control plane on another machine that is gone answers nothing at all


class EndpointChoice(Protocol):
    """What the relay needs of the agent's client (``AgentClient``): its endpoints, the one it uses now,
    and a way to say that one could not be reached."""

    @property
    def endpoints(self) -> Sequence[Endpoint]: ...

    @property
    def endpoint(self) -> Endpoint: ...

    def unreachable(self, endpoint: Endpoint) -> None: ...


class ApiRelay:
    """Serves one task connection at a time per call of :meth:`serve` (an ``asyncio.start_server``
    handler's body); ``port`` is what tasks are told (``AWS_ENDPOINT_URL``): the first endpoint's."""

    def __init__(self, choice: EndpointChoice, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.choice = choice
        self.connect_timeout = connect_timeout

    @property
    def port(self) -> int:
        return self.choice.endpoints[0].port

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to the agent's current control plane, failing over as the agent does; ``None``
        when no endpoint accepts one."""
        for _ in range(len(self.choice.endpoints)):
            target = self.choice.endpoint
            try:
                async with asyncio.timeout(self.connect_timeout):
                    return await asyncio.open_connection(target.host, target.port)  # host's namespace
            except (OSError, TimeoutError) as exc:
                log.warning("api relay: %s", kv(endpoint=target.netloc, error=type(exc).__name__))
                self.choice.unreachable(target)
        return None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Pipe the task's connection both ways until either side closes (the caller closes ``writer``)."""
        upstream = await self.connect()
        if upstream is None:
            return  # no control plane: the task's client sees the connection closed and retries
        up_reader, up_writer = upstream
        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            # No await here: a connection still open when the loop shuts down is closed by the garbage
            # collector, and a coroutine that awaits while being closed raises instead of finishing.
            up_writer.close()


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then half-close ``writer`` (the other direction may go on). A reset
    ends this direction like an end of stream: the caller closes both connections once both are done."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof()
