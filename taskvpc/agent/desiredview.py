"""The agent's copy of its desired state, kept by full and delta answers (``taskvpc.agentapi.delta``).

A full answer replaces the copy; a delta is merged into it (changed tasks replaced by ARN, removed ones
dropped, the whole sections it carries replaced). A delta that does not add up (its task count differs
from the merged list, or there is no copy to merge into) is not acted on: the copy is dropped and the
next poll asks for the full state, as after an agent restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from taskvpc.agentapi.answer import DesiredState
from taskvpc.agentapi.delta import DELTA, KEYED_MERGES, Delta, digests_of, encode_have, merge

log = logging.getLogger(__name__)


class DesiredView:
    def __init__(self, parse_full: Callable[[Any], DesiredState | None]) -> None:
        self._parse_full = parse_full
        self.state: DesiredState | None = None
        self.digests: dict[str, str] = {}
        self.full_answers = 0
        self.deltas = 0

    def hold(self, state: DesiredState, digests: Mapping[str, str] | None = None) -> None:
        """Take ``state`` (a full answer read elsewhere) as the copy."""
        self.state, self.digests = state, dict(digests or {})

    def drop(self) -> None:
        self.state, self.digests = None, {}

    def poll_arguments(self, generation: int) -> dict[str, Any]:
        """``since``/``have`` for the next poll: none (a full answer) without a copy of ``generation``."""
        if self.state is None or generation < 0 or self.state.generation != generation:
            return {}
        # keyed: the sections whose changed entries it merges alone (a load balancer's, on a target change)
        return {
            "since": generation,
            "have": encode_have(self.digests),
            "keyed": ",".join(sorted(KEYED_MERGES)),
        }

    def take(self, doc: Any) -> DesiredState | None:
        """The answer applied to the copy: the new desired state, or None (logged) when it cannot be used."""
        if not isinstance(doc, Mapping) or not doc.get(DELTA):
            state = self._parse_full(doc)
            if state is not None:
                self.hold(state, digests_of(doc) if isinstance(doc, Mapping) else {})
                self.full_answers += 1
            return state
        try:
            delta = Delta.from_wire(doc)
        except Exception as exc:
            log.error("unreadable desired-state delta ignored: %r", exc)
            self.drop()
            return None
        merged = merge(self.state, delta) if self.state is not None else None
        if merged is None:
            log.warning(
                "desired-state delta does not add up (generation %d); asking for the full state",
                delta.generation,
            )
            self.drop()
            return None
        for group_id, error in merged.skipped_rules() if "securityGroups" in delta.sections else ():
            log.warning("unreadable rule skipped group=%s error=%s", group_id, error)
        self.state, self.digests = merged, dict(delta.digests)
        self.deltas += 1
        return merged
