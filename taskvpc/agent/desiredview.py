"""The agent's copy of its desired state, kept by full and delta answers (``taskvpc.agentapi.delta``).

A full answer replaces the copy; a delta is merged into it (changed tasks replaced by ARN, removed ones
dropped, the whole sections it carries replaced). :attr:`DesiredView.changes` says which tasks the last
answer changed (None: a full answer, every task may have), so the engine looks at those alone. A delta that does not add up (its task count differs
from the merged list, or there is no copy to merge into) is not acted on: the copy is dropped and the
next poll asks for the full state, as after an agent restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from taskvpc.agentapi.answer import DesiredState
from taskvpc.agentapi.delta import DELTA, KEYED_MERGES, Delta, digests_of, encode_have, merge
from taskvpc.agentapi.tasks import DesiredTask

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TaskChanges:
    """What a delta changed of the task list: the entries it replaced or added, the ARNs it dropped."""

    tasks: tuple[DesiredTask, ...]
    removed: tuple[str, ...]


class DesiredView:
    def __init__(self, parse_full: Callable[[Any], DesiredState | None]) -> None:
        self._parse_full = parse_full
        self.state: DesiredState | None = None
        self.digests: dict[str, str] = {}
        self.full_answers = 0
        self.deltas = 0
        self.changes: TaskChanges | None = None  # of the last answer taken (None: a full one)
        self._by_arn: dict[str, DesiredTask] | None = None  # the copy's tasks by ARN, made on first delta

    def hold(self, state: DesiredState, digests: Mapping[str, str] | None = None) -> None:
        """Take ``state`` (a full answer read elsewhere) as the copy."""
        self.state, self.digests = state, dict(digests or {})
        self.changes = None
        self._by_arn = None

    def drop(self) -> None:
        self.state, self.digests = None, {}
        self.changes = None
        self._by_arn = None

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
        if self.state is not None and self._by_arn is None:
            self._by_arn = {t.arn: t for t in self.state.tasks}
        merged = merge(self.state, delta, self._by_arn) if self.state is not None else None
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
        self.changes = TaskChanges(delta.tasks, delta.removed)
        self.deltas += 1
        return merged
