"""The awslogs log driver: each container's output shipped to CloudWatch Logs through the agent API.

The runtimes keep every container's output in its ``log`` files whatever the driver (so ``taskvpc logs``
works for all of them); for a container with ``logDriver`` ``awslogs`` a :class:`ContainerShipper` follows
those files (``logreader.py``), groups lines into events (``logevents.py``) and sends them in the
report's ``logEvents`` member (``agentapi/logdriver.py``) to the control plane, which writes them into
the container's stream in one transaction with the container's next expected event number and answers
that number. Only then does the shipper save its position (``awslogs.cursor`` in the container's
directory: next event number, file inode and offset), so an agent killed at any point starts again from
the last acknowledged event: the control plane drops what it already has (nothing lost, nothing twice).

* **Opening** (the task resource, before any container starts): the stream is created, and the group
  with ``awslogs-create-group``; a refusal (no such group, the execution role may not) fails the task
  with ``CannotStartContainerError``, as Docker's driver failing to initialise does.
* **Modes.** ``non-blocking`` (ECS's default): events wait in memory up to ``max-buffer-size`` bytes;
  while the control plane cannot be reached, lines beyond that are dropped and counted (``dropped``,
  logged and sent with the next batch). ``blocking``: the shipper stops reading while
  :data:`BLOCKING_BUFFER` bytes wait; the container never blocks here (its output goes to the rotated
  files), so lines are lost only if the files rotate past what was read (5 x 10 MiB).
* **Ordering**: one request in flight per container, events in file order, timestamps never decreasing.
* **Restart**: adopted tasks resume from their cursor (:meth:`LogShipper.resume`); a task's remove
  drains its containers' output (bounded by :data:`DRAIN_TIMEOUT`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from taskvpc.agent.kvlog import kv
from taskvpc.agent.logevents import Event, EventGrouper
from taskvpc.agent.logreader import Position, PositionedReader
from taskvpc.agent.runtime import container_dir
from taskvpc.agentapi.logdriver import (
    LOG_EVENTS,
    AwslogsOptions,
    LogAck,
    LogDelivery,
    LogOptionError,
    acks_from_answer,
    awslogs_options,
)
from taskvpc.agentapi.tasks import DesiredTask

log = logging.getLogger(__name__)

POLL = 0.05  # s between reads of an idle container's output
BATCH_EVENTS = 10_000  # PutLogEvents' limits
BATCH_BYTES = 1_048_576
BLOCKING_BUFFER = 2 * 1_048_576
DRAIN_TIMEOUT = 10.0
RETRY = 1.0
CURSOR = "awslogs.cursor"

Deliver = Callable[[Sequence[LogDelivery]], Awaitable[Sequence[LogAck]]]


class LogDriverError(Exception):
    """The driver cannot start for a container; the message is the task's stop reason."""


