"""AWS Signature Version 4: a pure verifier, plus the signing helpers tests and benchmarks use.

No I/O, standard library only. The caller supplies the buffered request, a secret lookup and the clock:

    identity = verify(request, credentials.resolve, now=clock())

Canonicalisation follows what botocore's ``SigV4Auth`` / ``SigV4QueryAuth`` sign for non-S3 services, so
anything the real ``aws`` CLI or boto3 sends verifies byte for byte:

* path: dot segments and empty segments removed (``botocore.utils.remove_dot_segments``), then the *raw*
  (already percent-encoded) path is percent-encoded once more with ``/`` and ``~`` kept: the double encoding
  AWS specifies for every service but S3;
* query: each ``key=value`` pair is decoded and re-encoded with the RFC 3986 unreserved set (``-_.~``),
  then pairs are sorted by encoded key, then encoded value; ``X-Amz-Signature`` is left out (presigned);
* headers: only the names in ``SignedHeaders``, in that order, each value trimmed with runs of whitespace
  collapsed to one space; repeated headers arrive already joined by ``,`` (see ``HttpRequest``);
* payload: ``x-amz-content-sha256`` when present (it must equal the body's SHA-256; ``UNSIGNED-PAYLOAD``
  only for presigned requests), else the SHA-256 of the body.

Decisions worth knowing:

* The order of checks follows the AWS front door as dynalite (mhart/dynalite, tested against DynamoDB)
  records it: malformed auth, then the time window, then the credential scope, then the key, then the
  signature, then any session token.
* The key lookup answers a :class:`SigningKey` (secret, session token, expiry) or, for a long-term key,
  just its secret. A temporary key (``ASIA...``) must come with its session token (``X-Amz-Security-Token``,
  compared in constant time); a missing or wrong token, or a token sent with a long-term key, fails as
  ``unknown_key``: AWS answers a bad token exactly like an unknown key (``UnrecognizedClientException`` /
  ``InvalidClientTokenId``). A temporary key past its expiry fails as ``expired_token`` (``ExpiredToken``).
* Auth parameters may also arrive in an ``application/x-www-form-urlencoded`` body (query protocol): the
  body's pairs are then canonicalised as query parameters and the payload is the empty string, which is
  what ``SigV4QueryAuth`` signs when it moves a form body into the URL.
* Time: header form is refused when its ``X-Amz-Date`` (or ``Date``) is more than ``max_skew`` away from
  ``now``; presigned form when ``now > X-Amz-Date + X-Amz-Expires`` or ``X-Amz-Date`` is more than
  ``max_skew`` in the future. Real ECS uses a 5 minute window (see ``ECS_MAX_SKEW``); most query services 15.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Literal, Protocol
from urllib.parse import quote, unquote, unquote_to_bytes, urlsplit, urlunsplit

from taskvpc.wire.http import HttpRequest

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

DEFAULT_MAX_SKEW = timedelta(minutes=15)
# Real ECS refuses at 5 minutes: "Signature not yet current: ... (20180809T190334Z + 5 min.)", HTTP 400,
# from DiscoverPollEndpoint (aws/amazon-ecs-agent#1513) and "... - 5 min." from DescribeServices
# (fabfuel/ecs-deploy#126). STS, SQS, DynamoDB and ECR say "15 min.".
ECS_MAX_SKEW = timedelta(minutes=5)
MAX_PRESIGN_EXPIRES = 604800  # seven days, the SigV4 maximum

# Headers botocore never signs (botocore.auth.SIGNED_HEADERS_BLACKLIST); used by the signing helpers.
UNSIGNED_HEADERS = frozenset(
    {
        "authorization",
        "baggage",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "traceparent",
        "tracestate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)

AuthFailureKind = Literal["missing", "unknown_key", "bad_signature", "expired", "expired_token", "malformed"]


class SigningKey(Protocol):
    """What verification needs to know about an access key (the control plane's credential records)."""

    @property
    def secret(self) -> str: ...

    @property
    def session_token(self) -> str | None:
        """Set for temporary credentials: the request must carry exactly this token."""
        ...

    @property
    def expires_at(self) -> datetime | None:
        """When temporary credentials stop working; None for long-term keys."""
        ...


# Access key id -> its key, or None if unknown. A bare string is a long-term key's secret.
KeyLookup = Callable[[str], "SigningKey | str | None"]

SIGNATURE_MISMATCH_DETAIL = "signature does not match"


@dataclass(frozen=True, slots=True)
class CredentialScope:
    access_key_id: str
    date: str  # YYYYMMDD
    region: str
    service: str

    @property
    def scope(self) -> str:
        """``date/region/service/aws4_request``: the third line of the string to sign."""
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


@dataclass(frozen=True, slots=True)
class SignedIdentity:
    access_key_id: str
    region: str
    service: str
    signed_at: datetime
    presigned: bool


class AuthFailure(Exception):
    """Why a request was refused. ``auth_errors.auth_error`` turns it into the protocol's AWS error.

    ``detail`` is for logs. ``aws_message``, when set, is the exact text AWS puts in the error message for
    this case (malformed headers, scope mismatches); otherwise the protocol's standard message is used.
    For ``expired``: ``signed_at`` is the request's timestamp, ``window`` the allowed skew (or the
    presigned ``X-Amz-Expires``), ``future`` whether the timestamp is ahead of the server clock.
    """

    def __init__(
        self,
        kind: AuthFailureKind,
        detail: str,
        *,
        aws_message: str | None = None,
        signed_at: datetime | None = None,
        window: timedelta | None = None,
        future: bool = False,
        presigned: bool = False,
    ) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind: AuthFailureKind = kind
        self.detail = detail
        self.aws_message = aws_message
        self.signed_at = signed_at
        self.window = window
        self.future = future
        self.presigned = presigned

    def __repr__(self) -> str:
        return f"AuthFailure({self.kind!r}, {self.detail!r})"


# --------------------------------------------------------------------------------------------------
# Canonical request pieces (shared by the verifier and the signing helpers)


@lru_cache(maxsize=1024)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")."""
    k_date = hmac.digest(("AWS4" + secret).encode(), date.encode(), "sha256")
    k_region = hmac.digest(k_date, region.encode(), "sha256")
    k_service = hmac.digest(k_region, service.encode(), "sha256")
    return hmac.digest(k_service, TERMINATOR.encode(), "sha256")


def remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 plus AWS's removal of empty segments; identical to botocore's helper."""
    if not path:
        return "/"
    output: list[str] = []
    for segment in path.split("/"):
        if not segment or segment == ".":
            continue
        if segment == "..":
            if output:
                output.pop()
        else:
            output.append(segment)
    first = "/" if path[0] == "/" else ""
    last = "/" if path[-1] == "/" and output else ""
    return first + "/".join(output) + last


def canonical_uri(path: str) -> str:
    """Normalise then percent-encode the raw path again (the non-S3 double encoding)."""
    if path == "/" or not path:
        return "/"
    return quote(remove_dot_segments(path), safe="/~")


def _aws_encode(raw: str) -> str:
    # Decode whatever the client percent-encoded, then encode with the unreserved set only. ``quote``
    # always keeps letters, digits and "_.-~", which is exactly RFC 3986's unreserved set. A raw ``+`` is
    # a space, as the form decoder (``query.parse_form``) reads it: the canonical form must name exactly
    # the value that will be decoded, or ``mall+eable`` and ``mall%2Beable`` (two different values) would
    # verify under one signature. Signers never send a raw ``+`` (botocore writes ``%20`` and ``%2B``).
    return quote(unquote_to_bytes(raw.replace("+", " ")), safe="")


def _query_pairs(query: str) -> list[tuple[str, str]]:
    """Raw ``key=value`` pairs, still percent-encoded; a pair without ``=`` has an empty value."""
    pairs = []
    for part in query.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((key, value))
    return pairs


def canonical_query_string(pairs: Iterable[tuple[str, str]], *, drop_signature: bool = False) -> str:
    """Sorted, AWS-encoded ``k=v&...`` from raw pairs; ``X-Amz-Signature`` dropped for presigned requests."""
    encoded = []
    for key, value in pairs:
        ekey = _aws_encode(key)
        if drop_signature and ekey == "X-Amz-Signature":
            continue
        encoded.append((ekey, _aws_encode(value)))
    encoded.sort()
    return "&".join(f"{k}={v}" for k, v in encoded)


def canonical_headers(headers: Mapping[str, str], signed_headers: Iterable[str]) -> str:
    """``name:value\\n`` for each signed header; values trimmed, inner whitespace runs collapsed."""
    lines = []
    for name in signed_headers:
        value = headers.get(name, "")
        lines.append(f"{name}:{' '.join(value.split())}\n")
    return "".join(lines)


def canonical_request(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: list[str],
    payload_hash: str,
    *,
    extra_query_pairs: Iterable[tuple[str, str]] = (),
    presigned: bool = False,
) -> str:
    """The SigV4 canonical request for a buffered request (``query`` raw, ``headers`` lower-case)."""
    pairs = _query_pairs(query)
    pairs.extend(extra_query_pairs)
    return "\n".join(
        (
            method.upper(),
            canonical_uri(path),
            canonical_query_string(pairs, drop_signature=presigned),
            canonical_headers(headers, signed_headers),
            ";".join(signed_headers),
            payload_hash,
        )
    )


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def compute_signature(secret: str, scope: CredentialScope, amz_date: str, canonical: str) -> str:
    key = signing_key(secret, scope.date, scope.region, scope.service)
    return hmac.new(
        key, string_to_sign(amz_date, scope.scope, canonical).encode(), hashlib.sha256
    ).hexdigest()


def format_amz_date(moment: datetime) -> str:
    return _as_utc(moment).strftime(AMZ_DATE_FORMAT)


def parse_amz_date(value: str) -> datetime | None:
    """``YYYYMMDDTHHMMSSZ`` (ISO 8601 basic format) to an aware UTC datetime; None if malformed."""
    if len(value) != 16 or value[8] != "T" or value[15] != "Z":
        return None
    digits = value[:8] + value[9:15]
    if not digits.isascii() or not digits.isdigit():
        return None
    try:
        return datetime(
            int(value[0:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[9:11]),
            int(value[11:13]),
            int(value[13:15]),
            tzinfo=UTC,
        )
    except ValueError:
        return None


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --------------------------------------------------------------------------------------------------
# Credential scope (cheap; no verification)


def _parse_credential(credential: str) -> CredentialScope | None:
    parts = credential.split("/")
    if len(parts) != 5 or not parts[0]:
        return None
    return CredentialScope(parts[0], parts[1], parts[2], parts[3])


def _is_form(headers: Mapping[str, str]) -> bool:
    return (
        headers.get("content-type", "").split(";", 1)[0].strip().lower()
        == "application/x-www-form-urlencoded"
    )


def _query_param(query: str, name: str) -> str | None:
    """Decoded value of the first ``name=`` parameter in a raw query string, without parsing the rest."""
    if name not in query:
        return None
    found = re.search(f"(?:^|&){re.escape(name)}=([^&]*)", query)
    return unquote(found.group(1)) if found else None


# The auth parameters of a presigned request: found by one scan, so a large unsigned form body is not
# split into pairs before the key and the time window are known to be good.
_AUTH_PARAM = re.compile(r"(?:^|&)(X-Amz-[A-Za-z0-9-]+)=([^&]*)")


def credential_scope(request: HttpRequest) -> CredentialScope | None:
    """The credential scope the request claims (Authorization header, query, or form body); None if absent.

    Nothing is verified: use it to route or to pick the signing region before calling :func:`verify`.
    """
    auth = request.headers.get("authorization")
    if auth is not None:
        start = auth.find("Credential=")
        if start < 0:
            return None
        end = auth.find(",", start)
        credential = auth[start + len("Credential=") : end if end >= 0 else len(auth)].strip()
        return _parse_credential(credential)
    value = _query_param(request.query_string, "X-Amz-Credential")
    if value is None and _is_form(request.headers) and b"X-Amz-Credential=" in request.body:
        value = _query_param(request.body.decode("utf-8", "replace"), "X-Amz-Credential")
    return _parse_credential(value) if value is not None else None


# --------------------------------------------------------------------------------------------------
# Verification


@dataclass(frozen=True, slots=True)
class _Claim:
    """What the request says about its own signature, gathered before any cryptography."""

    credential: str
    signed_headers: list[str]
    signature: str
    amz_date: str  # as it goes into the string to sign
    signed_at: datetime
    presigned: bool
    expires: int | None
    form_body: str | None  # form-body auth: the body's pairs count as query parameters
    session_token: str | None  # X-Amz-Security-Token as sent, if any


def _malformed(message: str, *, presigned: bool = False) -> AuthFailure:
    return AuthFailure("malformed", message, aws_message=message, presigned=presigned)


def _parse_header_auth(request: HttpRequest, auth: str) -> _Claim:
    stripped = auth.strip()
    algorithm, _, rest = stripped.partition(" ")
    if algorithm != ALGORITHM:
        if not algorithm.startswith("AWS4-"):
            raise AuthFailure("missing", f"Authorization header is not SigV4: {algorithm[:20]!r}")
        raise _malformed(f"Unsupported AWS 'algorithm': '{algorithm}' (only AWS4-HMAC-SHA256 for now).")
    params: dict[str, str] = {}
    for item in rest.split(","):
        item = item.strip()
        if not item:
            continue
        key, eq, value = item.partition("=")
        if not eq:
            raise _malformed(
                f"'{key}' not a valid key=value pair (missing equal-sign) in Authorization header: '{auth}'."
            )
        params[key.strip()] = value.strip()
    missing = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if not params.get(name)
    ]
    headers = request.headers
    amz_date = headers.get("x-amz-date")
    http_date = headers.get("date")
    if amz_date is None and http_date is None:
        missing.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    if missing:
        raise _malformed(" ".join(missing) + f" Authorization={auth}")
    if amz_date is not None:
        signed_at = parse_amz_date(amz_date)
        if signed_at is None:
            raise _malformed(
                f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601"
            )
    else:
        assert http_date is not None
        try:
            signed_at = _as_utc(parsedate_to_datetime(http_date))
        except (TypeError, ValueError, IndexError, OverflowError):  # year 9999 at -2359 overflows
            raise _malformed(f"Date must be in RFC 1123 format. Got '{http_date}'.") from None
        amz_date = format_amz_date(signed_at)
    return _Claim(
        credential=params["Credential"],
        signed_headers=params["SignedHeaders"].lower().split(";"),
        signature=params["Signature"],
        amz_date=amz_date,
        signed_at=signed_at,
        presigned=False,
        expires=None,
        form_body=None,
        session_token=headers.get("x-amz-security-token"),
    )


_PRESIGN_REQUIRED = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-SignedHeaders",
    "X-Amz-Date",
)


def _parse_presigned(query: str, form_body: str | None) -> _Claim:
    params: dict[str, str] = {}
    for text in (query, form_body or ""):
        for found in _AUTH_PARAM.finditer(text):
            params.setdefault(found.group(1), unquote(found.group(2)))
    missing = [
        f"AWS query-string parameters must include '{name}'."
        for name in _PRESIGN_REQUIRED
        if not params.get(name)
    ]
    if missing:
        raise _malformed(" ".join(missing) + " Re-examine the query-string parameters.", presigned=True)
    algorithm = params["X-Amz-Algorithm"]
    if algorithm != ALGORITHM:
        raise _malformed(
            f"Unsupported AWS 'algorithm': '{algorithm}' (only AWS4-HMAC-SHA256 for now).", presigned=True
        )
    amz_date = params["X-Amz-Date"]
    signed_at = parse_amz_date(amz_date)
    if signed_at is None:
        raise _malformed(
            f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601",
            presigned=True,
        )
    expires: int | None = None
    raw_expires = params.get("X-Amz-Expires")
    if raw_expires is not None:
        if (
            not raw_expires.isascii()
            or not raw_expires.isdigit()
            or len(raw_expires) > len(str(MAX_PRESIGN_EXPIRES))  # int() of 4,300+ digits raises
            or not 0 < int(raw_expires) <= MAX_PRESIGN_EXPIRES
        ):
            raise _malformed(
                "X-Amz-Expires must be a whole number of seconds between 1 and "
                f"{MAX_PRESIGN_EXPIRES}; got '{raw_expires}'.",
                presigned=True,
            )
        expires = int(raw_expires)
    return _Claim(
        credential=params["X-Amz-Credential"],
        signed_headers=params["X-Amz-SignedHeaders"].lower().split(";"),
        signature=params["X-Amz-Signature"],
        amz_date=amz_date,
        signed_at=signed_at,
        presigned=True,
        expires=expires,
        form_body=form_body,
        session_token=params.get("X-Amz-Security-Token"),
    )


def _claim(request: HttpRequest) -> _Claim:
    auth = request.headers.get("authorization")
    query = request.query_string
    query_auth = "X-Amz-Algorithm=" in query
    if auth is not None:
        if query_auth:
            raise _malformed(
                "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header."
            )
        return _parse_header_auth(request, auth)
    if query_auth:
        return _parse_presigned(query, None)
    if _is_form(request.headers) and b"X-Amz-Algorithm=" in request.body:
        try:
            form_body = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise _malformed("Form body carrying auth parameters is not UTF-8.", presigned=True) from None
        return _parse_presigned(query, form_body)
    raise AuthFailure("missing", "no Authorization header and no X-Amz-Algorithm parameter")


def window_text(window: timedelta) -> str:
    """How AWS spells a window in its skew messages: ``15 min`` (or ``90 sec`` when not whole minutes)."""
    seconds = int(window.total_seconds())
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} sec"


def _check_time(claim: _Claim, now: datetime, max_skew: timedelta) -> None:
    signed_at = claim.signed_at
    if signed_at > now + max_skew:
        raise AuthFailure(
            "expired",
            f"{claim.amz_date} is more than {window_text(max_skew)} ahead of {format_amz_date(now)}",
            signed_at=signed_at,
            window=max_skew,
            future=True,
            presigned=claim.presigned,
        )
    window = timedelta(seconds=claim.expires) if claim.expires is not None else max_skew
    if signed_at < now - window:
        raise AuthFailure(
            "expired",
            f"{claim.amz_date} is more than {window_text(window)} behind {format_amz_date(now)}",
            signed_at=signed_at,
            window=window,
            future=False,
            presigned=claim.presigned,
        )


def _check_scope(
    claim: _Claim,
    expected_region: str | None,
    expected_service: str | None,
    valid_region: Callable[[str], bool] | None,
) -> CredentialScope:
    parts = claim.credential.split("/")
    if len(parts) != 5 or not parts[0]:
        raise _malformed(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, "
            f"got '{claim.credential}'",
            presigned=claim.presigned,
        )
    problems = []
    if (expected_region is not None and parts[2] != expected_region) or (
        valid_region is not None and not valid_region(parts[2])
    ):
        problems.append(f"Credential should be scoped to a valid region, not '{parts[2]}'.")
    if expected_service is not None and parts[3] != expected_service:
        problems.append(f"Credential should be scoped to correct service: '{expected_service}'.")
    if parts[4] != TERMINATOR:
        problems.append(
            f"Credential should be scoped with a valid terminator: 'aws4_request', not '{parts[4]}'."
        )
    if parts[1] != claim.amz_date[:8]:
        problems.append(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{parts[1]}' != '{claim.amz_date[:8]}', from '{claim.amz_date}'."
        )
    if problems:
        message = " ".join(problems)
        raise AuthFailure("bad_signature", message, aws_message=message, presigned=claim.presigned)
    if "host" not in claim.signed_headers:
        message = "'Host' must be a 'SignedHeader' in the AWS Authorization."
        raise AuthFailure("bad_signature", message, aws_message=message, presigned=claim.presigned)
    return CredentialScope(parts[0], parts[1], parts[2], parts[3])


def _check_headers_signed(request: HttpRequest, claim: _Claim) -> None:
    """Every ``x-amz-*`` header sent (``X-Amz-Target`` names the operation) must be covered by the
    signature: otherwise anyone holding a signed request could re-point it at another operation."""
    signed = set(claim.signed_headers)
    unsigned = sorted(name for name in request.headers if name.startswith("x-amz-") and name not in signed)
    if unsigned:
        # S3's sentence for this case; the coral services' own text is UNCONFIRMED.
        message = "There were headers present in the request which were not signed"
        raise AuthFailure(
            "bad_signature",
            f"{message}: {', '.join(unsigned)}",
            aws_message=message,
            presigned=claim.presigned,
        )


def _payload_hash(request: HttpRequest, claim: _Claim) -> str:
    if claim.form_body is not None:  # auth parameters in the form body: it is the query, the payload empty
        return EMPTY_SHA256
    declared = request.headers.get("x-amz-content-sha256")
    if declared is None and claim.presigned:
        declared = _query_param(request.query_string, "X-Amz-Content-Sha256")
    if declared is None:
        return hashlib.sha256(request.body).hexdigest()
    if declared == UNSIGNED_PAYLOAD:
        if claim.presigned:
            return declared
        raise AuthFailure(
            "bad_signature", "UNSIGNED-PAYLOAD is only accepted on presigned requests", presigned=False
        )
    if declared.lower() != hashlib.sha256(request.body).hexdigest():
        raise AuthFailure(
            "bad_signature",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
            presigned=claim.presigned,
        )
    return declared


def verify(
    request: HttpRequest,
    lookup: KeyLookup,
    now: datetime,
    *,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
    region: str | None = None,
    service: str | None = None,
    valid_region: Callable[[str], bool] | None = None,
) -> SignedIdentity:
    """Verify a SigV4 request (header or presigned form); raise :class:`AuthFailure` if it does not hold.

    ``lookup(access_key_id)`` returns the key (or a long-term key's secret), None if unknown. ``region``/``service``,
    when given, must match the credential scope (AWS's "Credential should be scoped ..." errors), and so
    must ``valid_region(scope region)`` when given. Nothing of the body is parsed before the signature
    holds, except the pairs of a form body that itself carries the presigned parameters.
    """
    now = _as_utc(now)
    claim = _claim(request)
    _check_time(claim, now, max_skew)
    scope = _check_scope(claim, region, service, valid_region)
    _check_headers_signed(request, claim)
    key = lookup(scope.access_key_id)
    if key is None:
        raise AuthFailure(
            "unknown_key", f"unknown access key {scope.access_key_id!r}", presigned=claim.presigned
        )
    secret = key if isinstance(key, str) else key.secret
    payload_hash = _payload_hash(request, claim)
    canonical = canonical_request(
        request.method,
        request.path,
        request.query_string,
        request.headers,
        claim.signed_headers,
        payload_hash,
        extra_query_pairs=_query_pairs(claim.form_body) if claim.form_body is not None else (),
        presigned=claim.presigned,
    )
    expected = compute_signature(secret, scope, claim.amz_date, canonical)
    if not hmac.compare_digest(expected.encode(), claim.signature.encode("utf-8", "replace")):
        raise AuthFailure("bad_signature", SIGNATURE_MISMATCH_DETAIL, presigned=claim.presigned)
    if not isinstance(key, str):
        _check_session(key, claim, now)
    elif claim.session_token is not None:
        raise AuthFailure(
            "unknown_key", "a session token sent with a long-term key", presigned=claim.presigned
        )
    return SignedIdentity(scope.access_key_id, scope.region, scope.service, claim.signed_at, claim.presigned)


def _check_session(key: SigningKey, claim: _Claim, now: datetime) -> None:
    expected = key.session_token
    sent = claim.session_token
    if expected is None:
        if sent is not None:
            raise AuthFailure(
                "unknown_key", "a session token sent with a long-term key", presigned=claim.presigned
            )
    elif sent is None or not hmac.compare_digest(expected.encode(), sent.encode("utf-8", "replace")):
        raise AuthFailure("unknown_key", "missing or wrong session token", presigned=claim.presigned)
    if key.expires_at is not None and now >= _as_utc(key.expires_at):
        raise AuthFailure(
            "expired_token",
            f"credentials expired at {format_amz_date(key.expires_at)}",
            presigned=claim.presigned,
        )


# --------------------------------------------------------------------------------------------------
# Signing helpers (clients of our own API, tests, the benchmark)


def _headers_to_sign(headers: Mapping[str, str]) -> list[str]:
    if "host" not in headers:
        raise ValueError("a 'host' header is required to sign a request")
    return sorted(name for name in headers if name not in UNSIGNED_HEADERS)


def sign_headers(
    request: HttpRequest,
    *,
    access_key_id: str,
    secret: str,
    region: str,
    service: str,
    now: datetime,
    session_token: str | None = None,
) -> HttpRequest:
    """Return ``request`` with ``x-amz-date`` and ``authorization`` added, signed like ``SigV4Auth``.

    Every header present (lower-case keys, ``host`` required) is signed, except those botocore never signs.
    """
    amz_date = format_amz_date(now)
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() != "authorization"}
    headers["x-amz-date"] = amz_date
    if session_token is not None:
        headers["x-amz-security-token"] = session_token
    signed = _headers_to_sign(headers)
    payload_hash = headers.get("x-amz-content-sha256") or hashlib.sha256(request.body).hexdigest()
    scope = CredentialScope(access_key_id, amz_date[:8], region, service)
    canonical = canonical_request(
        request.method, request.path, request.query_string, headers, signed, payload_hash
    )
    signature = compute_signature(secret, scope, amz_date, canonical)
    headers["authorization"] = (
        f"{ALGORITHM} Credential={access_key_id}/{scope.scope}, "
        f"SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    return replace(request, headers=headers)


def presign(
    request: HttpRequest,
    *,
    access_key_id: str,
    secret: str,
    region: str,
    service: str,
    now: datetime,
    expires: int = 3600,
    session_token: str | None = None,
) -> HttpRequest:
    """Return ``request`` with the presigned-URL parameters appended to its query string (``SigV4QueryAuth``)."""
    amz_date = format_amz_date(now)
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() != "authorization"}
    signed = _headers_to_sign(headers)
    scope = CredentialScope(access_key_id, amz_date[:8], region, service)
    auth_params = [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{access_key_id}/{scope.scope}"),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", str(expires)),
        ("X-Amz-SignedHeaders", ";".join(signed)),
    ]
    if session_token is not None:
        auth_params.append(("X-Amz-Security-Token", session_token))
    encoded = "&".join(f"{_aws_encode(k)}={quote(v, safe='')}" for k, v in auth_params)
    query = f"{request.query_string}&{encoded}" if request.query_string else encoded
    payload_hash = hashlib.sha256(request.body).hexdigest()
    canonical = canonical_request(
        request.method, request.path, query, headers, signed, payload_hash, presigned=True
    )
    signature = compute_signature(secret, scope, amz_date, canonical)
    return replace(request, headers=headers, query_string=f"{query}&X-Amz-Signature={signature}")


def presign_url(
    url: str,
    *,
    access_key_id: str,
    secret: str,
    region: str,
    service: str,
    now: datetime,
    method: str = "GET",
    expires: int = 3600,
) -> str:
    """Presign a URL (only ``host`` signed), as ``SigV4QueryAuth`` does for a GET."""
    parts = urlsplit(url)
    request = HttpRequest(method, parts.path or "/", parts.query, {"host": parts.netloc})
    signed = presign(
        request,
        access_key_id=access_key_id,
        secret=secret,
        region=region,
        service=service,
        now=now,
        expires=expires,
    )
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", signed.query_string, parts.fragment))
