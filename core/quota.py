"""GPU-time quotas: what a day's allowance is, whether it is spent, and how to say so.

The unit is what the GPU really spends on a reply: Ollama's prompt evaluation plus generation
time; and on a document added with ``kb add``, the time its embedding took. Days are UTC days;
usage resets at midnight UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from core.errors import InvalidCommand, OllabotError
from core.i18n import N_, _
from core.models import ChannelSettings, Usage

_QUOTA = re.compile(r"^(\d+(?:\.\d+)?)(s|m|min|h)/day$")
_UNIT_S = {"s": 1, "m": 60, "min": 60, "h": 3600}
MAX_QUOTA_S = 24 * 3600.0


class QuotaExceeded(OllabotError):
    """The user's or the channel's GPU time for today is spent (the notice says until when)."""


def parse_quota(text: str) -> float:
    """``30m/day`` → 1800.0 seconds a day."""
    match = _QUOTA.match(text.strip().lower())
    if match is None:
        raise InvalidCommand(N_("A quota looks like 30m/day, 2h/day or 90s/day."))
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if not 0 < seconds <= MAX_QUOTA_S:
        raise InvalidCommand(N_("A quota is more than nothing and at most 24h/day."))
    return seconds


def duration(seconds: float) -> str:
    """``4 min 12 s``, ``2 h 5 min``, ``0.4 s``: rounded to what a person reads."""
    if seconds < 10 and round(seconds, 1) != round(seconds):
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def check(settings: ChannelSettings, author_id: str, usage: Usage, now: datetime) -> None:
    """Raise ``QuotaExceeded`` when the author or the channel has spent today's allowance."""
    user_quota = settings.user_quota_s.get(author_id)
    if user_quota is not None and usage.user_s >= user_quota:
        raise QuotaExceeded(
            N_(
                "You have used your {quota} of model time for today in this chat; "
                "it resets at 00:00 UTC (in {left})."
            ),
            quota=duration(user_quota),
            left=_until_midnight(now),
        )
    channel_quota = settings.channel_quota_s
    if channel_quota is not None and usage.channel_s >= channel_quota:
        raise QuotaExceeded(
            N_(
                "This chat has used its {quota} of model time for today; "
                "it resets at 00:00 UTC (in {left})."
            ),
            quota=duration(channel_quota),
            left=_until_midnight(now),
        )


def _until_midnight(now: datetime) -> str:
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return duration((midnight - now).total_seconds())


def today(now: datetime) -> str:
    """The UTC day usage is counted under: ``2026-12-01``."""
    return now.astimezone(UTC).strftime("%Y-%m-%d")


def usage_text(usage: Usage, settings: ChannelSettings, author_id: str, admin: bool) -> str:
    """What ``usage`` answers: your own use, and to admins the channel's top users."""
    mine = settings.user_quota_s.get(author_id)
    used = duration(usage.user_s)
    lines = [
        _("Your model time today in this chat: {used} (no quota).").format(used=used)
        if mine is None
        else _("Your model time today in this chat: {used} of {quota}.").format(
            used=used, quota=duration(mine)
        )
    ]
    if admin:
        limit, spent = settings.channel_quota_s, duration(usage.channel_s)
        lines.append(
            _("This chat today: {used} (no quota).").format(used=spent)
            if limit is None
            else _("This chat today: {used} of {quota}.").format(used=spent, quota=duration(limit))
        )
        lines += [f"  {who}: {duration(spent)}" for who, spent in usage.top]
    return "\n".join(lines)
