"""Inhibition: a louder alert suppresses a quieter one about the same thing (DESIGN §6).

As in Alertmanager's inhibit rules, a notification of a *source* kind suppresses notifications
of the *target* kinds that are equal on the listed labels. Here the labels are fixed to what
the design asks for: the same destination, the same symbol, the same tick (``created_ms``).
The default rule: a liquidation spike on a symbol makes "approaching a cluster" on that symbol
redundant, since the cluster is being liquidated right now.

Pure: :func:`inhibit` splits a batch into kept and suppressed, each suppressed one with the
reason and the notification that suppressed it. Suppressed notifications are not sent; the
caller may log them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from alerts.notifications import NoticeKind, Outgoing

__all__ = ["DEFAULT_RULES", "InhibitResult", "InhibitRule", "Suppressed", "inhibit"]


@dataclass(frozen=True)
class InhibitRule:
    """``source`` suppresses ``targets`` with the same destination, symbol and tick."""

    source: NoticeKind
    targets: frozenset[NoticeKind]
    name: str  # the reason given for what it suppresses


DEFAULT_RULES: tuple[InhibitRule, ...] = (
    InhibitRule(
        NoticeKind.LIQ_SPIKE,
        frozenset({NoticeKind.CLUSTER_APPROACH}),
        "spike_inhibits_cluster_approach",
    ),
)


@dataclass(frozen=True)
class Suppressed:
    item: Outgoing
    reason: str  # the rule's name
    by: Outgoing  # the source notification


@dataclass(frozen=True)
class InhibitResult:
    kept: tuple[Outgoing, ...]
    suppressed: tuple[Suppressed, ...]


def _label(o: Outgoing) -> tuple[int, str | None, int]:
    return (o.destination_id, o.symbol, o.created_ms)


def inhibit(
    items: Sequence[Outgoing], rules: Iterable[InhibitRule] = DEFAULT_RULES
) -> InhibitResult:
    """Split ``items`` into kept and suppressed; the kept keep their order.

    A notification without a symbol (ETF, digest) is never inhibited: the rule compares symbols
    and "no symbol" matches nothing. A source is never suppressed by its own rule, and
    suppressed notifications still act as sources (inhibition does not chain away the spike).
    """
    rules = tuple(rules)
    sources: dict[tuple[NoticeKind, tuple[int, str | None, int]], Outgoing] = {}
    for o in items:
        if o.symbol is not None:
            sources.setdefault((o.payload.kind, _label(o)), o)
    kept: list[Outgoing] = []
    suppressed: list[Suppressed] = []
    for o in items:
        hit = None
        if o.symbol is not None:
            for rule in rules:
                src = sources.get((rule.source, _label(o)))
                if o.payload.kind in rule.targets and src is not None and src is not o:
                    hit = Suppressed(o, rule.name, src)
                    break
        if hit is None:
            kept.append(o)
        else:
            suppressed.append(hit)
    return InhibitResult(tuple(kept), tuple(suppressed))
