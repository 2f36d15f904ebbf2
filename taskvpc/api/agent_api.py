"""The agent API (docs/agent-api.md): routing, SigV4, JSON, and the desired-state long poll.

    POST <PREFIX>register
    GET  <PREFIX>instances/<id>/desired?after=<generation>&wait=<seconds>[&since=<generation>&have=<digests>]
    POST <PREFIX>instances/<id>/report
    POST <PREFIX>instances/<id>/target-health
    POST <PREFIX>instances/<id>/deregister

``PREFIX`` is ``/_taskvpc/agent/v<VERSION>/`` (taskvpc.agentapi). The bodies are the contract's values
(taskvpc.agentapi), written and read by ``taskvpc.control.agent``.

Every request is SigV4-signed with the root credentials (service ``ecs``, the cluster's region); one that
fails is ``403 {"message"}``. Errors are ``{"code", "message"}`` with their status. The long poll answers
at once when the generation is past ``after``, else when a request of this process wakes it (RunTask,
StopTask, ...), when a re-read finds it changed (at least every second, for changes made by other server
processes on a shared PostgreSQL), or after ``wait`` seconds (at most 30) with ``changed: false``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs

import orjson

from taskvpc.agentapi import PREFIX as PREFIX, delta
from taskvpc.api.app import ControlPlane
from taskvpc.control import agent
from taskvpc.control.context import RequestContext
from taskvpc.control.elbv2 import agent_section as elb_agent, retarget
from taskvpc.domain.errors import ClientError
from taskvpc.wire import sigv4
from taskvpc.wire.http import HttpRequest, HttpResponse

log = logging.getLogger("taskvpc.agent_api")

MAX_WAIT = 30.0
RECHECK = 1.0  # seconds between re-reads of a waiting poll's generation
_INSTANCE_ROUTE = re.compile(r"instances/([0-9a-f]{32})/(desired|report|target-health|deregister)")

T = TypeVar("T")


class AgentApi:
    def __init__(self, control_plane: ControlPlane) -> None:
        self.control_plane = control_plane

    async def handle(self, request: HttpRequest) -> HttpResponse:
        now = self.control_plane.clock()
        try:
            identity = sigv4.verify(
                request, self.control_plane.resolve_root, datetime.fromtimestamp(now, UTC)
            )
        except sigv4.AuthFailure as failure:
            return _json(403, {"message": f"agent request refused: {failure.kind}"})
        if identity.service != "ecs":
            return _json(403, {"message": "agent requests are signed for the ecs service"})
        ctx = self.control_plane.context(identity.region, now)
        try:
            await self.control_plane.prepare(ctx)
            result = await self._route(ctx, request)
        except ClientError as error:
            return _json(error.http_status, {"code": error.code, "message": error.message})
        except Exception:
            log.exception("agent API internal error")
            return _json(500, {"code": "InternalError", "message": "An internal error occurred."})
        self.control_plane.notifier.wake(ctx.notify)
        return _json(200, result)

    async def _route(self, ctx: RequestContext, request: HttpRequest) -> dict[str, Any]:
        path = request.path[len(PREFIX) :]
        if path == "register":
            _method(request, "POST")
            return await self._call(agent.register, ctx, _body(request))
        match = _INSTANCE_ROUTE.fullmatch(path)
        if match is None:
            raise ClientError("NotFound", f"No agent API route {request.path}.", 404)
        instance_id, action = match.groups()
        if action == "desired":
            _method(request, "GET")
            after, wait = _poll_arguments(request.query_string)
            since, have = _delta_arguments(request.query_string)
            keyed = frozenset(filter(None, parse_qs(request.query_string).get("keyed", [""])[0].split(",")))
            return await self._desired(ctx, instance_id, after, wait, since, have, keyed)
        _method(request, "POST")
        if action == "report":
            return await self._call(agent.report, ctx, instance_id, _body(request))
        if action == "target-health":  # the load balancers' health checker (control/elbv2/agent_section.py)
            return await self._call(elb_agent.report_target_health, ctx, instance_id, _body(request))
        return await self._call(agent.deregister, ctx, instance_id)

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        return await self.control_plane.call(function, *args, agent=True)

    async def _desired(
        self,
        ctx: RequestContext,
        instance_id: str,
        after: int,
        wait: float,
        since: int | None = None,
        have: dict[str, str] | None = None,
        keyed: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        heartbeat = True  # the poll's arrival counts; re-reads while waiting do not write
        while True:
            event = self.control_plane.notifier.event(instance_id)  # before the read: no lost wake-up
            current = await self._call(agent.generation, ctx, instance_id, heartbeat)
            heartbeat = False
            remaining = deadline - loop.time()
            if current > after or remaining <= 0 or self.control_plane.notifier.closing:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=min(RECHECK, remaining))
        elb_agent.mark("poll-woken", generation=current)
        answer_ctx = self.control_plane.context(ctx.region, self.control_plane.clock())
        # A target change is answered with its load balancer alone when it can be (control/elbv2/retarget.py).
        answer = await self._call(retarget.answer, answer_ctx, instance_id, after, since, have, keyed)
        short = answer is not None
        if answer is None:
            answer = await self._call(agent.desired_state, answer_ctx, instance_id, after, since, have)
            retarget.remember(instance_id, answer)
        elb_agent.mark("answered", generation=current, short=short)
        return answer


def _json(status: int, payload: dict[str, Any]) -> HttpResponse:
    return HttpResponse(status, orjson.dumps(payload), [("content-type", "application/json")])


def _method(request: HttpRequest, expected: str) -> None:
    if request.method != expected:
        raise ClientError("MethodNotAllowed", f"{request.path} takes {expected}.", 405)


def _body(request: HttpRequest) -> dict[str, Any]:
    try:
        payload = orjson.loads(request.body or b"{}")
    except orjson.JSONDecodeError:
        raise agent.bad_request("The body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise agent.bad_request("The body must be a JSON object.")
    return payload


def _poll_arguments(query: str) -> tuple[int, float]:
    values = parse_qs(query)
    try:
        after = int(values.get("after", ["0"])[0])
        wait = float(values.get("wait", ["0"])[0])
    except ValueError:
        raise agent.bad_request("after must be an integer and wait a number of seconds.") from None
    return after, max(0.0, min(wait, MAX_WAIT))


def _delta_arguments(query: str) -> tuple[int | None, dict[str, str] | None]:
    """``since`` (the generation the agent holds: answer with a delta) and ``have`` (its section digests)."""
    values = parse_qs(query)
    if "since" not in values:
        return None, None
    try:
        since = int(values["since"][0])
    except ValueError:
        raise agent.bad_request("since must be an integer.") from None
    return since, delta.decode_have(values.get("have", [""])[0])