def _load_cursor(path: Path) -> tuple[int, Position | None, int]:
    try:
        doc = json.loads(path.read_text())
        return int(doc["seq"]), (int(doc["inode"]), int(doc["offset"])), int(doc.get("dropped", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return 0, None, 0


def _save_cursor(path: Path, seq: int, position: Position, dropped: int) -> None:
    temporary = path.with_suffix(".tmp")
    doc = {"seq": seq, "inode": position[0], "offset": position[1], "dropped": dropped}
    temporary.write_text(json.dumps(doc))
    os.replace(temporary, path)


class ContainerShipper:
    def __init__(
        self,
        task_arn: str,
        name: str,
        directory: Path,
        options: AwslogsOptions,
        stream: str,
        deliver: Deliver,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.task_arn, self.name, self.directory = task_arn, name, directory
        self.options, self.stream = options, stream
        self._deliver, self._clock = deliver, clock
        self.cursor_path = directory / CURSOR
        seq, position, self.dropped = _load_cursor(self.cursor_path)
        self.acked = self.next_seq = seq
        self.reader = PositionedReader(directory, position)
        self.grouper = EventGrouper(options.starts_event, options.anchored)
        self.pending: deque[tuple[int, Event]] = deque()
        self.pending_bytes = 0
        self.sent_events = 0
        self._new = asyncio.Event()
        self._space = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def _delivery(self, first: int, events: tuple[tuple[int, str], ...] = ()) -> LogDelivery:
        return LogDelivery(self.task_arn, self.name, self.stream, first, events, self.dropped)

    async def open(self) -> None:
        """Create the stream (and the group if asked); LogDriverError with the control plane's reason."""
        [ack] = await self._deliver([self._delivery(self.acked)])
        if ack.error_code is not None:
            raise LogDriverError(
                "CannotStartContainerError: failed to initialize logging driver: "
                f"failed to create Cloudwatch log stream: {ack.error_code}: {ack.error_message}"
            )

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.ensure_future(self._read_loop()), asyncio.ensure_future(self._send_loop())]

    # ---- reading -----------------------------------------------------------------------------------

    def _take(self, events: list[Event]) -> None:
        for event in events:
            if not self.options.blocking and self.pending_bytes + event.size > self.options.max_buffer_size:
                self.dropped += event.lines
                continue
            self.pending.append((self.next_seq, event))
            self.next_seq += 1
            self.pending_bytes += event.size
        if self.pending:
            self._new.set()

    def _consume(self, lines: list[tuple[str, Position]]) -> None:
        now = int(self._clock() * 1000)
        for text, position in lines:
            self._take(self.grouper.line(text, now, position))
        self._take(self.grouper.flush_older_than(now))

    async def _read_loop(self) -> None:
        while True:
            if self.options.blocking and self.pending_bytes >= BLOCKING_BUFFER:
                self._space.clear()
                await self._space.wait()
                continue
            lines = self.reader.read_lines()
            self._consume(lines)
            if not lines:
                await asyncio.sleep(POLL)

    # ---- sending -----------------------------------------------------------------------------------

    def _batch(self) -> list[tuple[int, Event]]:
        batch: list[tuple[int, Event]] = []
        size = 0
        for seq, event in self.pending:
            if len(batch) >= BATCH_EVENTS or (batch and size + event.size > BATCH_BYTES):
                break
            batch.append((seq, event))
            size += event.size
        return batch

    def _acknowledge(self, upto: int) -> None:
        """Everything numbered below ``upto`` is stored: forget it, and save the position past the last
        stored event that ends a line (a piece of a split line does not)."""
        saved: tuple[int, Position] | None = None
        while self.pending and self.pending[0][0] < upto:
            seq, event = self.pending.popleft()
            self.pending_bytes -= event.size
            self.sent_events += 1
            if event.end is not None:
                assert isinstance(event.end, tuple)
                saved = (seq + 1, event.end)
        self.acked = max(self.acked, upto)
        if saved is not None:
            _save_cursor(self.cursor_path, saved[0], saved[1], self.dropped)
        self._space.set()

    async def _send_once(self) -> None:
        batch = self._batch()
        events = tuple((event.timestamp, event.message) for _, event in batch)
        [ack] = await self._deliver([self._delivery(batch[0][0], events)])
        if ack.error_code is not None:  # e.g. the group was deleted: Docker logs it and drops the batch
            log.warning(
                "awslogs batch refused %s",
                kv(task_arn=self.task_arn, container=self.name, code=ack.error_code, events=len(batch)),
            )
            self.dropped += sum(event.lines for _, event in batch)
            self._acknowledge(batch[-1][0] + 1)
            return
        self._acknowledge(ack.next)

    async def _send_loop(self) -> None:
        while True:
            if not self.pending:
                self._new.clear()
                await self._new.wait()
                continue
            try:
                await self._send_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a 4xx of the agent API (a retry is the client's): try again later
                log.warning("awslogs delivery failed %s", kv(task_arn=self.task_arn, error=repr(exc)))
                await asyncio.sleep(RETRY)

    async def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """The container has ended: ship what is left (within ``timeout``), then stop."""
        reader = self._tasks[0] if self._tasks else None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        self._consume(self.reader.rest())
        self._take(self.grouper.flush())
        self.start_sender_only()
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(POLL)
        if self.pending or self.dropped:
            log.warning(
                "awslogs stopped %s",
                kv(
                    task_arn=self.task_arn,
                    container=self.name,
                    unsent=len(self.pending),
                    dropped=self.dropped,
                ),
            )
        await self.stop()

    def start_sender_only(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.ensure_future(self._send_loop())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self.reader.close()


class LogShipper:
    """The agent's awslogs shippers, by task id; ``deliver`` posts ``logEvents`` and returns the acks."""

    def __init__(self, state_dir: Path, deliver: Deliver, clock: Callable[[], float] = time.time) -> None:
        self.state_dir = state_dir
        self.deliver = deliver
        self.clock = clock
        self.tasks: dict[str, list[ContainerShipper]] = {}

    def shippers_for(self, task: DesiredTask) -> list[ContainerShipper]:
        """The task's awslogs containers' shippers (made once); LogDriverError for options Docker refuses."""
        if task.task_id in self.tasks:
            return self.tasks[task.task_id]
        made = []
        for container in task.containers:
            config = container.log_configuration
            if config is None or config.driver != "awslogs":
                continue
            try:
                options = awslogs_options(config)
            except LogOptionError as exc:
                raise LogDriverError(
                    f"CannotStartContainerError: failed to initialize logging driver: {exc}"
                ) from None
            directory = container_dir(self.state_dir, task.task_id, container.name)
            directory.mkdir(parents=True, exist_ok=True)
            # Without a prefix Docker names the stream after the container id; ours is task id + name.
            stream = options.stream_name(container.name, task.task_id, f"{task.task_id}-{container.name}")
            made.append(
                ContainerShipper(
                    task.arn, container.name, directory, options, stream, self.deliver, self.clock
                )
            )
        self.tasks[task.task_id] = made
        return made

    async def open(self, task: DesiredTask) -> None:
        for shipper in self.shippers_for(task):
            await shipper.open()
            shipper.start()

    def resume(self, task: DesiredTask) -> None:
        """An adopted task: carry on from each container's saved position (its stream exists already)."""
        try:
            shippers = self.shippers_for(task)
        except LogDriverError:
            return
        for shipper in shippers:
            shipper.start()

    async def finish(self, task_id: str) -> None:
        for shipper in self.tasks.pop(task_id, []):
            await shipper.drain()

    async def close(self) -> None:
        """The agent stops (tasks keep running): stop reading; the next agent resumes from the cursors."""
        for shippers in self.tasks.values():
            for shipper in shippers:
                await shipper.stop()
        self.tasks.clear()


class AwslogsResource:
    """The task resource: open the streams before any container starts, drain them once all stopped."""

    name = "awslogs"

    def __init__(self, shipper: LogShipper, task: DesiredTask) -> None:
        self.shipper = shipper
        self.task = task

    async def ensure(self) -> None:
        await self.shipper.open(self.task)

    async def remove(self) -> None:
        await self.shipper.finish(self.task.task_id)


def wants_awslogs(task: DesiredTask) -> bool:
    return any(
        c.log_configuration is not None and c.log_configuration.driver == "awslogs" for c in task.containers
    )


class _Reporting(Protocol):
    async def report_logs(self, instance_id: str, body: Mapping[str, Any]) -> dict[str, Any]: ...


def sender(client: _Reporting, instance_id: Callable[[], str]) -> Deliver:
    """``deliver`` through the agent API: a report with ``logEvents`` only; the acks from its answer."""

    async def deliver(deliveries: Sequence[LogDelivery]) -> Sequence[LogAck]:
        body = {"tasks": [], LOG_EVENTS: [d.to_wire() for d in deliveries]}
        acks = acks_from_answer(await client.report_logs(instance_id(), body))
        by_key = {(a.task_arn, a.container): a for a in acks}
        missing = [d for d in deliveries if (d.task_arn, d.container) not in by_key]
        if missing:  # a control plane without awslogs support, or the task is not ours any more
            raise LogDriverError("the control plane acknowledged no log events")
        return [by_key[(d.task_arn, d.container)] for d in deliveries]

    return deliver
