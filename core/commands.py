"""The chat commands (preset, system, fewshot, model, think, kb, reset, help), parsed and
executed."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from core import knowledge_commands, presets, quota
from core.errors import InvalidCommand, NotAuthorized
from core.fewshot import FewShotCatalog
from core.i18n import N_, _
from core.knowledge_base import KnowledgeBase
from core.models import AuditEntry, ChannelSettings, IncomingMessage
from core.ports import ConversationStore
from core.prompting import DEFAULT_SYSTEM_PROMPT
from core.text import shortened

MAX_SYSTEM_PROMPT_CHARS = 4000
AUDIT_SHOWN = 15
NOT_AN_ADMIN = N_("not an admin")  # stored in the audit log in English, shown translated
AUDIT_ADMINS_ONLY = N_("Sorry, only admins of this chat can see its audit log.")
_AUDIT_VALUE_CHARS = 80
_REFUSED_TEXT_CHARS = 200
_MODEL_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$")

# verb -> action -> (needs admin, number of words after the action; -1 = free text)
GRAMMAR: dict[str, dict[str, tuple[bool, int]]] = {
    "preset": {
        "show": (False, 0),
        "list": (False, 0),
        "use": (True, 1),
        "set": (True, 2),
        "reset": (True, 0),
    },
    "system": {"show": (False, 0), "set": (True, -1), "reset": (True, 0)},
    "fewshot": {"show": (False, 0), "list": (False, 0), "use": (True, 1), "clear": (True, 0)},
    "model": {"show": (False, 0), "use": (True, 1)},
    "think": {"current": (False, 0), "show": (True, 0), "hide": (True, 0)},
    "audit": {"show": (True, 0)},
    "quota": {"show": (False, 0), "user": (True, 2), "channel": (True, 1), "off": (True, 0)},
    "kb": {
        "show": (False, 0),
        "list": (False, 0),
        "add": (True, 0),
        "forget": (True, 1),
        "on": (True, 0),
        "off": (True, 0),
    },
    "usage": {"": (False, 0)},
    "stop": {"": (False, 0)},
    "retry": {"": (False, 0)},
    "undo": {"": (False, 0)},
    "reset": {"": (False, 0)},
    "help": {"": (False, 0)},
    "start": {"": (False, 0)},
}
USAGE = {
    "preset": "preset | preset list | preset use NAME | preset set PARAM VALUE | preset reset",
    "system": "system show | system set TEXT | system reset",
    "fewshot": "fewshot show | fewshot list | fewshot use NAME | fewshot clear",
    "model": "model show | model use TAG",
    "think": "think | think show | think hide",
    "audit": "audit",
    "quota": "quota | quota user ID 30m/day | quota channel 2h/day | quota off",
    "kb": "kb list | kb add | kb forget ID | kb on | kb off",
}
# Commands about the reply being generated: answered at once, not after it.
URGENT = frozenset({"stop"})
# Commands that work on the conversation's history: answered by the chat service.
CONVERSATION_VERBS = frozenset({"stop", "retry", "undo"})
# The settings field a command's verb changes, where the audit log names it differently.
_FIELD_OF_VERB = {"system": "system_prompt"}
# What a verb alone does, where that is not ``show`` (``think show`` changes the setting).
_BARE_ACTION = {"think": "current"}


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Command:
    verb: str
    action: str
    args: tuple[str, ...]
    admin_only: bool


def parse(text: str) -> Command:
    """Parse ``preset set temperature 0.2`` (a leading '/' is allowed)."""
    words = text.strip().lstrip("/").split(maxsplit=2)
    verb = words[0].lower() if words else ""
    actions = GRAMMAR.get(verb)
    if actions is None:
        raise InvalidCommand(N_("Unknown command '{verb}'. Try help."), verb=verb)
    default = _BARE_ACTION.get(verb, "show" if "show" in actions else "")
    action = words[1].lower() if len(words) > 1 and "" not in actions else default
    if action not in actions:
        raise InvalidCommand(N_("Usage: {usage}"), usage=USAGE.get(verb, verb))
    admin_only, arity = actions[action]
    rest = words[2] if len(words) > 2 else ""
    args = _arguments(rest, arity)
    if args is None:
        raise InvalidCommand(N_("Usage: {usage}"), usage=USAGE.get(verb, verb))
    return Command(verb, action, args, admin_only)


def _arguments(rest: str, arity: int) -> tuple[str, ...] | None:
    if arity == -1:
        return (rest.strip(),) if rest.strip() else None
    words = tuple(rest.split())
    return words if len(words) == arity else None


def is_urgent(message: IncomingMessage) -> bool:
    """A command to act on now, ahead of the conversation's waiting messages (``stop``)."""
    if not message.is_command:
        return False
    words = message.text.strip().lstrip("/").split(maxsplit=1)
    return bool(words) and words[0].lower() in URGENT


