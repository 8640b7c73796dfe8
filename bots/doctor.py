"""``ollabot doctor``: check everything ollabot depends on and say what to fix."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bots.app import embedded_parts, open_llm, open_store, open_transcriber, resolve_model
from bots.settings import Settings
from core.errors import OllabotError

# Where the repository keeps Redis's durability settings (deploy/install.sh installs the first).
REDIS_SETTINGS = (
    "deploy/systemd/redis-server.service.d/50-ollabot-durability.conf, "
    "or deploy/redis/ollabot-durability.conf for redis.conf"
)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    warning_only: bool = False

    def line(self) -> str:
        mark = "ok  " if self.ok else ("warn" if self.warning_only else "FAIL")
        return f"[{mark}] {self.name}: {self.detail}"


async def doctor(settings: Settings) -> int:
    async with embedded_parts(settings) as settings:
        checks = [*await check_ollama(settings), *await check_redis(settings)]
        checks += [*check_tokens(settings), await check_speech_to_text(settings)]
        checks += await check_fit(settings)
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.ok and not c.warning_only]
    print("All checks passed." if not failed else f"{len(failed)} check(s) failed.")
    return 1 if failed else 0


async def check_ollama(settings: Settings) -> list[Check]:
    llm = open_llm(settings)
    try:
        version = await llm.version()
        installed = await llm.installed_models()
    except OllabotError as error:
        host = settings.ollama.host
        fix = f"start Ollama (systemctl start ollama) or fix OLLABOT_OLLAMA__HOST={host}"
        return [Check("ollama", False, f"{error.notice} Fix: {fix}")]
    finally:
        await llm.close()
    checks = [Check("ollama", True, f"version {version} at {settings.ollama.host}")]
    try:
        tag = await resolve_model(settings)
    except OllabotError as error:
        return [*checks, Check("model", False, error.notice)]
    present = tag in installed or f"{tag}:latest" in installed
    detail = (
        f"{tag} is installed" if present else f"{tag} is missing. Fix: ollabot model pull {tag}"
    )
    model = Check("model", present, detail)
    return [
        *checks,
        model,
        vision_check(settings, installed),
        *check_embed_model(settings, installed),
    ]


def vision_check(settings: Settings, installed: list[str]) -> Check:
    """Whether photos have a model that sees, when the channel's own does not."""
    tag = settings.ollama.vision_model
    if not tag:
        detail = "off: photos are answered only where the channel's model reads images"
        return Check("vision model", True, detail, warning_only=True)
    if tag in installed or f"{tag}:latest" in installed:
        return Check("vision model", True, f"{tag} is installed (photos)", warning_only=True)
    detail = (
        f"{tag} is missing: photos get a notice unless the channel's model reads images. "
        f"Fix: ollabot model pull {tag}"
    )
    return Check("vision model", False, detail, warning_only=True)


async def check_speech_to_text(settings: Settings) -> Check:
    """Whether voice notes have a speech-to-text server that answers."""
    transcriber = open_transcriber(settings)
    if transcriber is None:
        detail = (
            "not configured: voice notes get a notice. Fix: run a server with OpenAI's "
            "transcription API (whisper.cpp, faster-whisper) and set OLLABOT_STT__URL"
        )
        return Check("speech-to-text", False, detail, warning_only=True)
    try:
        answers = await transcriber.reachable()
    finally:
        await transcriber.close()
    url = settings.stt.url
    if answers:
        return Check("speech-to-text", True, f"answers at {url}")
    detail = f"nothing answers at {url}. Fix: start the server or fix OLLABOT_STT__URL"
    return Check("speech-to-text", False, detail, warning_only=True)


def check_embed_model(settings: Settings, installed: list[str]) -> list[Check]:
    """The embedding model of the documents (``kb add``): a warning, since chat works without."""
    tag = settings.ollama.embed_model
    if not settings.knowledge.enabled or not tag:
        return []
    if tag in installed or f"{tag}:latest" in installed:
        return [Check("embedding model", True, f"{tag} is installed")]
    fix = f"ollama pull {tag}, or OLLABOT_KNOWLEDGE__ENABLED=false"
    detail = f"{tag} is missing, so documents (kb add) cannot be read. Fix: {fix}"
    return [Check("embedding model", False, detail, warning_only=True)]


def out_of_memory(info: dict[str, str]) -> bool:
    """Whether Redis has reached ``maxmemory`` (and so, with noeviction, refuses writes)."""
    used, limit = info.get("used_memory", ""), info.get("maxmemory", "")
    return used.isdigit() and limit.isdigit() and int(limit) > 0 and int(used) >= int(limit)


