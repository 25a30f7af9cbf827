"""Reading and editing a local root's action log (``<root>/actions``) in tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from redis_gocache.store.layout import ACTION_LOG, format_record, parse_record, read_action_log


def records(root: Path) -> dict[str, str]:
    """Action hex -> latest record line of the log under ``root`` (``<cache dir>/v1``)."""
    return read_action_log(str(root / ACTION_LOG))


def rewrite(root: Path, keep: Callable[[str], bool] = lambda action: True,
            refreshed: float | None = None) -> None:
    """Rewrite the log with only the actions ``keep`` accepts, optionally with another
    refresh time (epoch seconds) on every record."""
    lines = []
    for action, line in records(root).items():
        if not keep(action):
            continue
        if refreshed is not None:
            parsed = parse_record(line)
            assert parsed is not None, line
            line = format_record(action, parsed[0], refreshed)
        lines.append(line)
    (root / ACTION_LOG).write_text("".join(lines), encoding="ascii")


def age_refreshes(root: Path, seconds: float) -> None:
    """Make every record look refreshed ``seconds`` ago."""
    rewrite(root, refreshed=time.time() - seconds)


def drop(root: Path, actions: Iterable[str]) -> None:
    """Remove these actions' records."""
    gone = set(actions)
    rewrite(root, keep=lambda action: action not in gone)
