#!/usr/bin/env python3
"""The API fuzzer of tests/unit/test_fuzz_api.py, run for longer: ``python bench/fuzz.py --examples 20000``.

Every served ECS, EC2 and STS operation gets model-shaped and hostile requests (strategies made from
botocore's shapes, tests/support/fuzzing.py), signed and sent to the ASGI application in process on a
throwaway SQLite store. The invariant: no 5xx but 501, no traceback logged, a refused request changes
nothing. The first counterexample is printed (hypothesis shrinks it) and the exit status is 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, seed, settings

from tests.support import fuzzing
from tests.support.inprocess_api import InProcessApi, TracebackCatcher


def _fuzz(
    api: InProcessApi, catcher: TracebackCatcher, service: str, examples: int, chosen: int | None
) -> None:
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(fuzzing.requests(service))
    def run(case: tuple[str, Any]) -> None:
        fuzzing.check(api, catcher, service, case[0], case[1])

    (seed(chosen)(run) if chosen is not None else run)()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000, help="requests per service (default 10000)")
    parser.add_argument("--services", default="ecs,ec2,sts")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    catcher = TracebackCatcher()
    logging.getLogger().addHandler(catcher)
    failed = False
    with tempfile.TemporaryDirectory(prefix="taskvpc-fuzz-") as state:
        api = InProcessApi(Path(state))
        fuzzing.seed(api)
        try:
            for service in args.services.split(","):
                started = time.monotonic()
                try:
                    _fuzz(api, catcher, service, args.examples, args.seed)
                    verdict = "ok"
                except (AssertionError, ExceptionGroup) as error:
                    failed = True
                    verdict = f"FAILED\n{error}"
                elapsed = time.monotonic() - started
                print(f"{service}: {args.examples} requests in {elapsed:.1f} s: {verdict}", flush=True)
        finally:
            api.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