async def check_redis(settings: Settings) -> list[Check]:
    store = open_store(settings)
    try:
        await store.ping()
        info = await store.server_info()
        dead_letters = await store.dead_letter_count()
    except OllabotError as error:
        where = "OLLABOT_REDIS__SENTINELS" if settings.redis.sentinels else "OLLABOT_REDIS__URL"
        return [Check("redis", False, f"{error.notice} Fix: start redis-server or fix {where}")]
    finally:
        with contextlib.suppress(Exception):
            await store.close()
    checks = [Check("redis", True, f"reachable, version {info.get('redis_version', '?')}")]
    durable = (
        str(info.get("aof_enabled")) in ("1", "True", "yes")
        and info.get("appendfsync") == "everysec"
    )
    checks.append(
        Check(
            "redis persistence",
            durable,
            "AOF with appendfsync everysec"
            if durable
            else "AOF is off: a crash loses recent conversations. Fix: appendonly yes, "
            f"appendfsync everysec ({REDIS_SETTINGS})",
            warning_only=True,
        )
    )
    policy = info.get("maxmemory_policy", "?")
    checks.append(
        Check(
            "redis eviction",
            policy == "noeviction",
            f"maxmemory-policy {policy}"
            + (
                ""
                if policy == "noeviction"
                else ": conversations may be evicted silently. Fix: maxmemory-policy "
                f"noeviction ({REDIS_SETTINGS})"
            ),
            warning_only=True,
        )
    )
    if settings.redis.sentinels:
        checks.append(replication_check(info))
    full = out_of_memory(info)
    checks.append(
        Check(
            "redis memory",
            not full,
            f"out of memory: used {info.get('used_memory')} of maxmemory "
            f"{info.get('maxmemory')} bytes, writes are refused. "
            "Fix: raise maxmemory or free memory"
            if full
            else "room to write",
        )
    )
    checks.append(dead_letter_check(dead_letters, settings.redis.prefix))
    return checks


def dead_letter_check(count: int, prefix: str) -> Check:
    """Received updates and messages that were set aside: a few are worth a look."""
    if not count:
        return Check("dead letters", True, "none", warning_only=True)
    detail = (
        f"{count} received update(s) or message(s) could not be read, stored or answered and "
        f"were set aside. Inspect: redis-cli XRANGE {prefix}deadletter - +"
    )
    return Check("dead letters", False, detail, warning_only=True)


def replication_check(info: dict[str, str]) -> Check:
    """Behind Sentinel, whether the primary refuses writes its replicas do not see."""
    minimum = info.get("min_replicas_to_write", "unknown")
    replicas = f"{info.get('connected_replicas', '?')} replicas connected"
    fix = (
        "Fix: min-replicas-to-write 1 and min-replicas-max-lag 10 on the primary and every "
        "replica (deploy/redis/ollabot-replication.conf)"
    )
    if minimum == "unknown":
        detail = f"{replicas}; min-replicas-to-write unknown (CONFIG GET is not allowed). "
        return Check("redis replication", False, detail + "Check it by hand. " + fix, True)
    if minimum in ("", "0"):
        detail = (
            f"{replicas}; min-replicas-to-write is 0: in a failover the old primary goes on "
            "accepting writes that are then lost (seconds of them). "
        )
        return Check("redis replication", False, detail + fix, True)
    return Check("redis replication", True, f"{replicas}, min-replicas-to-write {minimum}")


def check_tokens(settings: Settings) -> list[Check]:
    telegram = settings.telegram.token is not None
    slack = settings.slack.bot_token is not None and (
        settings.slack.app_token is not None or settings.slack.signing_secret is not None
    )
    if not (telegram or slack):
        return [
            Check(
                "platforms",
                False,
                "no Telegram or Slack token configured; only "
                "`ollabot chat` will work. Fix: set OLLABOT_TELEGRAM__TOKEN or the "
                "OLLABOT_SLACK__* tokens",
                warning_only=True,
            )
        ]
    names = [n for n, on in (("telegram", telegram), ("slack", slack)) if on]
    return [Check("platforms", True, "configured: " + ", ".join(names))]


async def check_fit(settings: Settings) -> list[Check]:
    fit: Callable[[Settings], Awaitable[list[tuple[str, bool, str, bool]]]]
    try:
        from bots.model_cli import doctor_fit as fit
    except ImportError:
        return []
    return [Check(*check) for check in await fit(settings)]