def help_text(prefix: str) -> str:
    lines = [
        _("Talk to me and I answer with the local Llama model."),
        f"{prefix}stop — " + _("stop the reply being written"),
        f"{prefix}retry — " + _("write the last answer again"),
        f"{prefix}undo — " + _("forget the last question and answer"),
        f"{prefix}reset — " + _("forget this conversation"),
        f"{prefix}usage — " + _("your model time today"),
        f"{prefix}kb add — "
        + _("as the caption of a document or a reply to a message: answers will draw on it"),
        f"{prefix}help — " + _("this message"),
        _("Admins:"),
    ]
    lines += [f"{prefix}{form}" for usage in USAGE.values() for form in usage.split(" | ")]
    return "\n".join(lines)


class AdminService:
    """Executes commands; only admins change settings. Every change and every refused admin
    command is audited. (Commands count towards their author's rate limit on arrival, like
    messages, so a flood of them is refused before it reaches the audit trail.)"""

    def __init__(
        self,
        store: ConversationStore,
        catalog: FewShotCatalog,
        default_model: str,
        num_ctx: int,
        default_system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        default_preset: str = presets.DEFAULT_PRESET,
        clock: Callable[[], datetime] = _utc_now,
        knowledge: KnowledgeBase | None = None,
    ) -> None:
        self._store = store
        self._knowledge = knowledge
        self._default_preset = default_preset
        self._clock = clock
        self._catalog = catalog
        self._default_model = default_model
        self._num_ctx = num_ctx
        self._default_system_prompt = default_system_prompt

    async def execute(self, message: IncomingMessage, command: Command) -> str:
        try:
            return await self._run(message, command)
        except (NotAuthorized, InvalidCommand) as refusal:
            if command.admin_only:
                await self._store.append_audit(_refused(message, command, refusal))
            raise

    async def _run(self, message: IncomingMessage, command: Command) -> str:
        own_chat = knowledge_commands.may_change_in_private(message, command.verb)
        if command.admin_only and not message.is_admin and not own_chat:
            raise NotAuthorized(AUDIT_ADMINS_ONLY if command.verb == "audit" else None)
        if command.verb in ("help", "start"):
            return help_text(message.command_prefix)
        if command.verb == "reset":
            await self._store.clear_conversation(message.channel, message.conversation)
            return _("Conversation forgotten; let's start afresh.")
        if command.verb == "audit":
            return audit_text(await self._store.audit_log(message.channel, AUDIT_SHOWN))
        settings = await self._store.get_settings(message.channel)
        if command.verb == "usage":
            usage = await self._store.usage(message, quota.today(self._clock()))
            return quota.usage_text(usage, settings, message.author_id, message.is_admin)
        if command.verb == "kb" and command.action not in ("on", "off"):
            return await knowledge_commands.run(
                self._knowledge,
                self._store,
                message,
                command.action,
                command.args,
                settings,
                quota.today(self._clock()),
            )
        handler = getattr(self, f"_{command.verb}_{command.action}")
        result: tuple[str, ChannelSettings | None, str] = handler(settings, *command.args)
        reply, changed, field = result
        if changed is not None:
            audit = AuditEntry(
                message.channel,
                message.author_id,
                field,
                _summary(settings, field),
                _summary(changed, field),
            )
            await self._store.save_settings(message.channel, changed, audit)
        return reply

    # Each handler returns (reply, new settings or None when unchanged, audited field).
    def _preset_show(self, s: ChannelSettings) -> tuple[str, None, str]:
        params = presets.resolve(s)
        described = presets.describe(params)
        if s.overrides:
            text = _("Preset {preset} with overrides {overrides}: {params}").format(
                preset=s.preset, overrides=_overrides(s), params=described
            )
        else:
            text = _("Preset {preset}: {params}").format(preset=s.preset, params=described)
        return text, None, ""

    def _preset_list(self, s: ChannelSettings) -> tuple[str, None, str]:
        lines = [
            f"{name} ({_(presets.PRESET_USES[name])}): {presets.describe(p)}"
            for name, p in presets.PRESETS.items()
        ]
        return "\n".join(lines), None, ""

    def _preset_use(self, s: ChannelSettings, name: str) -> tuple[str, ChannelSettings, str]:
        presets.preset_named(name.lower())
        new = replace(s, preset=name.lower(), overrides={})
        return (
            _("Preset is now {preset}: {params}").format(
                preset=name.lower(), params=presets.describe(presets.resolve(new))
            ),
            new,
            "preset",
        )

    def _preset_set(
        self, s: ChannelSettings, param: str, raw: str
    ) -> tuple[str, ChannelSettings, str]:
        value = presets.parse_param(param.lower(), raw)
        if param.lower() == "max_tokens" and value > self._num_ctx // 2:
            raise InvalidCommand(
                N_(
                    "max_tokens must be in 1 to {most} "
                    "(half of this deployment's context of {num_ctx} tokens)."
                ),
                most=self._num_ctx // 2,
                num_ctx=self._num_ctx,
            )
        new = replace(s, overrides={**s.overrides, param.lower(): value})
        return (
            _("Set {param} = {value:g}: {params}").format(
                param=param.lower(), value=value, params=presets.describe(presets.resolve(new))
            ),
            new,
            "preset",
        )

    def _preset_reset(self, s: ChannelSettings) -> tuple[str, ChannelSettings, str]:
        new = replace(s, preset=self._default_preset, overrides={})
        text = _("Preset reset to {preset}.").format(preset=self._default_preset)
        return text, new, "preset"

    def _quota_show(self, s: ChannelSettings) -> tuple[str, None, str]:
        return _quotas(s), None, ""

    def _quota_user(
        self, s: ChannelSettings, user: str, text: str
    ) -> tuple[str, ChannelSettings, str]:
        seconds = quota.parse_quota(text)
        new = replace(s, user_quota_s={**s.user_quota_s, user: seconds})
        answer = _("{user} may now use {quota} a day here.").format(
            user=user, quota=quota.duration(seconds)
        )
        return answer, new, "quota"

    def _quota_channel(self, s: ChannelSettings, text: str) -> tuple[str, ChannelSettings, str]:
        seconds = quota.parse_quota(text)
        new = replace(s, channel_quota_s=seconds)
        answer = _("This chat may now use {quota} a day.").format(quota=quota.duration(seconds))
        return answer, new, "quota"

    def _quota_off(self, s: ChannelSettings) -> tuple[str, ChannelSettings, str]:
        new = replace(s, user_quota_s={}, channel_quota_s=None)
        return _("No more quotas in this chat."), new, "quota"

    def _system_show(self, s: ChannelSettings) -> tuple[str, None, str]:
        if s.system_prompt:
            return _("System prompt (custom):") + f"\n{s.system_prompt}", None, ""
        return _("System prompt (default):") + f"\n{self._default_system_prompt}", None, ""

    def _system_set(self, s: ChannelSettings, text: str) -> tuple[str, ChannelSettings, str]:
        if len(text) > MAX_SYSTEM_PROMPT_CHARS:
            raise InvalidCommand(
                N_("The system prompt may have at most {most} characters (this one has {count})."),
                most=MAX_SYSTEM_PROMPT_CHARS,
                count=len(text),
            )
        return _("System prompt updated."), replace(s, system_prompt=text), "system_prompt"

    def _system_reset(self, s: ChannelSettings) -> tuple[str, ChannelSettings, str]:
        return (
            _("System prompt reset to the default."),
            replace(s, system_prompt=None),
            "system_prompt",
        )

    def _fewshot_show(self, s: ChannelSettings) -> tuple[str, None, str]:
        template = self._catalog.find(s.fewshot)
        if template is None:
            return _("No few-shot template in use."), None, ""
        pairs = "\n".join(f"user: {u}\nassistant: {a}" for u, a in template.examples)
        title = _("Few-shot template {name}:").format(name=template.name)
        return f"{title}\n{pairs}", None, ""

    def _fewshot_list(self, s: ChannelSettings) -> tuple[str, None, str]:
        lines = [
            _("{name}: {description} ({count} examples)").format(
                name=t.name, description=t.description, count=len(t.examples)
            )
            for t in self._catalog.all()
        ]
        return "\n".join(lines), None, ""

    def _fewshot_use(self, s: ChannelSettings, name: str) -> tuple[str, ChannelSettings, str]:
        template = self._catalog.get(name)
        return (
            _("Few-shot template {name} in use.").format(name=template.name),
            replace(s, fewshot=template.name),
            "fewshot",
        )

    def _fewshot_clear(self, s: ChannelSettings) -> tuple[str, ChannelSettings, str]:
        return _("Few-shot template cleared."), replace(s, fewshot=None), "fewshot"

    def _kb_on(self, s: ChannelSettings) -> tuple[str, ChannelSettings, str]:
        answer = _("Answers in this chat now draw on its documents.")
        return answer, replace(s, knowledge=True), "knowledge"

    def _kb_off(self, s: ChannelSettings) -> tuple[str, ChannelSettings, str]:
        answer = _("Answers in this chat no longer draw on its documents (they are kept).")
        return answer, replace(s, knowledge=False), "knowledge"

    def _model_show(self, s: ChannelSettings) -> tuple[str, None, str]:
        return _("Model: {model}").format(model=s.model or self._default_model), None, ""

    def _model_use(self, s: ChannelSettings, tag: str) -> tuple[str, ChannelSettings, str]:
        if not _MODEL_TAG.match(tag):
            raise InvalidCommand(N_("A model tag looks like llama3.1:8b-instruct-q8_0."))
        return _("Model is now {model}.").format(model=tag), replace(s, model=tag), "model"

    def _think_current(self, s: ChannelSettings) -> tuple[str, None, str]:
        if s.think == "show":
            return _("The reasoning of thinking models is shown here, with each answer."), None, ""
        return _("The reasoning of thinking models is hidden here."), None, ""

    def _think_show(self, s: ChannelSettings) -> tuple[str, ChannelSettings, str]:
        answer = _("Thinking models' reasoning will be shown here, with each answer.")
        return answer, replace(s, think="show"), "think"

    def _think_hide(self, s: ChannelSettings) -> tuple[str, ChannelSettings, str]:
        answer = _("Thinking models' reasoning will be hidden here; only answers are shown.")
        return answer, replace(s, think="hide"), "think"


