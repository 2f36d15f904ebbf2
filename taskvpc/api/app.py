"""The control plane's ASGI application: admin routes, SigV4, protocol routing, use-case dispatch.

The request is buffered once; from then on everything below is a call on plain values:
``sigv4.verify`` -> ``<protocol>.decode`` -> handler -> ``<protocol>.encode``. Only this module and
``asgi.py`` know about ASGI.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from taskvpc.api.notify import Notifier
from taskvpc.api.service_models import service_spec
from taskvpc.control.context import RequestContext
from taskvpc.control.ec2.default_vpc import ensure_region
from taskvpc.control.registry import handler_for
from taskvpc.domain.arns import root_principal_arn
from taskvpc.domain.errors import ClientError
from taskvpc.domain.regions import is_region
from taskvpc.store.db import Database, wipe
from taskvpc.wire import auth_errors, json11, presigned_json, query, sigv4
from taskvpc.wire.http import HttpRequest, HttpResponse
from taskvpc.wire.shapes import ServiceSpec
from taskvpc.wire.validate import ec2_validation_error, query_validation_error, validate

log = logging.getLogger("taskvpc.api")

# Services whose first request in a region creates the region's default VPC.
_REGIONAL = frozenset({"ecs", "ec2"})
# SigV4 signing name -> botocore service name.
_BY_SIGNING_NAME = {"ecs": "ecs", "ec2": "ec2", "elasticloadbalancing": "elbv2", "sts": "sts"}
_ECS_TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113."
# The Action of a query request, found by one scan (the form is only parsed once the signature holds).
_ACTION = re.compile(rb"(?:^|&)Action=([A-Za-z0-9]{1,64})(?:&|$)")


@dataclass(frozen=True, slots=True)
class Settings:
    account_id: str
    access_key_id: str
    secret_access_key: str
    allow_reset: bool = False


class ControlPlane:
    """Turns one buffered AWS request into one response."""

    def __init__(self, settings: Settings, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.specs = {name: service_spec(name) for name in _BY_SIGNING_NAME.values()}
        # SQLite calls take microseconds and serialize anyway: run them inline. A network database
        # would stall the event loop, so its calls go to worker threads.
        self.inline = db.is_sqlite
        # Regions whose default VPC exists (or was deleted by the user); checked once per process.
        self.regions_ready: set[str] = set()
        # Agents' long polls waiting in this process, woken by requests that change their desired state.
        self.notifier = Notifier()

    async def _run(self, function: Callable[[RequestContext], None], ctx: RequestContext) -> None:
        if self.inline:
            function(ctx)
        else:
            await asyncio.to_thread(function, ctx)

    def prepare_region(self, region: str) -> None:
        """Create ``region``'s default VPC now (at start-up) rather than on its first request."""
        ensure_region(self.context(region, self.clock()))
        self.regions_ready.add(region)

    def context(self, region: str, now: float, request_id: str | None = None) -> RequestContext:
        """A request context for ``region`` at ``now`` (the agent API builds its own requests' with it)."""
        return RequestContext(
            region=region,
            account_id=self.settings.account_id,
            principal_arn=root_principal_arn(self.settings.account_id),
            now=now,
            request_id=request_id or str(uuid.uuid4()),
            db=self.db,
            new_id=_new_uuid,
        )

    async def prepare(self, ctx: RequestContext) -> None:
        """Lay the region's default VPC out on its first use in this process."""
        if ctx.region not in self.regions_ready:
            await self._run(ensure_region, ctx)
            self.regions_ready.add(ctx.region)

    def secret_for(self, access_key_id: str) -> str | None:
        return self.settings.secret_access_key if access_key_id == self.settings.access_key_id else None

    async def handle_aws(self, request: HttpRequest) -> HttpResponse:
        request_id = str(uuid.uuid4())
        spec = self._guess_spec(request)
        now = self.clock()
        try:
            # The raw body's hash is checked before anything of it is parsed; the scope must name a real
            # region and the service the request is for (an ECS target is signed for ecs).
            identity = sigv4.verify(
                request,
                self.secret_for,
                datetime.fromtimestamp(now, UTC),
                service=_expected_service(request, spec),
                valid_region=is_region,
            )
        except sigv4.AuthFailure as failure:
            error = auth_errors.auth_error(failure, spec.protocol, datetime.fromtimestamp(now, UTC))
            return self._error(spec, error, request_id)
        signed_spec = self.specs.get(_BY_SIGNING_NAME.get(identity.service, ""))
        if signed_spec is None:  # a second Credential= in the header can name another service
            error = ClientError("UnrecognizedClientException", f"Unknown service '{identity.service}'.", 400)
            return self._error(spec, error, request_id)
        spec = signed_spec
        try:
            if identity.presigned and spec.protocol == "json" and not request.body.strip():
                # botocore's presigned POST carries the operation's parameters in the URL.
                operation = json11.operation_for_target(spec, request.headers.get("x-amz-target"))
                request = replace(
                    request, body=presigned_json.body_from_query(operation, request.query_string)
                )
            operation_name, params = self._decode(spec, request)
            handler = handler_for(spec.name, operation_name)
            if handler is None:
                raise ClientError(
                    "NotImplemented", f"taskvpc does not implement the {operation_name} operation yet.", 501
                )
            ctx = self.context(identity.region, now, request_id)
            if spec.name in _REGIONAL:
                await self.prepare(ctx)
            if self.inline:
                result = handler(ctx, params)
            else:
                result = await asyncio.to_thread(handler, ctx, params)
            self.notifier.wake(ctx.notify)
            return self._result(spec, operation_name, result, request_id)
        except ClientError as error:
            return self._error(spec, error, request_id)
        except Exception:
            log.exception("internal error", extra={"request_id": request_id})
            if spec.protocol == "json":
                return json11.encode_server_error(request_id)
            return query.encode_server_error(spec, request_id)

    def _guess_spec(self, request: HttpRequest) -> ServiceSpec:
        """The service a request is meant for, before it is authenticated (to render auth errors)."""
        if request.headers.get("x-amz-target", "").startswith(_ECS_TARGET_PREFIX):
            return self.specs["ecs"]  # whatever its scope claims: a wrong one is an ECS error
        scope = sigv4.credential_scope(request)
        if scope is not None and scope.service in _BY_SIGNING_NAME:
            return self.specs[_BY_SIGNING_NAME[scope.service]]
        if "x-amz-target" in request.headers:
            return self.specs["ecs"]
        raw_query = request.query_string.encode("latin-1", "replace")
        found = _ACTION.search(raw_query) or _ACTION.search(request.body)
        action = found.group(1).decode() if found else ""
        for name in ("ec2", "elbv2", "sts"):
            if action in self.specs[name].operations:
                return self.specs[name]
        return (
            self.specs["ecs"]
            if request.headers.get("content-type", "").startswith("application/x-amz-json")
            else self.specs["ec2"]
        )

    def _decode(self, spec: ServiceSpec, request: HttpRequest) -> tuple[str, dict[str, Any]]:
        if spec.protocol == "json":
            operation, params = json11.decode_request(spec, request)
            return operation.name, params
        form = query.parse_form(request.body, request.query_string)
        operation = query.operation_for_action(spec, form)
        params = query.decode_params(spec, operation, form)
        if operation.input is not None and (problems := validate(operation.input, params)):
            if spec.protocol == "ec2":
                raise ec2_validation_error(problems)
            raise query_validation_error(problems)
        return operation.name, params

    def _result(self, spec: ServiceSpec, name: str, result: dict[str, Any], request_id: str) -> HttpResponse:
        operation = spec.operations[name]
        if spec.protocol == "json":
            return json11.encode_result(operation, result, request_id)
        return query.encode_result(spec, operation, result, request_id)

    def _error(self, spec: ServiceSpec, error: ClientError, request_id: str) -> HttpResponse:
        if spec.protocol == "json":
            return json11.encode_error(error, request_id)
        return query.encode_error(spec, error, request_id)

    async def reset(self, request: HttpRequest) -> HttpResponse:
        """Wipe all state (test suites call this between tests); signed, and only with --allow-reset."""
        if not self.settings.allow_reset:
            return _json(403, {"message": "reset is disabled; start taskvpc with --allow-reset"})
        try:
            sigv4.verify(request, self.secret_for, datetime.fromtimestamp(self.clock(), UTC))
        except sigv4.AuthFailure as failure:
            return _json(403, {"message": f"reset refused: {failure.kind}"})
        if self.inline:
            wipe(self.db)
        else:
            await asyncio.to_thread(wipe, self.db)
        self.regions_ready.clear()  # the next request of a region lays its default VPC out again
        self.notifier.wake_all()  # waiting polls re-read and find their instance gone
        return _json(200, {"reset": True})


def _expected_service(request: HttpRequest, guessed: ServiceSpec) -> str | None:
    """The signing name the credential scope must have: ``ecs`` for an ECS target, else any service this
    endpoint serves (None), else the guessed service's (AWS's "Credential should be scoped to correct
    service" names the endpoint's)."""
    if request.headers.get("x-amz-target", "").startswith(_ECS_TARGET_PREFIX):
        return "ecs"
    scope = sigv4.credential_scope(request)
    if scope is not None and scope.service in _BY_SIGNING_NAME:
        return None
    return guessed.signing_name


def _new_uuid() -> str:
    return str(uuid.uuid4())


def _json(status: int, payload: dict[str, Any]) -> HttpResponse:
    return HttpResponse(status, orjson.dumps(payload), [("content-type", "application/json")])
