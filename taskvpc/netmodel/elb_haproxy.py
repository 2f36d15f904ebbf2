"""ALB listeners and rules -> one HAProxy configuration (pure text; the agent writes and reloads it).

HAProxy runs EVERY ``http-request`` rule before any ``use_backend`` (notes §0.3), so ELB's "first matching
rule by priority wins" is compiled as an ordered chain that only records the winner::

    http-request set-var(txn.rule) str(r10) if !rule_chosen r10_c0 r10_c1
    http-request set-var(txn.rule) str(r20) if !rule_chosen r20_c0
    http-request set-var(txn.rule) str(default) if !rule_chosen

and only then acts on ``txn.rule``: ``http-request return`` (fixed-response), ``http-request redirect``,
``use_backend`` (forward, by weight on one ``rand`` drawn per request). Conditions are named ACLs; ELB ORs
the values of one condition and ANDs the conditions, which is exactly what repeated ``acl`` lines (OR) and
several ACLs on one ``if`` (AND) mean in HAProxy.

Health gating: our health checker (not HAProxy's) decides; a server is written ``disabled`` unless the
target receives traffic (healthy, or every target unhealthy: ELB fails open), and a draining target keeps
its connections at ``weight 0``. :func:`runtime_commands` gives the runtime-API steps for a target change
without a reload (add disabled -> ready; drain -> maint -> del), as measured in notes §1.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskvpc.netmodel import elb_health


@dataclass(frozen=True, slots=True)
class Target:
    address: str
    port: int
    state: str  # an elb_health state


def _quote(value: str) -> str:
    """One HAProxy config word, taken literally (single quotes; a quote itself is '\\'')."""
    return "'" + value.replace("'", "'\\''") + "'"


def _glob(value: str) -> str:
    """ELB's wildcard match (``*`` any run, ``?`` one character) as an anchored regex."""
    return "^" + "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in value) + "$"


def _name(arn: str) -> str:
    return arn.rsplit("/", 1)[1]


def backend_name(tg_arn: str) -> str:
    return f"tg_{_name(tg_arn)}"


def server_name(target: Target) -> str:
    return f"t_{target.address.replace('.', '_')}_{target.port}"


def _condition_acls(rule_key: str, index: int, condition: Mapping[str, Any]) -> list[str]:
    acl = f"{rule_key}_c{index}"
    field = condition["Field"]
    if field == "host-header":
        values = list(condition["Values"])
        # ELB matches the host case-insensitively and without the port.
        return [f"acl {acl} req.hdr(host),field(1,:) -m reg -i {_quote(_glob(v))}" for v in values]
    if field == "path-pattern":
        return [f"acl {acl} path -m reg {_quote(_glob(v))}" for v in condition["Values"]]
    if field == "http-header":
        config = condition["HttpHeaderConfig"]
        header = str(config["HttpHeaderName"])
        return [f"acl {acl} req.hdr({header}) -m reg -i {_quote(_glob(v))}" for v in config["Values"]]
    if field == "http-request-method":
        config = condition["HttpRequestMethodConfig"]
        return [f"acl {acl} method -m str {_quote(str(v))}" for v in config["Values"]]
    if field == "source-ip":
        config = condition["SourceIpConfig"]
        return [f"acl {acl} src {v}" for v in config["Values"]]
    if field == "query-string":
        config = condition["QueryStringConfig"]
        lines = []
        for pair in config["Values"]:
            value = _glob(pair["Value"])
            if pair.get("Key"):
                lines.append(f"acl {acl} url_param({pair['Key']}) -m reg -i {_quote(value)}")
            else:
                lines.append(f"acl {acl} query -m reg -i {_quote('(^|&)[^=&]*=' + value[1:-1] + '(&|$)')}")
        return lines
    raise ValueError(f"unknown condition field {field!r}")


def _redirect_lines(action: Mapping[str, Any], when: str) -> list[str]:
    config: Mapping[str, str] = action["RedirectConfig"]
    code = config["StatusCode"].removeprefix("HTTP_")
    tokens = {
        "#{protocol}": "%[ssl_fc,iif(https,http)]",
        "#{host}": "%[req.hdr(host),field(1,:)]",
        "#{port}": "%[dst_port]",
        "#{path}": "%[path,regsub(^/,)]",
    }

    def expand(text: str) -> str:
        for token, fetch in tokens.items():
            text = text.replace(token, fetch)
        return text

    protocol = (
        expand(config["Protocol"]).lower() if config["Protocol"] != "#{protocol}" else tokens["#{protocol}"]
    )
    base = f"{protocol}://{expand(config['Host'])}:{expand(config['Port'])}{expand(config['Path'])}"
    if config["Query"] == "#{query}":
        return [
            f"http-request redirect location {_quote(base + '?%[query]')} code {code} if {when} {{ query -m len gt 0 }}",
            f"http-request redirect location {_quote(base)} code {code} if {when}",
        ]
    query = config["Query"].replace("#{query}", "%[query]")
    location = base + (f"?{query}" if query else "")
    return [f"http-request redirect location {_quote(location)} code {code} if {when}"]


def _action_lines(rule_key: str, actions: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """(http-request lines, use_backend lines) acting on the rule once it has won."""
    when = f"{{ var(txn.rule) -m str {rule_key} }}"
    action = actions[-1]  # the terminal action; ELB's non-terminal ones (authenticate-*) are not served
    kind = action["Type"]
    if kind == "fixed-response":
        config: Mapping[str, str] = action["FixedResponseConfig"]
        body = config.get("MessageBody", "")
        content_type = config.get("ContentType", "text/plain")
        line = f"http-request return status {config['StatusCode']} content-type {_quote(content_type)}"
        if body:
            line += f" string {_quote(body)}"
        return [f"{line} if {when}"], []
    if kind == "redirect":
        return _redirect_lines(action, when), []
    groups = [g for g in action["ForwardConfig"]["TargetGroups"] if g.get("Weight", 1) > 0]
    if not groups:
        return [f"http-request return status 503 if {when}"], []  # every weight 0: nothing to forward to
    if len(groups) == 1:
        return [], [f"use_backend {backend_name(groups[0]['TargetGroupArn'])} if {when}"]
    total = sum(int(g.get("Weight", 1)) for g in groups)
    pick = f"txn.pick_{rule_key}"
    request = [f"http-request set-var({pick}) rand({total}) if {when}"]
    backends, low = [], 0
    for group in groups:
        high = low + int(group.get("Weight", 1))
        backends.append(
            f"use_backend {backend_name(group['TargetGroupArn'])} if {when} "
            f"{{ var({pick}) -m int ge {low} }} {{ var({pick}) -m int lt {high} }}"
        )
        low = high
    return request, backends


def rule_key(rule: Mapping[str, Any]) -> str:
    return "default" if rule["Priority"] == "default" else f"r{rule['Priority']}"


def compile_frontend(
    listener: Mapping[str, Any],
    rules: Sequence[Mapping[str, Any]],
    bind_address: str,
    certificate: str | None,
) -> list[str]:
    """One listener: its ACLs, the winner chain in priority order (default last), then the actions."""
    ordered = sorted(rules, key=lambda r: 50001 if r["Priority"] == "default" else int(str(r["Priority"])))
    bind = f"bind {bind_address}:{listener['Port']}"
    if listener["Protocol"] == "HTTPS":
        if certificate is None:
            raise ValueError(f"HTTPS listener on port {listener['Port']} needs a certificate file")
        bind += f" ssl crt {certificate}"
    lines = [
        f"frontend l{listener['Port']}",
        "    mode http",
        f"    {bind}",
        "    acl rule_chosen var(txn.rule) -m found",
    ]
    chain, acting, routing = [], [], []
    for rule in ordered:
        key = rule_key(rule)
        names = []
        for index, condition in enumerate(rule["Conditions"]):
            lines.extend(f"    {acl}" for acl in _condition_acls(key, index, condition))
            names.append(f"{key}_c{index}")
        chain.append(f"http-request set-var(txn.rule) str({key}) if !rule_chosen {' '.join(names)}".rstrip())
        request, backends = _action_lines(key, rule["Actions"])
        acting.extend(request)
        routing.extend(backends)
    lines.extend(f"    {line}" for line in chain + acting + routing)
    return lines


def serving(targets: Sequence[Target]) -> list[tuple[Target, str]]:
    """Each target with its server state: ``ready``, ``drain`` (weight 0, connections kept) or ``maint``."""
    live = [t for t in targets if t.state != elb_health.DRAINING and t.state != elb_health.UNUSED]
    flags = elb_health.receives_traffic([t.state for t in live])
    states = {id(t): ("ready" if flag else "maint") for t, flag in zip(live, flags, strict=True)}
    return [
        (t, "drain" if t.state == elb_health.DRAINING else states[id(t)])
        for t in targets
        if t.state != elb_health.UNUSED
    ]


def compile_backend(target_group: Mapping[str, Any], targets: Sequence[Target]) -> list[str]:
    lines = [
        f"backend {backend_name(str(target_group['TargetGroupArn']))}",
        "    mode http",
        "    balance roundrobin",
    ]
    for target, state in serving(targets):
        server = f"    server {server_name(target)} {target.address}:{target.port}"
        if target_group.get("Protocol") == "HTTPS":
            server += " ssl verify none"
        if state == "maint":
            server += " disabled"
        elif state == "drain":
            server += " weight 0"
        lines.append(server)
    return lines


def compile_config(
    listeners: Sequence[Mapping[str, Any]],
    rules: Mapping[str, Sequence[Mapping[str, Any]]],
    target_groups: Sequence[Mapping[str, Any]],
    targets: Mapping[str, Sequence[Target]],
    *,
    bind_address: str,
    stats_socket: str,
    certificates: Mapping[str, str] | None = None,
    idle_timeout: int = 60,
) -> str:
    """The whole HAProxy configuration of one ALB (listeners by port, backends by target group ARN)."""
    certificates = certificates or {}
    lines = [
        "global",
        f"    stats socket {stats_socket} mode 600 level admin expose-fd listeners",
        "defaults",
        "    mode http",
        "    timeout connect 10s",
        f"    timeout client {idle_timeout}s",
        f"    timeout server {idle_timeout}s",
        "    option forwardfor",
    ]
    for listener in sorted(listeners, key=lambda li: int(str(li["Port"]))):
        certificate = None
        if listener.get("Certificates"):
            certificate = certificates.get(str(listener["Certificates"][0]["CertificateArn"]))
        lines.extend(
            compile_frontend(listener, rules.get(str(listener["ListenerArn"]), ()), bind_address, certificate)
        )
    for group in sorted(target_groups, key=lambda g: str(g["TargetGroupArn"])):
        lines.extend(compile_backend(group, targets.get(str(group["TargetGroupArn"]), ())))
    return "\n".join(lines) + "\n"


def runtime_commands(
    backend: str, before: Sequence[tuple[Target, str]], after: Sequence[tuple[Target, str]]
) -> list[str]:
    """HAProxy runtime-API commands taking ``backend``'s servers from ``before`` to ``after`` (both as
    :func:`serving` gives them) with no reload: new servers start in maintenance; a removed one is put in
    maintenance before ``del server`` (HAProxy deletes only servers in maintenance)."""
    old = {server_name(t): (t, s) for t, s in before}
    new = {server_name(t): (t, s) for t, s in after}
    commands = []
    for name, (target, state) in new.items():
        if name not in old:
            commands.append(f"add server {backend}/{name} {target.address}:{target.port} disabled")
            if state != "maint":
                commands.append(f"set server {backend}/{name} state {state}")
        elif old[name][1] != state:
            commands.append(f"set server {backend}/{name} state {state}")
    for name in old:
        if name not in new:
            commands.append(f"set server {backend}/{name} state maint")
            commands.append(f"shutdown sessions server {backend}/{name}")
            commands.append(f"del server {backend}/{name}")
    return commands


# ---- NLB TLS listeners ---------------------------------------------------------------------------
# nftables cannot terminate TLS, so an NLB's TLS listeners (and only those) are an HAProxy in TCP mode in
# the NLB's namespace: ``bind … ssl crt`` decrypts, the stream goes on to a target as plain TCP (a TCP
# target group) or re-encrypted (a TLS one, unverified as ELB does). NLB semantics, not ALB ones: the
# servers written are the ones new flows may go to (``elb_nft.pick_targets``: healthy, or all when none
# is), so a verdict change rewrites the file and reloads (hitless; old workers keep their connections,
# which is how a draining target keeps its flows).


@dataclass(frozen=True, slots=True)
class TlsGroup:
    arn: str
    weight: int
    reencrypt: bool  # a TLS target group: HAProxy speaks TLS to the targets too
    servers: tuple[tuple[str, int], ...]  # (address, port) new flows may go to


@dataclass(frozen=True, slots=True)
class TlsListener:
    port: int
    certificate: str  # the PEM file (certificate + key)
    groups: tuple[TlsGroup, ...]


def _tls_frontend(listener: TlsListener) -> list[str]:
    lines = [
        f"frontend tls{listener.port}",
        "    mode tcp",
        f"    bind 0.0.0.0:{listener.port} ssl crt {listener.certificate}",
    ]
    groups = [g for g in listener.groups if g.weight > 0]
    if len(groups) <= 1:
        if groups:
            lines.append(f"    default_backend {backend_name(groups[0].arn)}")
        return (
            lines  # no group: HAProxy closes the connection (no backend), as an NLB with nothing to send to
        )
    total = sum(g.weight for g in groups)
    pick = f"sess.pick{listener.port}"
    lines.append(f"    tcp-request content set-var({pick}) rand({total})")
    low = 0
    for group in groups:
        high = low + group.weight
        lines.append(
            f"    use_backend {backend_name(group.arn)} if {{ var({pick}) -m int ge {low} }} "
            f"{{ var({pick}) -m int lt {high} }}"
        )
        low = high
    return lines


def _tls_backend(group: TlsGroup) -> list[str]:
    lines = [f"backend {backend_name(group.arn)}", "    mode tcp", "    balance roundrobin"]
    for address, port in group.servers:
        server = f"    server t_{address.replace('.', '_')}_{port} {address}:{port}"
        lines.append(server + (" ssl verify none" if group.reencrypt else ""))
    return lines


def compile_tls_config(
    listeners: Sequence[TlsListener], *, stats_socket: str, idle_timeout: int = 350
) -> str:
    """The HAProxy configuration of an NLB's TLS listeners (``idle_timeout``: NLB's TCP idle timeout)."""
    lines = [
        "global",
        f"    stats socket {stats_socket} mode 600 level admin expose-fd listeners",
        "defaults",
        "    mode tcp",
        "    timeout connect 10s",
        f"    timeout client {idle_timeout}s",
        f"    timeout server {idle_timeout}s",
    ]
    backends: dict[str, TlsGroup] = {}
    for listener in sorted(listeners, key=lambda li: li.port):
        lines.extend(_tls_frontend(listener))
        for group in listener.groups:
            backends.setdefault(group.arn, group)
    for arn in sorted(backends):
        lines.extend(_tls_backend(backends[arn]))
    return "\n".join(lines) + "\n"
