"""The errors AWS answers for a request it cannot authenticate, per wire protocol (pure).

``auth_error(failure, protocol, now)`` turns a :class:`~taskvpc.wire.sigv4.AuthFailure` into the
:class:`ClientError` (code, message, HTTP status) the real service would send. Protocols:

* ``json``  - ECS (JSON 1.1, the ``com.amazon.coral.service`` front door);
* ``ec2``   - EC2 query API, rendered as ``<Response><Errors><Error>``;
* ``query`` - STS and ELBv2, rendered as ``<ErrorResponse><Error>``.

The table is the one place these facts live. Each row carries where it was seen; rows marked UNCONFIRMED
were not seen for that exact service and are the most plausible choice from its siblings.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from taskvpc.domain.errors import ClientError
from taskvpc.wire.sigv4 import AuthFailure, AuthFailureKind, format_amz_date, window_text

Protocol = Literal["json", "ec2", "query"]

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)
INVALID_TOKEN = "The security token included in the request is invalid."
EXPIRED_TOKEN = "The security token included in the request is expired"

# Placeholder meaning "use the failure's own AWS text": the Signature expired/not yet current sentence for
# ``expired``, ``AuthFailure.aws_message`` for malformed headers and credential-scope mismatches.
_FROM_FAILURE = ""

# (protocol, kind) -> (code, message, HTTP status)
AUTH_ERRORS: dict[tuple[Protocol, AuthFailureKind], tuple[str, str, int]] = {
    # ---- JSON 1.1 (ECS) ----------------------------------------------------------------------------
    # CloudWatch Events (JSON 1.1, same coral front door): "StatusCode: 400 ... api error
    # MissingAuthenticationTokenException: Missing Authentication Token" (aws-sdk-go-v2 user report, code
    # search "MissingAuthenticationTokenException: Missing"); Cognito (JSON 1.1) says the same text
    # (aws/aws-aspnet-cognito-identity-provider#66). DynamoDB (JSON 1.0) instead says "Request is missing
    # Authentication Token" (mhart/dynalite). UNCONFIRMED for ECS itself; 400, not API Gateway's 403.
    ("json", "missing"): ("MissingAuthenticationTokenException", "Missing Authentication Token", 400),
    # ecs-cli against ECS: "UnrecognizedClientException: The security token included in the request is
    # invalid. status code: 400" (aws-azure-login/aws-azure-login#37); ECR and Cognito also 400.
    ("json", "unknown_key"): ("UnrecognizedClientException", INVALID_TOKEN, 400),
    # ECS agent's DiscoverPollEndpoint: "InvalidSignatureException: ... status code: 400"
    # (aws/amazon-ecs-agent#1513); DynamoDB capture with the same message, 400 (dynalite, code search).
    ("json", "bad_signature"): ("InvalidSignatureException", SIGNATURE_MISMATCH, 400),
    # ECS: "InvalidSignatureException: Signature not yet current: 20180809T190901Z is still later than
    # 20180809T190834Z (20180809T190334Z + 5 min.) status code: 400" (aws/amazon-ecs-agent#1513);
    # "Signature expired: ... (20191210T034404Z - 5 min.)" from ECS DescribeServices (fabfuel/ecs-deploy#126).
    ("json", "expired"): ("InvalidSignatureException", _FROM_FAILURE, 400),
    # Message texts from dynalite (recorded against DynamoDB): "Authorization header requires 'Credential'
    # parameter. ... Authorization=<header>", "Credential must have exactly 5 slash-delimited elements, ...".
    # UNCONFIRMED for ECS.
    ("json", "malformed"): ("IncompleteSignatureException", _FROM_FAILURE, 400),
    # Temporary credentials past their expiry: "ExpiredTokenException: The security token included in the
    # request is expired" (hashicorp/terraform-provider-aws#32809, EKS, which said 403; aws/aws-sdk-go#253
    # names the code). Coral JSON services answer their client faults with 400: status UNCONFIRMED for ECS.
    ("json", "expired_token"): ("ExpiredTokenException", EXPIRED_TOKEN, 400),
    # ---- EC2 query ---------------------------------------------------------------------------------
    # Unsigned GET ec2.us-east-1.amazonaws.com/?Action=DescribeInstances: "HTTP 400 ... <Code>MissingParameter
    # </Code><Message>The request must contain the parameter AWSAccessKeyId</Message>" (observed capture found
    # by code search; also sverch's blog, curl through a proxy).
    ("ec2", "missing"): ("MissingParameter", "The request must contain the parameter AWSAccessKeyId", 400),
    # "<Code>AuthFailure</Code><Message>AWS was not able to validate the provided access credentials
    # </Message>" with 401 (hashicorp/terraform#17273, ansible/ansible#5647, aws/aws-sdk-java#2508).
    ("ec2", "unknown_key"): (
        "AuthFailure",
        "AWS was not able to validate the provided access credentials",
        401,
    ),
    # Modern EC2 answers a wrong signature/scope with the same AuthFailure 401 (aws/aws-sdk-java-v2#2981:
    # upper-case region in the scope; javaquery/Examples#4: wrong host signed). Before ~2015 it sent
    # SignatureDoesNotMatch 403 (mitchellh/vagrant-aws#138, aws/aws-cli#134). Current behaviour chosen.
    ("ec2", "bad_signature"): (
        "AuthFailure",
        "AWS was not able to validate the provided access credentials",
        401,
    ),
    # "Request has expired. (Status Code: 400; Error Code: RequestExpired)" (aws/aws-sdk-java#1443,
    # aws/aws-sdk-go-v2#1674); EC2 CommonErrors: RequestExpired covers skew > 15 min either way and expired
    # presigned URLs (docs.aws.amazon.com/AWSEC2/latest/APIReference/CommonErrors.html).
    ("ec2", "expired"): ("RequestExpired", "Request has expired.", 400),
    # EC2 CommonErrors lists IncompleteSignature, 400. Message text UNCONFIRMED for EC2 (coral wording).
    ("ec2", "malformed"): ("IncompleteSignature", _FROM_FAILURE, 400),
    # EC2 answers expired session credentials as an expired request: "An error occurred (RequestExpired)
    # when calling the DescribeTags operation: Request has expired." (99designs/aws-vault#394, expired
    # credential_process session; aws/aws-sdk-go-v2#1674 after SSO).
    ("ec2", "expired_token"): ("RequestExpired", "Request has expired.", 400),
    # ---- query with <ErrorResponse> (STS, ELBv2) ---------------------------------------------------
    # STS: HTTP 403, <Type>Sender</Type><Code>MissingAuthenticationToken</Code><Message>Request is missing
    # Authentication Token</Message> (amzn/selling-partner-api-docs#3081); CloudWatch the same. ELBv2 UNCONFIRMED.
    ("query", "missing"): ("MissingAuthenticationToken", "Request is missing Authentication Token", 403),
    # "An error occurred (InvalidClientTokenId) when calling the GetCallerIdentity operation: The security
    # token included in the request is invalid." (many CLI transcripts); 403 per the STS/IAM CommonErrors page.
    ("query", "unknown_key"): ("InvalidClientTokenId", INVALID_TOKEN, 403),
    # STS/SQS/IAM SignatureDoesNotMatch, 403 (aws/aws-sdk-ruby#374 for SQS; brendanhay/amazonka#66).
    ("query", "bad_signature"): ("SignatureDoesNotMatch", SIGNATURE_MISMATCH, 403),
    # STS: "SignatureDoesNotMatch: Signature expired: 20200706T195306Z is now earlier than 20200707T071347Z
    # (20200707T072847Z - 15 min.)" (terraform sts:GetCallerIdentity transcript); 403 per
    # scratchstack-aws-signature's tests. Status UNCONFIRMED by capture.
    ("query", "expired"): ("SignatureDoesNotMatch", _FROM_FAILURE, 403),
    # IncompleteSignature, 400 (STS/IAM CommonErrors); text as for JSON. UNCONFIRMED by capture.
    ("query", "malformed"): ("IncompleteSignature", _FROM_FAILURE, 400),
    # "ExpiredToken: The security token included in the request is expired" with "Forbidden" (403) from an
    # STS-family query API (miasma-rb/miasma#23, mapbox/ecs-watchbot#61; IAM CreateRole in
    # aws-samples/aws-iot-twinmaker-samples#147).
    ("query", "expired_token"): ("ExpiredToken", EXPIRED_TOKEN, 403),
}


def skew_message(signed_at: datetime, now: datetime, window: timedelta, *, future: bool) -> str:
    """AWS's clock-skew sentence, e.g. ``Signature expired: 20231010T000000Z is now earlier than
    20231010T001500Z (20231010T003000Z - 15 min.)`` or ``Signature not yet current: ... is still later
    than ... (... + 15 min.)``. For presigned URLs ``window`` is ``X-Amz-Expires`` (UNCONFIRMED: non-S3
    services were seen to ignore X-Amz-Expires and apply only the skew window, aws/aws-sdk-go#2167)."""
    if future:
        return (
            f"Signature not yet current: {format_amz_date(signed_at)} is still later than "
            f"{format_amz_date(now + window)} ({format_amz_date(now)} + {window_text(window)}.)"
        )
    return (
        f"Signature expired: {format_amz_date(signed_at)} is now earlier than "
        f"{format_amz_date(now - window)} ({format_amz_date(now)} - {window_text(window)}.)"
    )


_PROTOCOLS: dict[str, Protocol] = {"json": "json", "ec2": "ec2", "query": "query"}


def auth_error(failure: AuthFailure, protocol: str, now: datetime) -> ClientError:
    """The :class:`ClientError` the real service returns for ``failure`` under ``protocol``."""
    proto = _PROTOCOLS.get(protocol)
    if proto is None:
        raise ValueError(f"unknown protocol {protocol!r}; expected 'json', 'ec2' or 'query'")
    code, message, status = AUTH_ERRORS[(proto, failure.kind)]
    if message == _FROM_FAILURE:
        if failure.kind == "expired" and failure.signed_at is not None and failure.window is not None:
            message = skew_message(failure.signed_at, _as_utc(now), failure.window, future=failure.future)
        else:
            message = failure.aws_message or failure.detail
    elif failure.kind == "bad_signature" and proto != "ec2" and failure.aws_message is not None:
        # Coral services name the scope problem ("Credential should be scoped to a valid region, ...");
        # EC2 answers every signature problem with the one AuthFailure sentence.
        message = failure.aws_message
    return ClientError(code, message, status)


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
