"""The garbage collector of a long-running process (the agent, ``taskvpc up``'s server).

CPython's collector walks every tracked object of a generation when it collects it, and the oldest
generation holds everything the process made at start-up (modules, SQLAlchemy's tables and compiled
statements, the agent's drivers) plus what it keeps per task. Profiles of a host with 5,000 tasks had
~3 % of the machine in ``gc_collect_main`` in the server and the agent, with most of it walking objects
that never die. So, once start-up is over:

* the start-up objects are frozen (``gc.freeze``): no collection looks at them again (they are not
  garbage: modules and singletons live as long as the process);
* the youngest generation collects every ``YOUNG_THRESHOLD`` allocations instead of 700: a request's or
  a reconcile's temporaries mostly die before the collector runs, so fewer of them are promoted into the
  old generation, whose full collections (each a walk of every live per-task object) then come less often.

Cycles are still collected; only how often, and which objects are looked at, changes.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000  # allocations less deallocations between young collections (CPython: 700)


def settle_after_startup() -> None:
    """Collect what start-up left, freeze the survivors and space out young collections (idempotent)."""
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(YOUNG_THRESHOLD, young), middle, old)
