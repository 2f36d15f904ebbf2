"""The control plane's ASGI application: admin routes, SigV4, protocol routing, use-case dispatch.

The request is buffered once; from then on everything below is a call on plain values:
``sigv4.verify`` -> ``codec.decode`` -> handler -> ``codec.encode_*``, where the service (and so its
codec and handlers) comes from its manifest, found by the request's SigV4 signing name. Only this module
and ``asgi.py`` know about ASGI.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from taskvpc.api.notify import Notifier
from taskvpc.api.service_models import ServedService, served, unserved_protocol
from taskvpc.control.context import RequestContext
from taskvpc.control.ec2.default_vpc import ensure_region
from taskvpc.control.iam.credentials import Grants, IamCredentials
from taskvpc.control.iam.enforce import authorize
from taskvpc.control.identity import Credential, CredentialResolver, Principal, StaticCredentials
from taskvpc.control.manifest import ServiceManifest
from taskvpc.control.registry import SERVICES
from taskvpc.domain.arns import root_principal_arn
from taskvpc.domain.errors import ClientError
from taskvpc.domain.pagination import derive_key
from taskvpc.domain.regions import is_region
from taskvpc.store.db import Database, wipe
from taskvpc.wire import auth_errors, json11, presigned_json, sigv4
from taskvpc.wire.http import HttpRequest, HttpResponse
from taskvpc.wire.protocols import guess_protocol, unserved_error
from taskvpc.wire.validate import coral_message, validate

log = logging.getLogger("taskvpc.api")
T = TypeVar("T")

# Worker threads for the store work of requests. Every handler runs on one, never on the event loop:
# a describe over a big store, a slow database or a big answer to encode then delays only itself, not
# the other clients or the agents' long polls. The agent API has threads of its own, so polls and reports
# are never queued behind clients' requests. (Threads share the GIL, which CPython hands over every few
# milliseconds: a long request slows others down a little but never holds them up. More threads than
# this buy no throughput on CPU-bound work under one GIL, only longer waits for it.)
API_WORKERS = 4
AGENT_WORKERS = 2
SWITCH_INTERVAL = 0.001  # seconds


@dataclass(frozen=True, slots=True)
class Settings:
    account_id: str
    access_key_id: str
    secret_access_key: str
    allow_reset: bool = False
    page_token_key: bytes | None = None  # MACs pagination tokens; derived from the secret when absent


class ControlPlane:
    """Turns one buffered AWS request into one response."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        clock: Callable[[], float] = time.time,
        *,
        services: Iterable[ServiceManifest] = SERVICES,
        credentials: CredentialResolver | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.services = served(services)  # by SigV4 signing name
        # Who may call: the root key of the settings and the IAM users' and STS sessions' keys in the store,
        # held to their policies - unless the caller brings its own resolver, whose keys it vouches for
        # (they act unrestricted: tests and embedders that hand out fixed identities).
        root = Credential(
            settings.access_key_id, settings.secret_access_key, Principal.root(settings.account_id)
        )
        self.root = root
        self.iam = IamCredentials(db, settings.account_id, root) if credentials is None else None
        self.credentials: CredentialResolver = self.iam or credentials or StaticCredentials([root])
        # Worker threads take turns on the GIL; at CPython's default 5 ms a thread that is ready (the
        # event loop answering a long poll, a cheap request) can wait several such turns behind busy ones.
        sys.setswitchinterval(SWITCH_INTERVAL)
        self.workers = ThreadPoolExecutor(API_WORKERS, thread_name_prefix="taskvpc-api")
        self.agent_workers = ThreadPoolExecutor(AGENT_WORKERS, thread_name_prefix="taskvpc-agent")
        # Nothing runs inline on the loop any more; kept False for code that still asks (it then uses threads).
        self.inline = False
        # Regions whose default VPC exists (or was deleted by the user); checked once per process.
        self.regions_ready: set[str] = set()
        # Agents' long polls waiting in this process, woken by requests that change their desired state.
        self.notifier = Notifier()
        self.page_key = settings.page_token_key or derive_key(settings.secret_access_key)

    def resolve_root(self, access_key_id: str) -> Credential | None:
        """The root key only: what agents sign with (IAM users' and tasks' keys never reach the agent API)."""
        return self.root if access_key_id == self.root.access_key_id else None

    async def call(self, function: Callable[..., T], *args: Any, agent: bool = False) -> T:
        """``function(*args)`` on a worker thread (the agent API's with ``agent``), awaited."""
        pool = self.agent_workers if agent else self.workers
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(function, *args))

    def prepare_region(self, region: str) -> None:
        """Create ``region``'s default VPC now (at start-up) rather than on its first request."""
        ensure_region(self.context(region, self.clock()))
        self.regions_ready.add(region)

    def context(
        self, region: str, now: float, request_id: str | None = None, principal: Principal | None = None
    ) -> RequestContext:
        """A request context for ``region`` at ``now`` (the agent API builds its own requests' with it)."""
        return RequestContext(
            region=region,
            account_id=self.settings.account_id,
            principal=_in_partition(principal, self.settings.account_id, region),
            now=now,
            request_id=request_id or str(uuid.uuid4()),
            db=self.db,
            new_id=_new_uuid,
            page_key=self.page_key,
        )

    async def prepare(self, ctx: RequestContext) -> None:
        """Lay the region's default VPC out on its first use in this process."""
        if ctx.region not in self.regions_ready:
            await self.call(ensure_region, ctx)
            self.regions_ready.add(ctx.region)

    async def handle_aws(self, request: HttpRequest) -> HttpResponse:
        request_id = str(uuid.uuid4())
        now = self.clock()
        scope = sigv4.credential_scope(request)
        routed = self._route(request, scope)
        if routed is None:
            # Not one of ours by its shape, and signed for a service taskvpc does not serve: nothing there
            # needs authenticating, so say so in that service's error shape.
            assert scope is not None
            return _unserved(scope.service, request, request_id)
        service, expected_signing_name = routed
        found: list[tuple[Credential | None, Grants | None]] = []

        def lookup(access_key_id: str) -> Credential | None:
            # One store read per request for the key and what its principal is granted.
            found.append(self.lookup(access_key_id))
            return found[-1][0]

        try:
            # The raw body's hash is checked before anything of it is parsed; the scope must name a real
            # region and the service the request is for (an ECS target is signed for ecs).
            identity = sigv4.verify(
                request,
                lookup,
                datetime.fromtimestamp(now, UTC),
                service=expected_signing_name,
                valid_region=is_region,
            )
        except sigv4.AuthFailure as failure:
            error = auth_errors.auth_error(failure, service.codec.auth, datetime.fromtimestamp(now, UTC))
            return service.codec.encode_error(service.spec, error, request_id)
        signed = self.services.get(identity.service)
        if signed is None:  # a second Credential= in the header can name another service
            error = ClientError("UnrecognizedClientException", f"Unknown service '{identity.service}'.", 400)
            return service.codec.encode_error(service.spec, error, request_id)
        service = signed
        credential, grants = found[-1]
        spec, codec = service.spec, service.codec
        try:
            if identity.presigned and codec.name == "json" and not request.body.strip():
                # botocore's presigned POST carries the operation's parameters in the URL.
                operation = json11.operation_for_target(spec, request.headers.get("x-amz-target"))
                request = replace(
                    request, body=presigned_json.body_from_query(operation, request.query_string)
                )
            operation_name, params = codec.decode(spec, request)
            principal = credential.principal if credential is not None else None
            ctx = self.context(identity.region, now, request_id, principal)
            # The answer is encoded on the handler's worker thread too: it can be big.
            response: HttpResponse = await self._dispatch(
                service,
                operation_name,
                params,
                ctx,
                grants,
                lambda result: codec.encode_result(spec, operation_name, result, request_id),
            )
            return response
        except ClientError as error:
            return codec.encode_error(spec, error, request_id)
        except Exception:
            log.exception("internal error", extra={"request_id": request_id})
            return codec.encode_server_error(spec, request_id)

    async def _dispatch(
        self,
        service: ServedService,
        operation_name: str,
        params: dict[str, Any],
        ctx: RequestContext,
        grants: Grants | None,
        finish: Callable[[dict[str, Any]], Any] = lambda result: result,
    ) -> Any:
        """An authenticated, decoded call: IAM, the use case (and ``finish`` of its result, on the same
        worker thread), then the agents it concerns are woken."""
        if grants is not None and not grants.unrestricted:
            # Every non-root principal's request is evaluated against its policies here, once, for
            # every service (the manifest's signing name is the IAM action prefix).
            manifest = service.manifest
            authorize(ctx, grants, manifest.signing_name, manifest.protocol, operation_name, params)
        handler = service.manifest.handlers.get(operation_name)
        if handler is None:
            raise ClientError(
                "NotImplemented", f"taskvpc does not implement the {operation_name} operation yet.", 501
            )
        if service.manifest.regional:
            await self.prepare(ctx)
        answer = await self.call(lambda: finish(handler(ctx, params)))
        self.notifier.wake(ctx.notify)
        return answer

    def lookup(self, access_key_id: str) -> tuple[Credential | None, Grants | None]:
        """An access key's credential and what its principal is granted (None, None: nobody's key)."""
        if self.iam is not None:
            return self.iam.lookup(access_key_id)
        return self.credentials.resolve(access_key_id), None

    async def invoke(
        self, signing_name: str, operation_name: str, params: dict[str, Any], access_key_id: str, region: str
    ) -> dict[str, Any]:
        """One operation as the holder of ``access_key_id``, for a caller that authenticated the key itself
        (the console's session): the same validation, IAM evaluation and use case as a SigV4 request.
        Raises ClientError as the use case does."""
        credential, grants = self.lookup(access_key_id)
        if credential is None:
            raise ClientError(
                "UnrecognizedClientException", "The security token included in the request is invalid.", 403
            )
        service = self.services[signing_name]
        operation = service.spec.operations.get(operation_name)
        if operation is None:
            raise ClientError("InvalidAction", f"The action {operation_name} is not valid.", 400)
        if operation.input is not None and (problems := validate(operation.input, params)):
            raise ClientError("ValidationException", coral_message(problems), 400)
        ctx = self.context(region, self.clock(), None, credential.principal)
        result: dict[str, Any] = await self._dispatch(service, operation_name, params, ctx, grants)
        return result

    def _route(
        self, request: HttpRequest, scope: sigv4.CredentialScope | None
    ) -> tuple[ServedService, str | None] | None:
        """Before authentication: the service a request is for (its errors take that service's shape) and
        the signing name its credential scope must then have (None: any served one, for AWS's "Credential
        should be scoped to correct service" names the endpoint's). None when the request is not
        recognisably for a served service and its scope names one taskvpc does not serve."""
        services = list(self.services.values())
        for service in services:
            if service.codec.claims(service.spec, request):
                return service, service.manifest.signing_name  # whatever its scope claims
        if scope is not None and scope.service in self.services:
            return self.services[scope.service], None
        for service in services:
            if service.codec.recognizes(service.spec, request):
                return service, service.manifest.signing_name
        if scope is not None:
            return None
        # Unsigned and unrecognisable: JSON requests get a JSON service's answer, others a query service's.
        headers = request.headers
        wants_json = "x-amz-target" in headers or headers.get("content-type", "").startswith(
            "application/x-amz-json"
        )
        fallback = next((s for s in services if (s.codec.name == "json") == wants_json), services[0])
        return fallback, fallback.manifest.signing_name

    async def reset(self, request: HttpRequest) -> HttpResponse:
        """Wipe all state (test suites call this between tests); signed, and only with --allow-reset."""
        if not self.settings.allow_reset:
            return _json(403, {"message": "reset is disabled; start taskvpc with --allow-reset"})
        try:
            signed = sigv4.verify(
                request, self.credentials.resolve, datetime.fromtimestamp(self.clock(), UTC)
            )
        except sigv4.AuthFailure as failure:
            return _json(403, {"message": f"reset refused: {failure.kind}"})
        if self.iam is not None and signed.access_key_id != self.settings.access_key_id:
            return _json(403, {"message": "reset refused: only the root key may reset"})
        await self.call(wipe, self.db)
        self.regions_ready.clear()  # the next request of a region lays its default VPC out again
        if self.iam is not None:
            self.iam.forget()  # users, keys and sessions are gone
        self.notifier.wake_all()  # waiting polls re-read and find their instance gone
        return _json(200, {"reset": True})


def _unserved(signing_name: str, request: HttpRequest, request_id: str) -> HttpResponse:
    """What a client of a service taskvpc does not serve sees: NotImplemented, in its SDK's error shape."""
    protocol = unserved_protocol(signing_name) or guess_protocol(request)
    error = ClientError("NotImplemented", f"taskvpc does not serve {_printable(signing_name)}", 501)
    return unserved_error(protocol, error, request_id)


def _printable(name: str) -> str:
    return name if name.isascii() and name.replace("-", "").isalnum() and len(name) <= 64 else "this service"


def _in_partition(principal: Principal | None, account_id: str, region: str) -> Principal:
    """The root user's ARN in the region's partition (``arn:aws-cn:iam::...:root`` in cn-north-1)."""
    if principal is None or principal.arn == root_principal_arn(principal.account_id):
        return Principal.root(principal.account_id if principal else account_id, region)
    return principal


def _new_uuid() -> str:
    return str(uuid.uuid4())


def _json(status: int, payload: dict[str, Any]) -> HttpResponse:
    return HttpResponse(status, orjson.dumps(payload), [("content-type", "application/json")])