def audit_text(entries: Sequence[AuditEntry]) -> str:
    """The channel's recent changes and refused attempts, one line each, newest last."""
    if not entries:
        return _("No settings changes recorded in this chat yet.")
    lines = [_("Recent settings changes in this chat (newest last):")]
    for e in entries:
        when = datetime.fromtimestamp(e.at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        default = _("(default)")
        change = f"{_clip(e.old) or default} → {_clip(e.new) or default}"
        if e.outcome != "changed":
            change = _("refused ({why}): {attempt}").format(
                why=_clip(_reason(e.outcome)), attempt=_clip(e.new)
            )
        lines.append(f"{when} {e.actor} {e.field}: {change}")
    return "\n".join(lines)


def _reason(outcome: str) -> str:
    why = outcome.removeprefix("refused: ")
    return _(why) if why else why  # gettext("") would be the catalogue's header


def _clip(value: str) -> str:
    flat = " ".join(value.split())
    return shortened(flat, _AUDIT_VALUE_CHARS)


def _refused(message: IncomingMessage, command: Command, refusal: Exception) -> AuditEntry:
    why = NOT_AN_ADMIN if isinstance(refusal, NotAuthorized) else str(refusal)
    attempted = " ".join((command.action, *command.args)).strip()[:_REFUSED_TEXT_CHARS]
    field = _FIELD_OF_VERB.get(command.verb, command.verb)
    return AuditEntry(message.channel, message.author_id, field, "", attempted, f"refused: {why}")


def _quotas(s: ChannelSettings) -> str:
    if not s.user_quota_s and s.channel_quota_s is None:
        return _("No quotas in this chat.")
    return _("Quotas of model time:") + "\n" + "\n".join(_quota_lines(s, _))


def _quota_lines(s: ChannelSettings, gettext: Callable[[str], str]) -> list[str]:
    """One line per quota; the audit log keeps them in English (``gettext`` the identity)."""
    a_day = gettext("{who}: {quota} a day")
    lines = [
        a_day.format(who=user, quota=quota.duration(q))
        for user, q in sorted(s.user_quota_s.items())
    ]
    if s.channel_quota_s is not None:
        whole = gettext("the whole chat")
        lines.append(a_day.format(who=whole, quota=quota.duration(s.channel_quota_s)))
    return lines


def _overrides(s: ChannelSettings) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in sorted(s.overrides.items()))


def _summary(s: ChannelSettings, field: str) -> str:
    if field == "preset":
        return f"{s.preset} {_overrides(s)}".strip()
    if field == "quota":
        return " ".join(_quota_lines(s, str))
    value = getattr(s, field, None)
    return "" if value is None else str(value)
