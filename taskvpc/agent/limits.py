"""The agent's own process limits: raised at start, where a full host would otherwise hit them first.

Each container the agent supervises costs it at least one open file (a pidfd it waits on), plus sockets
and netns fds while tasks start; with the usual soft limit of 1,024 open files a host stopped at about
1,005 tasks. The hard limit is what root may use without asking anyone, so the soft limit goes up to it.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)


def raise_open_files() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE := hard (logged); the (before, after) soft limits. Never lowers it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("open-file limit stays %s (hard %s): %r", soft, hard, exc)
            return soft, soft
    log.info("open-file limit %s (was %s, hard %s)", max(target, soft), soft, hard)
    return soft, max(target, soft)
