"""Reads and writes of the VPC model. Plain functions over a Connection; no EC2 rules live here.

Resources come back as their stored wire documents (``body``) with the filtered-on columns merged in
under their wire names, so callers never see SQL rows. Writes that race between server processes are
settled by constraints, in a savepoint, and reported as ``False`` for the caller to retry or refuse:
an address taken twice (``ip_addresses`` primary key), a group name taken twice in a VPC, a rule added
twice, a MAC address drawn twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, bindparam, delete, exists, false, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from taskvpc.store.ecs_repo import dumps, loads
from taskvpc.store.rawsql import execute, fetch_all, placeholders
from taskvpc.store.schema import (
    ec2_regions,
    ec2_tags,
    ip_addresses,
    network_interface_groups,
    network_interfaces,
    security_group_rules,
    security_groups,
    subnets,
    vpcs,
)

Doc = dict[str, Any]

# ---- regions --------------------------------------------------------------------------------------

_REGION_READY = select(ec2_regions.c.region).where(ec2_regions.c.region == bindparam("region"))


def region_ready(conn: Connection, region: str) -> bool:
    return conn.execute(_REGION_READY, {"region": region}).first() is not None


def claim_region(conn: Connection, region: str, now: float) -> bool:
    """Record that the region is being set up; False when another writer did (or does) it."""
    return _try_insert(conn, ec2_regions, {"region": region, "default_vpc_id": None, "created_at": now})


def set_region_default_vpc(conn: Connection, region: str, vpc_id: str) -> None:
    conn.execute(update(ec2_regions).where(ec2_regions.c.region == region).values(default_vpc_id=vpc_id))


# ---- generic helpers ------------------------------------------------------------------------------


def _try_insert(conn: Connection, table: Table, values: dict[str, Any]) -> bool:
    """Insert in a savepoint; False when a constraint refused the row (another writer won)."""
    try:
        with conn.begin_nested():
            conn.execute(insert(table).values(**values))
    except IntegrityError:
        return False
    return True


_GET_BY_ID = {
    table.name: select(table).where(table.c.id == bindparam("id"), table.c.region == bindparam("region"))
    for table in (vpcs, subnets, security_groups, security_group_rules, network_interfaces)
}


def _get(conn: Connection, table: Table, region: str, resource_id: str) -> Any:
    return conn.execute(_GET_BY_ID[table.name], {"id": resource_id, "region": region}).first()


def _list(conn: Connection, table: Table, region: str, ids: Iterable[str] | None, *where: Any) -> list[Any]:
    query = select(table).where(table.c.region == region, *where)
    if ids is not None:
        query = query.where(table.c.id.in_(list(ids)))
    return list(conn.execute(query.order_by(table.c.id)))


# A filter value as SQL: chunks of literal text ("=abc"), "*" (any run of characters) and "?" (one).
Pattern = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Match:
    """One filter as SQL: ``target`` (a column, ``tag:<Key>``, ``tag-key`` or ``tag-value``) has a value
    that one of ``patterns`` matches, case-sensitively and whole."""

    target: str
    patterns: Sequence[Pattern]


@dataclass(frozen=True, slots=True)
class PageQuery:
    """One page of a Describe* listing as SQL: the rows of a region in id order that every match selects,
    after the id ``after``, at most ``limit`` of them (None: all). ``bounded``: the matches select few
    rows (ids, names): read them by their own index and order them here, rather than walk the region's
    rows in id order (which SQLite's planner prefers once a list of values comes with ORDER BY)."""

    ids: Sequence[str] | None = None
    matches: Sequence[Match] = ()
    after: str | None = None
    limit: int | None = None
    bounded: bool = False


def _is_literal(pattern: Pattern) -> bool:
    return all(chunk.startswith("=") for chunk in pattern)


def _glob(pattern: Pattern) -> str:
    """SQLite GLOB (case-sensitive; '[' opens a class, so literal '*', '?' and '[' go in brackets)."""
    out = []
    for chunk in pattern:
        if chunk in ("*", "?"):
            out.append(chunk)
        else:
            out.append("".join(f"[{c}]" if c in "*?[" else c for c in chunk[1:]))
    return "".join(out)


def _like(pattern: Pattern) -> str:
    """PostgreSQL LIKE with backslash as its escape (case-sensitive there)."""
    wildcards = {"*": "%", "?": "_"}
    return "".join(
        wildcards.get(chunk) or "".join("\\" + c if c in "\\%_" else c for c in chunk[1:])
        for chunk in pattern
    )


def _matching(conn: Connection, column: Any, patterns: Sequence[Pattern]) -> Any:
    literals = ["".join(chunk[1:] for chunk in p) for p in patterns if _is_literal(p)]
    terms = [column.in_(literals)] if literals else []
    for pattern in patterns:
        if not _is_literal(pattern):
            if conn.dialect.name == "sqlite":
                terms.append(column.op("GLOB")(_glob(pattern)))
            else:
                terms.append(column.like(_like(pattern), escape="\\"))
    return or_(*terms) if terms else false()


def _condition(conn: Connection, table: Table, match: Match) -> Any:
    t = ec2_tags.c
    if match.target.startswith("tag:"):
        value = _matching(conn, t.value, match.patterns)
        return exists().where(t.resource_id == table.c.id, t.key == match.target[4:], value)
    if match.target in ("tag-key", "tag-value"):
        column = t.key if match.target == "tag-key" else t.value
        return exists().where(t.resource_id == table.c.id, _matching(conn, column, match.patterns))
    return _matching(conn, table.c[match.target], match.patterns)


def page(conn: Connection, kind: str, region: str, query: PageQuery) -> list[Doc]:
    """The documents of ``kind`` (a table name: 'security_groups') that ``query`` selects, in id order.
    Listings read through (region, id) or (region, <column>, id) indexes, so a page costs its own rows."""
    table, to_doc = _KINDS[kind]
    statement = select(table).where(table.c.region == region)
    if query.ids is not None:
        statement = statement.where(table.c.id.in_(list(query.ids)))
    for match in query.matches:
        statement = statement.where(_condition(conn, table, match))
    if query.after is not None:
        statement = statement.where(table.c.id > query.after)
    if query.bounded:
        docs = sorted(((row.id, to_doc(row)) for row in conn.execute(statement)), key=lambda pair: pair[0])
        return [doc for _id, doc in docs[: query.limit]]
    statement = statement.order_by(table.c.id)
    if query.limit is not None:
        statement = statement.limit(query.limit)
    return [to_doc(row) for row in conn.execute(statement)]


def names_of_groups(conn: Connection, group_ids: Iterable[str]) -> dict[str, str]:
    """Group id -> name, for the ids that exist."""
    wanted = list(dict.fromkeys(group_ids))
    if not wanted:
        return {}
    sql = f"SELECT id, name FROM security_groups WHERE id IN ({placeholders(len(wanted))})"
    return {str(group_id): str(name) for group_id, name in fetch_all(conn, sql, wanted)}


# ---- VPCs -----------------------------------------------------------------------------------------


def _vpc(row: Any) -> Doc:
    doc = loads(row.body)
    doc["IsDefault"] = bool(row.is_default)
    doc["_attributes"] = {
        "enableDnsSupport": bool(row.enable_dns_support),
        "enableDnsHostnames": bool(row.enable_dns_hostnames),
    }
    return doc


def insert_vpc(conn: Connection, region: str, vpc: Doc, now: float, dns_hostnames: bool) -> None:
    conn.execute(
        insert(vpcs).values(
            id=vpc["VpcId"],
            region=region,
            cidr_block=vpc["CidrBlock"],
            is_default=vpc["IsDefault"],
            enable_dns_support=True,
            enable_dns_hostnames=dns_hostnames,
            created_at=now,
            body=dumps(vpc),
        )
    )


def get_vpc(conn: Connection, region: str, vpc_id: str) -> Doc | None:
    row = _get(conn, vpcs, region, vpc_id)
    return _vpc(row) if row else None


def list_vpcs(conn: Connection, region: str, ids: Iterable[str] | None = None) -> list[Doc]:
    return [_vpc(row) for row in _list(conn, vpcs, region, ids)]


def default_vpc(conn: Connection, region: str) -> Doc | None:
    rows = _list(conn, vpcs, region, None, vpcs.c.is_default.is_(True))
    return _vpc(rows[0]) if rows else None


def set_vpc_attribute(conn: Connection, vpc_id: str, name: str, value: bool) -> None:
    column = {"enableDnsSupport": "enable_dns_support", "enableDnsHostnames": "enable_dns_hostnames"}[name]
    conn.execute(update(vpcs).where(vpcs.c.id == vpc_id).values({column: value}))


def _try_delete(conn: Connection, table: Table, resource_id: str) -> bool:
    """Delete in a savepoint; False when a row added meanwhile still points at it (a foreign key)."""
    try:
        with conn.begin_nested():
            conn.execute(delete(table).where(table.c.id == resource_id))
    except IntegrityError:
        return False
    return True


def delete_vpc(conn: Connection, vpc_id: str) -> bool:
    return _try_delete(conn, vpcs, vpc_id)


# ---- subnets --------------------------------------------------------------------------------------


def _subnet(row: Any) -> Doc:
    return loads(row.body)


def insert_subnet(conn: Connection, region: str, subnet: Doc, now: float) -> None:
    conn.execute(
        insert(subnets).values(
            id=subnet["SubnetId"],
            region=region,
            vpc_id=subnet["VpcId"],
            cidr_block=subnet["CidrBlock"],
            availability_zone=subnet["AvailabilityZone"],
            created_at=now,
            body=dumps(subnet),
        )
    )


def get_subnet(conn: Connection, region: str, subnet_id: str) -> Doc | None:
    row = _get(conn, subnets, region, subnet_id)
    return _subnet(row) if row else None


def list_subnets(
    conn: Connection, region: str, ids: Iterable[str] | None = None, vpc_id: str | None = None
) -> list[Doc]:
    where = [subnets.c.vpc_id == vpc_id] if vpc_id is not None else []
    return [_subnet(row) for row in _list(conn, subnets, region, ids, *where)]


def update_subnet(conn: Connection, subnet: Doc) -> None:
    conn.execute(update(subnets).where(subnets.c.id == subnet["SubnetId"]).values(body=dumps(subnet)))


def delete_subnet(conn: Connection, subnet_id: str) -> bool:
    return _try_delete(conn, subnets, subnet_id)


# ---- addresses ------------------------------------------------------------------------------------

_USED_IPS = select(ip_addresses.c.ip).where(ip_addresses.c.subnet_id == bindparam("subnet_id"))


def used_ips(conn: Connection, subnet_id: str) -> set[str]:
    return set(conn.execute(_USED_IPS, {"subnet_id": subnet_id}).scalars())


def taken_among(conn: Connection, subnet_id: str, ips: Sequence[str]) -> set[str]:
    """Which of ``ips`` are handed out in ``subnet_id`` (primary-key lookups, whatever the subnet holds)."""
    wanted = sorted(set(ips))
    if not wanted:
        return set()
    sql = f"SELECT ip FROM ip_addresses WHERE subnet_id = ? AND ip IN ({placeholders(len(wanted))})"
    return {str(row[0]) for row in fetch_all(conn, sql, (subnet_id, *wanted))}


def used_counts(conn: Connection, subnet_ids: list[str]) -> dict[str, int]:
    """How many addresses each subnet has handed out (the rows, so always exact)."""
    if not subnet_ids:
        return {}
    rows = conn.execute(
        select(ip_addresses.c.subnet_id, func.count())
        .where(ip_addresses.c.subnet_id.in_(subnet_ids))
        .group_by(ip_addresses.c.subnet_id)
    )
    return {subnet_id: int(count) for subnet_id, count in rows}


def claim_ip(conn: Connection, region: str, subnet_id: str, ip: str, eni_id: str) -> bool:
    """Take ``ip`` in ``subnet_id`` for ``eni_id``; False when someone holds it already."""
    values = {"subnet_id": subnet_id, "ip": ip, "region": region, "eni_id": eni_id}
    return _try_insert(conn, ip_addresses, values)


# ---- security groups ------------------------------------------------------------------------------


def _group(row: Any) -> Doc:
    return loads(row.body)


def insert_group(conn: Connection, region: str, group: Doc, is_default: bool, now: float) -> bool:
    """False when the VPC already has a group of that name."""
    values = {
        "id": group["GroupId"],
        "region": region,
        "vpc_id": group["VpcId"],
        "name": group["GroupName"],
        "is_default": is_default,
        "created_at": now,
        "body": dumps(group),
    }
    return _try_insert(conn, security_groups, values)


def get_group(conn: Connection, region: str, group_id: str) -> Doc | None:
    row = _get(conn, security_groups, region, group_id)
    return _group(row) if row else None


def group_by_name(conn: Connection, vpc_id: str, name: str) -> Doc | None:
    row = conn.execute(
        select(security_groups.c.body).where(
            security_groups.c.vpc_id == vpc_id, security_groups.c.name == name
        )
    ).first()
    return loads(row.body) if row else None


def list_groups(
    conn: Connection, region: str, ids: Iterable[str] | None = None, vpc_id: str | None = None
) -> list[Doc]:
    where = [security_groups.c.vpc_id == vpc_id] if vpc_id is not None else []
    return [_group(row) for row in _list(conn, security_groups, region, ids, *where)]


def delete_group(conn: Connection, group_id: str) -> bool:
    """False when a row still points at the group (a rule or an ENI added meanwhile)."""
    try:
        with conn.begin_nested():
            conn.execute(delete(security_group_rules).where(security_group_rules.c.group_id == group_id))
            conn.execute(delete(security_groups).where(security_groups.c.id == group_id))
    except IntegrityError:
        return False
    return True


# ---- security group rules -------------------------------------------------------------------------


def _rule(row: Any) -> Doc:
    return loads(row.body)


def insert_rule(conn: Connection, region: str, rule: Doc, key: str, seq: int, now: float) -> bool:
    """False when the group already has a rule with the same key in that direction."""
    values = {
        "id": rule["SecurityGroupRuleId"],
        "region": region,
        "group_id": rule["GroupId"],
        "is_egress": rule["IsEgress"],
        "rule_key": key,
        "referenced_group_id": (rule.get("ReferencedGroupInfo") or {}).get("GroupId"),
        "created_at": now,
        "seq": seq,
        "body": dumps(rule),
    }
    return _try_insert(conn, security_group_rules, values)


def next_rule_seq(conn: Connection, group_id: str) -> int:
    current = conn.execute(
        select(func.max(security_group_rules.c.seq)).where(security_group_rules.c.group_id == group_id)
    ).scalar()
    return int(current or 0) + 1


def rules_of(conn: Connection, group_ids: list[str]) -> dict[str, list[Doc]]:
    """Every rule of each group, in the order added, ingress and egress together."""
    found: dict[str, list[Doc]] = {group_id: [] for group_id in group_ids}
    if group_ids:
        sql = (
            "SELECT group_id, body FROM security_group_rules "
            f"WHERE group_id IN ({placeholders(len(group_ids))}) ORDER BY group_id, seq, id"
        )
        for group_id, body in fetch_all(conn, sql, group_ids):  # plain SQL: every describe reads these
            found[group_id].append(loads(body))
    return found


def list_rules(conn: Connection, region: str, ids: Iterable[str] | None = None) -> list[Doc]:
    return [_rule(row) for row in _list(conn, security_group_rules, region, ids)]


def update_rule(conn: Connection, rule: Doc, key: str) -> bool:
    """False when the new key collides with another rule of the group."""
    r = security_group_rules.c
    try:
        with conn.begin_nested():
            conn.execute(
                update(security_group_rules)
                .where(r.id == rule["SecurityGroupRuleId"])
                .values(
                    rule_key=key,
                    referenced_group_id=(rule.get("ReferencedGroupInfo") or {}).get("GroupId"),
                    body=dumps(rule),
                )
            )
    except IntegrityError:
        return False
    return True


def delete_rules(conn: Connection, rule_ids: list[str]) -> None:
    if rule_ids:
        conn.execute(delete(security_group_rules).where(security_group_rules.c.id.in_(rule_ids)))


def groups_referencing(conn: Connection, group_id: str) -> list[str]:
    """Other groups with a rule naming ``group_id`` as its peer."""
    r = security_group_rules.c
    rows = conn.execute(
        select(r.group_id).where(r.referenced_group_id == group_id, r.group_id != group_id).distinct()
    )
    return sorted(rows.scalars())


# ---- network interfaces ---------------------------------------------------------------------------


def _eni(row: Any) -> Doc:
    doc = loads(row.body)
    doc["Status"] = row.status
    return doc


def insert_eni(conn: Connection, region: str, eni: Doc, now: float) -> bool:
    """False when the MAC address is taken (drawn twice); the caller draws another."""
    values = {
        "id": eni["NetworkInterfaceId"],
        "region": region,
        "vpc_id": eni["VpcId"],
        "subnet_id": eni["SubnetId"],
        "private_ip": eni["PrivateIpAddress"],
        "mac_address": eni["MacAddress"],
        "status": eni["Status"],
        "requester_managed": eni["RequesterManaged"],
        "created_at": now,
        "body": dumps(eni),
    }
    return _try_insert(conn, network_interfaces, values)


def get_eni(conn: Connection, region: str, eni_id: str) -> Doc | None:
    row = _get(conn, network_interfaces, region, eni_id)
    return _eni(row) if row else None


def list_enis(conn: Connection, region: str, ids: Iterable[str] | None = None) -> list[Doc]:
    return [_eni(row) for row in _list(conn, network_interfaces, region, ids)]


def update_eni(conn: Connection, eni: Doc) -> None:
    conn.execute(
        update(network_interfaces)
        .where(network_interfaces.c.id == eni["NetworkInterfaceId"])
        .values(status=eni["Status"], body=dumps(eni))
    )


def delete_eni(conn: Connection, eni_id: str) -> None:
    """The ENI, its group memberships and its addresses: the address is free again at once."""
    # plain SQL: every stopped task's report deletes its ENI (``rawsql``)
    execute(conn, "DELETE FROM ip_addresses WHERE eni_id = ?", (eni_id,))
    execute(conn, "DELETE FROM network_interface_groups WHERE eni_id = ?", (eni_id,))
    execute(conn, "DELETE FROM network_interfaces WHERE id = ?", (eni_id,))


def count_enis(conn: Connection, *, subnet_id: str | None = None, vpc_id: str | None = None) -> int:
    n = network_interfaces.c
    where = n.subnet_id == subnet_id if subnet_id is not None else n.vpc_id == vpc_id
    return int(conn.execute(select(func.count()).select_from(network_interfaces).where(where)).scalar() or 0)


def set_eni_groups(conn: Connection, region: str, eni_id: str, group_ids: list[str]) -> None:
    conn.execute(delete(network_interface_groups).where(network_interface_groups.c.eni_id == eni_id))
    if group_ids:
        conn.execute(
            insert(network_interface_groups),
            [
                {"eni_id": eni_id, "group_id": group_id, "region": region, "position": position}
                for position, group_id in enumerate(group_ids)
            ],
        )


def eni_groups(conn: Connection, eni_ids: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {eni_id: [] for eni_id in eni_ids}
    if eni_ids:
        g = network_interface_groups.c
        rows = conn.execute(
            select(g.eni_id, g.group_id).where(g.eni_id.in_(eni_ids)).order_by(g.eni_id, g.position)
        )
        for row in rows:
            found[row.eni_id].append(row.group_id)
    return found


def enis_with_group(conn: Connection, group_id: str) -> list[str]:
    g = network_interface_groups.c
    return sorted(conn.execute(select(g.eni_id).where(g.group_id == group_id)).scalars())


# ---- tags -----------------------------------------------------------------------------------------


def tags_of(conn: Connection, resource_ids: list[str]) -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {resource_id: [] for resource_id in resource_ids}
    if resource_ids:
        sql = (
            "SELECT resource_id, key, value FROM ec2_tags "
            f"WHERE resource_id IN ({placeholders(len(resource_ids))}) ORDER BY key"
        )
        for resource_id, key, value in fetch_all(conn, sql, resource_ids):  # plain SQL, as rules_of
            found[resource_id].append({"Key": key, "Value": value})
    return found


def put_tags(
    conn: Connection, region: str, resource_id: str, resource_type: str, tags: list[dict[str, str]]
) -> None:
    keys = [tag["Key"] for tag in tags]
    if not keys:
        return
    conn.execute(delete(ec2_tags).where(ec2_tags.c.resource_id == resource_id, ec2_tags.c.key.in_(keys)))
    latest = {tag["Key"]: tag.get("Value", "") for tag in tags}  # a repeated key: the last value wins
    conn.execute(
        insert(ec2_tags),
        [
            {
                "resource_id": resource_id,
                "key": key,
                "region": region,
                "resource_type": resource_type,
                "value": value,
            }
            for key, value in latest.items()
        ],
    )


def remove_tags(conn: Connection, resource_id: str, tags: list[dict[str, str]] | None) -> None:
    """Delete the named keys (only where the value matches, when one is given); all keys for None."""
    t = ec2_tags.c
    if tags is None:
        execute(conn, "DELETE FROM ec2_tags WHERE resource_id = ?", (resource_id,))
        return
    for tag in tags:
        where = [t.resource_id == resource_id, t.key == tag["Key"]]
        if tag.get("Value") is not None:
            where.append(t.value == tag["Value"])
        conn.execute(delete(ec2_tags).where(*where))


def list_tags(conn: Connection, region: str) -> list[dict[str, str]]:
    t = ec2_tags.c
    rows = conn.execute(
        select(t.resource_id, t.resource_type, t.key, t.value)
        .where(t.region == region)
        .order_by(t.resource_id, t.key)
    )
    return [
        {"ResourceId": row.resource_id, "ResourceType": row.resource_type, "Key": row.key, "Value": row.value}
        for row in rows
    ]


def resource_exists(conn: Connection, region: str, table_name: str, resource_id: str) -> bool:
    table = {t.name: t for t in (vpcs, subnets, security_groups, security_group_rules, network_interfaces)}[
        table_name
    ]
    return _get(conn, table, region, resource_id) is not None


_KINDS: dict[str, tuple[Table, Callable[[Any], Doc]]] = {
    vpcs.name: (vpcs, _vpc),
    subnets.name: (subnets, _subnet),
    security_groups.name: (security_groups, _group),
    security_group_rules.name: (security_group_rules, _rule),
    network_interfaces.name: (network_interfaces, _eni),
}
