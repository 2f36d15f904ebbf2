"""The whole API, fuzzed in process from botocore's models: no 5xx but 501, no traceback, and a refused
request changes nothing in the store.

Requests are signed by botocore and handed to the ASGI application directly (tests/support/inprocess_api.py),
a few thousand per run; ``bench/fuzz.py`` runs the same for as long as it is given.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.support import fuzzing
from tests.support.inprocess_api import InProcessApi, TracebackCatcher

EXAMPLES = {"ecs": 1000, "ec2": 1000, "elbv2": 200, "sts": 50}  # ~50 s on a loaded 2-core machine


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessApi]:
    instance = InProcessApi(Path(tmp_path_factory.mktemp("fuzz")))
    fuzzing.seed(instance)
    yield instance
    instance.close()


@pytest.fixture()
def tracebacks() -> Iterator[TracebackCatcher]:
    catcher = TracebackCatcher()
    root = logging.getLogger()
    root.addHandler(catcher)
    yield catcher
    root.removeHandler(catcher)


@pytest.mark.parametrize("service", sorted(EXAMPLES))
def test_no_input_breaks_the_api(service: str, api: InProcessApi, tracebacks: TracebackCatcher) -> None:
    @settings(
        max_examples=EXAMPLES[service],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(fuzzing.requests(service))
    def run(case: tuple[str, Any]) -> None:
        operation, payload = case
        fuzzing.check(api, tracebacks, service, operation, payload)

    run()
