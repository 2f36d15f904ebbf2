"""The console's pages: one async function per route, each a few API calls as the user and a template.

URLs are stable per resource: ``/console/clusters/<name>``, ``.../tasks/<task id>``,
``.../services/<name>``, ``/console/task-definitions/<family>:<revision>``,
``/console/security-groups/<id>``, ``/console/log-groups/<name>``, ``/console/load-balancers/<name>``,
``/console/target-groups/<name>``, ``/console/flow-logs``, ``/console/vpcs/<id>``, its ``/traffic`` graph and
``/reachability`` matrix.
"""

from __future__ import annotations

import re

from taskvpc.console.app import Page
from taskvpc.console.pages.clusters import (
    cluster,
    cluster_tasks_events,
    clusters,
    home,
    run_task,
    run_task_form,
    service,
    service_events,
    stop_task,
    task,
    task_events,
)
from taskvpc.console.pages.flow_logs import flow_logs
from taskvpc.console.pages.load_balancers import (
    load_balancer,
    load_balancers,
    target_group,
    target_groups,
    target_health_events,
)
from taskvpc.console.pages.logs import log_group, log_groups, log_stream_events
from taskvpc.console.pages.network import (
    authorize_ingress,
    create_security_group,
    revoke_ingress,
    security_group,
    security_groups,
)
from taskvpc.console.pages.reachability import reachability, reachability_events, run_probes
from taskvpc.console.pages.task_definitions import (
    deregister_task_definition,
    new_task_definition,
    register_task_definition,
    task_definition,
    task_definition_family,
    task_definitions,
)
from taskvpc.console.pages.traffic import traffic, traffic_events
from taskvpc.console.pages.vpcs import vpc, vpcs

_CLUSTER = r"/clusters/(?P<cluster>[A-Za-z0-9_-]{1,255})"
_TASK = _CLUSTER + r"/tasks/(?P<task>[0-9a-f]{32})"
_SERVICE = _CLUSTER + r"/services/(?P<service>[A-Za-z0-9_-]{1,255})"
_FAMILY = r"/task-definitions/(?P<family>[A-Za-z0-9_-]{1,255})"
_GROUP = r"/security-groups/(?P<group>sg-[0-9a-f]{1,17})"
_ELB_NAME = r"(?P<name>[A-Za-z0-9-]{1,32})"  # load balancer and target group names

ROUTES: list[tuple[str, re.Pattern[str], Page]] = [
    (method, re.compile(pattern), page)
    for method, pattern, page in [
        ("GET", r"/", home),
        ("GET", r"/clusters", clusters),
        ("GET", _CLUSTER, cluster),
        ("GET", _CLUSTER + r"/tasks/events", cluster_tasks_events),
        ("GET", _CLUSTER + r"/run-task", run_task_form),
        ("GET", _SERVICE, service),
        ("GET", _SERVICE + r"/events", service_events),
        ("POST", _CLUSTER + r"/run-task", run_task),
        ("GET", _TASK, task),
        ("GET", _TASK + r"/events", task_events),
        ("POST", _TASK + r"/stop", stop_task),
        ("GET", r"/task-definitions", task_definitions),
        ("GET", r"/task-definitions/new", new_task_definition),
        ("POST", r"/task-definitions", register_task_definition),
        ("GET", _FAMILY, task_definition_family),
        ("GET", _FAMILY + r":(?P<revision>[0-9]{1,9})", task_definition),
        ("POST", _FAMILY + r":(?P<revision>[0-9]{1,9})/deregister", deregister_task_definition),
        ("GET", r"/security-groups", security_groups),
        ("POST", r"/security-groups", create_security_group),
        ("GET", _GROUP, security_group),
        ("POST", _GROUP + r"/ingress", authorize_ingress),
        ("POST", _GROUP + r"/ingress/revoke", revoke_ingress),
        ("GET", r"/load-balancers", load_balancers),
        ("GET", r"/load-balancers/" + _ELB_NAME, load_balancer),
        ("GET", r"/target-groups", target_groups),
        ("GET", r"/target-groups/" + _ELB_NAME, target_group),
        ("GET", r"/target-groups/" + _ELB_NAME + r"/events", target_health_events),
        ("GET", r"/flow-logs", flow_logs),
        ("GET", r"/vpcs", vpcs),
        ("GET", r"/vpcs/(?P<vpc>vpc-[0-9a-f]{1,17})", vpc),
        ("GET", r"/vpcs/(?P<vpc>vpc-[0-9a-f]{1,17})/traffic", traffic),
        ("GET", r"/vpcs/(?P<vpc>vpc-[0-9a-f]{1,17})/traffic/events", traffic_events),
        ("GET", r"/vpcs/(?P<vpc>vpc-[0-9a-f]{1,17})/reachability", reachability),
        ("GET", r"/vpcs/(?P<vpc>vpc-[0-9a-f]{1,17})/reachability/events", reachability_events),
        ("POST", r"/vpcs/(?P<vpc>vpc-[0-9a-f]{1,17})/reachability/probe", run_probes),
        ("GET", r"/log-groups", log_groups),
        ("GET", r"/log-events/(?P<group>[\.\-_/#A-Za-z0-9]{1,512})", log_stream_events),
        ("GET", r"/log-groups/(?P<group>[\.\-_/#A-Za-z0-9]{1,512})", log_group),
    ]
]
