"""ELBv2's fixed facts, pure: ARNs and DNS names, per-type defaults, attribute tables, error texts.

Sources are noted at each value ("notes" = /work/shared/reference/elbv2-notes.md, which cites the ELB user
guides and botocore's model); ``# unconfirmed`` marks a text written by analogy with ELB's others.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence

from taskvpc.domain.errors import ClientError

ALB_PROTOCOLS = ("HTTP", "HTTPS")
NLB_PROTOCOLS = ("TCP", "UDP", "TLS", "TCP_UDP")
DEFAULT_RULE_PRIORITY = 50001  # sorts after every numbered rule (1-50000)

# Canonical hosted zones of ELB's DNS names, per region (ALB, NLB); other regions reuse us-east-1's.
_HOSTED_ZONES = {
    "us-east-1": ("Z35SXDOTRQ7X7K", "Z26RNL4JYFTOTI"),
    "us-east-2": ("Z3AADJGX6KTTL2", "ZLMOA37VPKANP"),
    "us-west-1": ("Z368ELLRRE2KJ0", "Z24FKFUX50B4VW"),
    "us-west-2": ("Z1H1FL5HABSF5", "Z18D5FSROUN65G"),
    "eu-west-1": ("Z32O12XQLNTSW2", "Z2IFOLAFXWLO4F"),
}


def error(code: str, message: str) -> ClientError:
    return ClientError(code, message)


def validation(message: str) -> ClientError:
    return ClientError("ValidationError", message)


def configuration(message: str) -> ClientError:
    return ClientError("InvalidConfigurationRequest", message)


# ---- names, ARNs, DNS -----------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?")


def check_lb_name(name: str) -> None:
    if len(name) > 32:
        # "LoadBalancer name cannot be longer than '32' characters" (CLI transcripts)
        raise validation("LoadBalancer name cannot be longer than '32' characters")
    if name.startswith("internal-"):
        raise validation("LoadBalancer name cannot start with 'internal-'")  # unconfirmed
    if not _NAME.fullmatch(name):
        # "LoadBalancer name cannot contain characters that are not letters, or digits or the dash."
        # (CLI transcripts quoting ELB); a leading/trailing hyphen: ELB's own sentence # unconfirmed
        if re.fullmatch(r"[A-Za-z0-9-]+", name):
            raise validation("LoadBalancer name cannot begin or end with '-' character")
        raise validation(
            "LoadBalancer name cannot contain characters that are not letters, or digits or the dash."
        )


def check_tg_name(name: str) -> None:
    if len(name) > 32:
        raise validation("Target group name cannot be longer than '32' characters")
    if not _NAME.fullmatch(name):
        if re.fullmatch(r"[A-Za-z0-9-]+", name):
            raise validation("Target group name cannot begin or end with '-' character")
        # "Target group name 'x_y' can only contain characters that are alphanumeric characters or hyphens(-)"
        raise validation(
            f"Target group name '{name}' can only contain characters that are alphanumeric characters or hyphens(-)"
        )


def lb_kind(lb_type: str) -> str:
    return "app" if lb_type == "application" else "net"


def lb_arn(region: str, account: str, lb_type: str, name: str, suffix: str) -> str:
    return f"arn:aws:elasticloadbalancing:{region}:{account}:loadbalancer/{lb_kind(lb_type)}/{name}/{suffix}"


def lb_path(arn: str) -> str:
    """``app/<name>/<id>`` of a load balancer ARN (what ENI descriptions and child ARNs carry)."""
    return arn.split(":loadbalancer/", 1)[1]


def tg_arn(region: str, account: str, name: str, suffix: str) -> str:
    return f"arn:aws:elasticloadbalancing:{region}:{account}:targetgroup/{name}/{suffix}"


def listener_arn(lb: str, suffix: str) -> str:
    return lb.replace(":loadbalancer/", ":listener/", 1) + f"/{suffix}"


def rule_arn(listener: str, suffix: str) -> str:
    return listener.replace(":listener/", ":listener-rule/", 1) + f"/{suffix}"


def dns_name(name: str, scheme: str, lb_type: str, region: str, suffix: str) -> str:
    """ALB ``<name>-<digits>.<region>.elb.amazonaws.com``; NLB ``<name>-<hex>.elb.<region>.amazonaws.com``."""
    prefix = "internal-" if scheme == "internal" else ""
    if lb_type == "application":
        return f"{prefix}{name}-{int(suffix[:8], 16)}.{region}.elb.amazonaws.com"
    return f"{prefix}{name}-{suffix}.elb.{region}.amazonaws.com"


def hosted_zone(region: str, lb_type: str) -> str:
    zones = _HOSTED_ZONES.get(region, _HOSTED_ZONES["us-east-1"])
    return zones[0] if lb_type == "application" else zones[1]


# ---- target groups: health-check defaults and attributes -------------------------------------------


def tg_is_alb(protocol: str | None) -> bool:
    return protocol in ALB_PROTOCOLS


# The target-group protocols each NLB listener protocol forwards to (ELB's listener/target-group pairing).
_NLB_PAIRS = {
    "TCP": ("TCP", "TCP_UDP"),
    "UDP": ("UDP", "TCP_UDP"),
    "TCP_UDP": ("TCP_UDP",),
    "TLS": ("TCP", "TLS"),
}


def nlb_pair_ok(listener_protocol: str, tg_protocol: str | None) -> bool:
    """Whether an NLB listener of ``listener_protocol`` may forward to a ``tg_protocol`` group (ALB: yes)."""
    allowed = _NLB_PAIRS.get(listener_protocol)
    return allowed is None or tg_protocol in allowed


def health_check_defaults(
    protocol: str | None, target_type: str, hc_protocol: str | None
) -> dict[str, object]:
    """The health-check settings a new target group gets (notes §2: ALB vs NLB columns)."""
    if target_type == "lambda":
        return {"HealthCheckEnabled": False}
    alb = tg_is_alb(protocol)
    # HealthCheckProtocol's default: HTTP for ALB target groups, TCP for NLB ones (botocore docs).
    check = hc_protocol or ("HTTP" if alb else "TCP")
    http_check = check in ("HTTP", "HTTPS")
    timeout = 5 if alb else 6 if check == "HTTP" else 10
    defaults: dict[str, object] = {
        "HealthCheckProtocol": check,
        "HealthCheckPort": "traffic-port",
        "HealthCheckEnabled": True,
        "HealthCheckIntervalSeconds": 30,
        "HealthCheckTimeoutSeconds": timeout,
        "HealthyThresholdCount": 5,
        "UnhealthyThresholdCount": 2,
    }
    if http_check:
        defaults["HealthCheckPath"] = "/"
        defaults["Matcher"] = {"HttpCode": "200" if alb else "200-399"}
    return defaults


def tg_attribute_defaults(protocol: str | None, target_type: str) -> dict[str, str]:
    """Target group attributes and their defaults per type (notes §2: preserve_client_ip per protocol)."""
    common = {"deregistration_delay.timeout_seconds": "300", "stickiness.enabled": "false"}
    if tg_is_alb(protocol):
        return {
            **common,
            "stickiness.type": "lb_cookie",
            "stickiness.lb_cookie.duration_seconds": "86400",
            "stickiness.app_cookie.cookie_name": "",
            "stickiness.app_cookie.duration_seconds": "86400",
            "slow_start.duration_seconds": "0",
            "load_balancing.algorithm.type": "round_robin",
            "load_balancing.algorithm.anomaly_mitigation": "off",
            "load_balancing.cross_zone.enabled": "use_load_balancer_configuration",
        }
    preserve = target_type == "instance" or protocol in ("UDP", "TCP_UDP")
    return {
        **common,
        "stickiness.type": "source_ip",
        "deregistration_delay.connection_termination.enabled": "false",
        "preserve_client_ip.enabled": "true" if preserve else "false",
        "proxy_protocol_v2.enabled": "false",
        "target_health_state.unhealthy.connection_termination.enabled": "true",
        "load_balancing.cross_zone.enabled": "use_load_balancer_configuration",
    }


_BOOL = ("true", "false")


def check_tg_attribute(key: str, value: str, allowed: Mapping[str, str]) -> None:
    if key not in allowed:
        raise validation(f"Target group attribute key '{key}' is not recognized")  # unconfirmed
    bad = validation(f"Target group attribute value '{value}' is not valid for key '{key}'")  # unconfirmed
    if key.endswith(".enabled") and key != "load_balancing.cross_zone.enabled" and value not in _BOOL:
        raise bad
    ranges = {
        "deregistration_delay.timeout_seconds": (0, 3600),
        "stickiness.lb_cookie.duration_seconds": (1, 604800),
        "stickiness.app_cookie.duration_seconds": (1, 604800),
    }
    if key in ranges:
        low, high = ranges[key]
        if not value.isdigit() or not low <= int(value) <= high:
            raise bad
    if key == "slow_start.duration_seconds" and (
        not value.isdigit() or not (value == "0" or 30 <= int(value) <= 900)
    ):
        raise bad
    if key == "stickiness.type" and value not in (
        "lb_cookie",
        "app_cookie",
        "source_ip",
        "source_ip_dest_ip",
    ):
        raise bad
    if key == "load_balancing.algorithm.type" and value not in (
        "round_robin",
        "least_outstanding_requests",
        "weighted_random",
    ):
        raise bad


def lb_attribute_defaults(lb_type: str) -> dict[str, str]:
    common = {
        "deletion_protection.enabled": "false",
        "access_logs.s3.enabled": "false",
        "access_logs.s3.bucket": "",
        "access_logs.s3.prefix": "",
    }
    if lb_type == "application":
        return {
            **common,
            "idle_timeout.timeout_seconds": "60",
            "routing.http2.enabled": "true",
            "routing.http.drop_invalid_header_fields.enabled": "false",
            "routing.http.desync_mitigation_mode": "defensive",
            "routing.http.preserve_host_header.enabled": "false",
            "routing.http.xff_client_port.enabled": "false",
            "routing.http.xff_header_processing.mode": "append",
            "routing.http.x_amzn_tls_version_and_cipher_suite.enabled": "false",
            "waf.fail_open.enabled": "false",
            "client_keep_alive.seconds": "3600",
        }
    return {
        **common,
        "load_balancing.cross_zone.enabled": "false",
        "dns_record.client_routing_policy": "any_availability_zone",
    }


def check_lb_attribute(key: str, value: str, allowed: Mapping[str, str]) -> None:
    if key not in allowed:
        # "Load balancer attribute key 'x' is not recognized" (CLI transcripts)
        raise validation(f"Load balancer attribute key '{key}' is not recognized")
    if key.endswith(".enabled") and value not in _BOOL:
        raise validation(
            f"Load balancer attribute value '{value}' is not valid for key '{key}'"
        )  # unconfirmed
    if key == "idle_timeout.timeout_seconds" and (not value.isdigit() or not 1 <= int(value) <= 4000):
        raise validation(
            f"Load balancer attribute value '{value}' is not valid for key '{key}'"
        )  # unconfirmed


# ---- ip targets --------------------------------------------------------------------------------------

_PRIVATE = tuple(
    ipaddress.IPv4Network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)


def ip_target_zone(
    address: str, vpc_cidr: str, subnets: Sequence[tuple[str, str]], requested_zone: str | None
) -> str:
    """The AZ ELB records for an ip target, or the ValidationError ELB answers (notes §2, [G4]-[G6]).

    ``subnets`` are (cidr, zone) of the VPC's subnets; an address in the VPC takes its subnet's zone.
    """
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        raise validation(f"The IP address '{address}' is not a valid IPv4 address") from None  # unconfirmed
    in_vpc = ip in ipaddress.IPv4Network(vpc_cidr)
    if in_vpc:
        if requested_zone == "all":
            zone = next((z for cidr, z in subnets if ip in ipaddress.IPv4Network(cidr)), "")
            raise validation(
                f"The IP address '{address}' is within the VPC, and cannot have its Availability Zone "
                f"overridden to 'all' from '{zone}'"
            )
        for cidr, zone in subnets:
            if ip in ipaddress.IPv4Network(cidr):
                return zone
        # In the VPC's range but in none of its subnets: not a usable target # unconfirmed wording
        raise validation(f"The IP address '{address}' is not in any subnet of the VPC")
    if not any(ip in net for net in _PRIVATE):
        # A public address can never be an ip target (notes §2, [B7]): ELB answers InvalidTarget # unconfirmed
        raise invalid_target()
    if requested_zone is None:
        raise validation(
            f"The Availability Zone is required for IP address '{address}' because it is not in the VPC"
        )
    if requested_zone != "all":
        raise validation(
            f"You must specify a valid Availability Zone or select 'all' for all enabled Availability zones, "
            f"since the IP address '{address}' is outside the VPC"
        )
    return "all"


def invalid_target() -> ClientError:
    return ClientError(
        "InvalidTarget",
        "The specified target does not exist, is not in the same VPC as the target group, or has an "
        "unsupported instance type.",
    )
