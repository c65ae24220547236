"""Symbol selection: a gateway's symbols as exact names or patterns, matched against instruments.

A symbol in a gateway's config is either a normalized symbol (``BTC-USDT``) or a pattern in
:mod:`fnmatch` syntax over normalized symbols, case-sensitive: ``*`` any text, ``?`` one
character, ``[...]`` one of a set (``BTC-*``, ``*-USDT-PERP``, ``ETH-USD-2025????``; ``*`` alone
is every instrument the exchange lists). Patterns are resolved before the adapter is built: a
live gateway against the instrument lists it loads at start, and again every ``rematch_interval``
when set (gateways.process), a replaying one against the symbols its capture recorded
(feedfabric.runner). The adapter, the
capture header and everything downstream only ever see the explicit list.

Pure functions, no I/O: what to fetch is :func:`instrument_requests`, what it selects is
:func:`expand`, how often it may be fetched again is :func:`rematch_floor`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase

from gateways.adapter import Adapter, Fetch, Subscription

_PATTERN_CHARS = frozenset("*?[")


def is_pattern(text: str) -> bool:
    """Whether ``text`` is a pattern (holds ``*``, ``?`` or ``[``) rather than one symbol."""
    return not _PATTERN_CHARS.isdisjoint(text)


def has_patterns(channels: Mapping[str, Iterable[str]]) -> bool:
    """Whether any channel's symbols hold a pattern."""
    return any(is_pattern(s) for syms in channels.values() for s in syms)


def exact(channels: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """The channels with their patterns left out (the symbols named exactly)."""
    return {ch: [s for s in syms if not is_pattern(s)] for ch, syms in channels.items()}


def expand(channels: Mapping[str, Sequence[str]], known: Iterable[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Each channel's symbols with every pattern replaced by the ``known`` symbols it matches.

    Order: as written, a pattern's matches sorted; each symbol once per channel. An exact name is
    kept even when ``known`` lacks it (the adapter reports it as unknown, as without patterns).
    Also returns the patterns that match nothing, each once.
    """
    names = sorted(set(known))
    out: dict[str, list[str]] = {}
    unmatched: list[str] = []
    for ch, entries in channels.items():
        seen: dict[str, None] = {}
        for entry in entries:
            if not is_pattern(entry):
                seen.setdefault(entry, None)
                continue
            matched = [n for n in names if fnmatchcase(n, entry)]
            if not matched and entry not in unmatched:
                unmatched.append(entry)
            for n in matched:
                seen.setdefault(n, None)
        out[ch] = list(seen)
    return out, unmatched


def instrument_requests(cls: type[Adapter], channels: Mapping[str, Iterable[str]],
                        urls: Mapping[str, str] | None = None) -> list[Fetch]:
    """The instrument lists that patterns are matched against: what ``cls`` loads with no
    subscription (its default lists), plus what its exactly named symbols need (some lists are
    per family or currency, e.g. OKX and Bybit options), each URL once."""
    requests: dict[str, Fetch] = {}
    for sub in ({}, exact(channels)):
        for fetch in cls(Subscription(sub), urls=dict(urls) if urls else None).instrument_requests():
            requests.setdefault(fetch.url, fetch)
    return list(requests.values())


# The share of an exchange's REST weight per minute that re-matching patterns may spend: the rest
# is for what cannot wait (book snapshots of resyncs, polls).
REMATCH_BUDGET_SHARE = 0.1


def rematch_floor(cls: type[Adapter], channels: Mapping[str, Iterable[str]],
                  urls: Mapping[str, str] | None = None) -> float:
    """The shortest ``rematch_interval`` (s) at which loading the instrument lists again spends at
    most :data:`REMATCH_BUDGET_SHARE` of ``cls``'s REST weight per minute, and no shorter than
    its ``instruments_reload_min``."""
    weight = sum(f.weight for f in instrument_requests(cls, channels, urls))
    budget = cls.rest_weight_per_minute
    by_budget = 60.0 * weight / (REMATCH_BUDGET_SHARE * budget) if budget and weight else 0.0
    return max(by_budget, cls.instruments_reload_min)
