"""``redis-gocache config``: the effective settings and where each comes from (as ``ccache -p``).

Passwords never show: the URL is redacted (:func:`redis_gocache.config.redact_url`) and the
password itself is shown as ``***`` with its source only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from redis_gocache.config import OPTIONS, Config, redact_url
from redis_gocache.ops.common import human_bytes


def _text(value: Any) -> str:
    if value is None or value == ():
        return "(unset)"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


_UNITS = (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60))


def _duration(seconds: int) -> str:
    """``604800 (7d)``: the seconds, and the largest whole unit when there is one."""
    unit = next((f"{seconds // n}{u}" for u, n in _UNITS if seconds % n == 0), "")
    return f"{seconds} ({unit})" if unit else str(seconds)


def effective(config: Config, sources: Mapping[str, str], problems: Sequence[str],
              env: Mapping[str, str]) -> list[dict[str, str]]:
    """One row per setting: its flag, variable, value as the helper would use it, source
    (``flag``, the variable's name, ``default``) and, for an unusable value, the problem."""
    rows = []
    for opt in OPTIONS:
        value = getattr(config, opt.name)
        if opt.name == "redis_url" and value:
            value = redact_url(value)
        elif opt.metavar == "DURATION" and isinstance(value, int):
            value = _duration(value)
        elif opt.name == "trim_max_size" and not value:
            value = "0 (no limit)"
        elif opt.metavar == "BYTES" and isinstance(value, int) and value >= 1024:
            value = f"{value} ({human_bytes(value)})"
        problem = next((p for p in problems if p.startswith(f"{opt.envvar} ")), "")
        rows.append({"setting": opt.flags[-1], "variable": opt.envvar, "value": _text(value),
                     "source": sources[opt.name], "problem": problem})
    url = config.redis_url or ""
    auth = url.partition("://")[2].rpartition("@")[0]
    if ":" in auth:
        where = "REDIS_URL"
    elif config.password_file and config.password is not None:
        where = "REDIS_PASSWORD_FILE"
    elif env.get("REDIS_PASSWORD"):
        where = "REDIS_PASSWORD"
    else:
        where = "none"
    rows.append({"setting": "password", "variable": "REDIS_PASSWORD",
                 "value": "(none)" if where == "none" else "***", "source": where,
                 "problem": ""})
    return rows


def render(rows: Sequence[Mapping[str, str]]) -> str:
    """The rows as aligned text; an unusable value's problem on the line after it."""
    width = max(len(r["setting"]) for r in rows)
    vwidth = min(48, max(len(r["value"]) for r in rows))
    lines = []
    for r in rows:
        lines.append(f"{r['setting']:<{width}}  {r['value']:<{vwidth}}  ({r['source']})")
        if r["problem"]:
            lines.append(f"{'':<{width}}  ! {r['problem']}")
    return "\n".join(lines) + "\n"
