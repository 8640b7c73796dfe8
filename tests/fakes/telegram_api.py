"""A fake Telegram Bot API server on loopback, strict about the limits the real one enforces.

What it emulates (``wire/README.md`` beside this file, section telegram/): ``/bot<token>/<method>``
with parameters as JSON, form or query string; answers ``{"ok": true, "result": ...}`` or
``{"ok": false, "error_code": N, "description": ...}`` with HTTP status N. Methods: getMe,
getUpdates (long polling; an ``offset`` confirms every earlier update, unconfirmed ones are
delivered again), deleteWebhook, setWebhook, sendMessage, editMessageText, sendChatAction,
setMyCommands, getMyCommands, getChatAdministrators, getChatMember, sendMessageDraft (private
chats; a draft disappears when the bot sends a message there; ``drafts_enabled=False`` answers
404 like a Bot API server without the method) and answerCallbackQuery (once per query, for
queries pushed with ``press``). Inline keyboards (``reply_markup``) are checked and kept on the
message; an edit without one removes it, as Telegram does.

Limits, as Telegram words them: text longer than 4,096 UTF-16 units after entity parsing
("message is too long"), empty text, an edit with unchanged text and entities ("message is not
modified"), MarkdownV2 with an unescaped reserved character or an unclosed entity, HTML with an
unknown or unclosed tag, entities outside the text ("can't parse entities"), and a per-chat
rate: more than ``rate_count`` messages (sends and edits) within ``rate_window_s`` gets 429
with ``parameters.retry_after``; so does a bot-wide rate, when ``global_rate_count`` is set, over
all chats together. Like Telegram, one ``getUpdates`` at a time: a new one ends the long poll
still open with 409 Conflict (recorded in ``calls`` when its client was there to read it).
Stricter than the real server where that is simpler (it
rejects bad entities instead of dropping them). It does not emulate reply keyboards, inline
mode or chats it has not seen.

Files, as the Bot API hands them to bots: ``add_file`` stores bytes under a new ``file_id``;
``getFile`` answers ``file_id``, ``file_unique_id``, ``file_size`` and a ``file_path``, or 400
"file is too big" above ``download_limit`` (20 MB) and "invalid file_id" for an unknown one;
``GET /file/bot<token>/<file_path>`` downloads the bytes (404 for anything else).
"""

from __future__ import annotations

import asyncio
import hashlib
import html.parser
import json
import math
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web

BOT = {"id": 7012345678, "is_bot": True, "first_name": "Ollabot", "username": "ollabot_bot"}
TOKEN = "7012345678:fake-token-for-tests"
ALICE = {
    "id": 123456789,
    "is_bot": False,
    "first_name": "Alice",
    "last_name": "Moreno",
    "username": "alice_m",
    "language_code": "es",
}
BOB = {
    "id": 987654321,
    "is_bot": False,
    "first_name": "Bob",
    "username": "bobdev",
    "language_code": "en",
}
LIMIT = 4096
CONFLICT = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance "
    "is running"
)
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
MDV2_RESERVED = set("_*[]()~`>#+-=|{}.!")
HTML_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
}


class ApiError(Exception):
    """An error answer: HTTP status == error_code."""

    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    status: int = 200
    at: float = 0.0


@dataclass
class FakeTelegram:
    """The server; tests push updates and read ``calls`` / ``messages``."""

    token: str = TOKEN
    rate_count: int = 1000
    rate_window_s: float = 1.0
    global_rate_count: int | None = None  # Telegram: about 30 messages a second per bot
    global_rate_window_s: float = 1.0
    admins: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    reject_entities: bool = False  # act like a server that cannot parse our formatting
    migrated: dict[int, int] = field(default_factory=dict)  # basic group id -> supergroup id
    drafts_enabled: bool = True
    calls: list[Call] = field(default_factory=list)
    url: str = ""
    download_limit: int = 20 * 1024 * 1024

    def __post_init__(self) -> None:
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 815300100
        self._next_message_id: dict[int, int] = defaultdict(lambda: 100)
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.drafts: dict[tuple[int, int], dict[str, Any]] = {}  # (chat, draft_id) -> shown
        self.drafted: list[dict[str, Any]] = []  # every draft shown, in order
        self.callback_answers: dict[str, dict[str, Any]] = {}
        self._queries: set[str] = set()
        self._next_query = 4_382_100_000_000_000_000
        self._user_messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.chats: dict[int, dict[str, Any]] = {}
        self._recent: dict[int, deque[float]] = defaultdict(deque)
        self._recent_all: deque[float] = deque()
        self._changed = asyncio.Condition()
        self._polls = 0  # getUpdates requests so far: a newer one ends the one open
        self._runner: web.AppRunner | None = None
        self.webhook: dict[str, Any] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, bytes)
        self.downloads: list[str] = []  # file paths downloaded, in order

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/bot"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- what tests use -------------------------------------------------------------------------

    def push(self, update: dict[str, Any]) -> int:
        """Queue an update (``update_id`` assigned unless given); returns its id."""
        if "update_id" not in update:
            update = {"update_id": self._next_update_id, **update}
        self._next_update_id = max(self._next_update_id, update["update_id"]) + 1
        message = update.get("message") or {}
        if "chat" in message:
            self.chats[message["chat"]["id"]] = message["chat"]
            self._user_messages[(message["chat"]["id"], message["message_id"])] = message
        self._updates.append(update)
        self._notify()
        return int(update["update_id"])

    def sent(self, chat_id: int, thread_id: int | None = None) -> list[dict[str, Any]]:
        """The bot's messages in a chat (and topic), oldest first, as they are now."""
        return [
            m
            for (c, _), m in sorted(self.messages.items())
            if c == chat_id and (thread_id is None or m.get("message_thread_id") == thread_id)
        ]

    def press(
        self,
        user: dict[str, Any],
        message: dict[str, Any],
        data: str,
        shown: dict[str, Any] | None = None,
    ) -> str:
        """``user`` presses the inline button with ``data`` under the bot's ``message`` (as
        it is now, or as ``shown``: an edit of it that was lost); returns the callback
        query's id."""
        current = shown or self.messages[(message["chat"]["id"], message["message_id"])]
        self._next_query += 1
        query_id = str(self._next_query)
        self._queries.add(query_id)
        self.push({"callback_query": callback_query(query_id, user, current, data)})
        return query_id

    def calls_to(self, method: str, status: int | None = None) -> list[Call]:
        return [
            c for c in self.calls if c.method == method and (status is None or c.status == status)
        ]

    def errors(self, code: int) -> list[Call]:
        return [c for c in self.calls if c.status == code]

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until ``condition()`` holds; it is checked after every recorded call."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(condition)
        except TimeoutError:
            recent = [(c.method, c.status, c.params.get("text")) for c in self.calls[-8:]]
            raise AssertionError(f"not reached in {timeout}s; last calls: {recent}") from None

    def pending_updates(self) -> int:
        return len(self._updates)

    @property
    def polls(self) -> int:
        """``getUpdates`` requests so far (they are too many to keep in ``calls``)."""
        return self._polls

    def add_file(self, data: bytes, folder: str = "photos", extension: str = "jpg") -> str:
        """Keep ``data`` as a file users sent; returns its ``file_id``."""
        digest = hashlib.sha256(data + str(len(self.files)).encode()).hexdigest()
        file_id = f"AgACAgQAAxkBAAI{digest[:24]}"
        self.files[file_id] = (f"{folder}/file_{len(self.files)}.{extension}", data)
        return file_id

    # -- the HTTP side ------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _answer(ApiError(401, "Unauthorized"))
        method = request.match_info["method"]
        params = await _params(request)
        call = Call(method, params, at=time.monotonic())
        handler = getattr(self, f"_m_{method}", None)
        try:
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            result = await handler(params)
        except ApiError as error:
            call.status = error.code
            await self._record(call, request)
            return _answer(error)
        await self._record(call, request)
        return web.json_response({"ok": True, "result": result})

    async def _download(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        found = [data for p, data in self.files.values() if p == path]
        if request.match_info["token"] != self.token or not found:
            return _answer(ApiError(404, "Not Found"))
        self.downloads.append(path)
        await self._record(Call("download", {"file_path": path}, at=time.monotonic()), request)
        return web.Response(body=found[0], content_type="application/octet-stream")

    async def _record(self, call: Call, request: web.Request) -> None:
        transport = request.transport
        gone = transport is None or transport.is_closing()
        # Polls are too many to keep; a failed one is kept if its client was there to read it.
        if call.method != "getUpdates" or (call.status != 200 and not gone):
            self.calls.append(call)
            async with self._changed:
                self._changed.notify_all()

    def _notify(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        task = asyncio.get_running_loop().create_task(notify())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- methods --------------------------------------------------------------------------------

    async def _m_getMe(self, params: dict[str, Any]) -> Any:
        return {
            **BOT,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _m_getUpdates(self, params: dict[str, Any]) -> Any:
        self._polls += 1
        poll = self._polls
        async with self._changed:
            self._changed.notify_all()  # an open long poll ends: this one takes over
        offset = int(params.get("offset") or 0)
        if offset and self._updates and self._updates[0]["update_id"] < offset:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            async with self._changed:
                self._changed.notify_all()
        limit = int(params.get("limit") or 100)
        timeout = float(params.get("timeout") or 0)
        allowed = params.get("allowed_updates") or None

        def ready() -> list[dict[str, Any]]:
            return [u for u in self._updates if allowed is None or any(k in u for k in allowed)]

        if not ready() and timeout > 0:
            try:
                async with asyncio.timeout(timeout), self._changed:
                    await self._changed.wait_for(lambda: bool(ready()) or self._polls != poll)
            except TimeoutError:
                pass
        if self._polls != poll:
            raise ApiError(409, CONFLICT)
        return ready()[:limit]

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = None
        return True

    async def _m_setWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = params
        return True

    async def _m_setMyCommands(self, params: dict[str, Any]) -> Any:
        if not isinstance(params.get("commands"), list):
            raise ApiError(400, "Bad Request: can't parse commands JSON object")
        return True

    async def _m_getMyCommands(self, params: dict[str, Any]) -> Any:
        scope = params.get("scope") or {"type": "default"}
        found = [
            c
            for c in reversed(self.calls_to("setMyCommands", 200))
            if (c.params.get("scope") or {"type": "default"}) == scope
        ]
        return found[0].params["commands"] if found else []

    async def _m_getFile(self, params: dict[str, Any]) -> Any:
        file_id = str(params.get("file_id") or "")
        if file_id not in self.files:
            raise ApiError(400, "Bad Request: invalid file_id")
        path, data = self.files[file_id]
        if len(data) > self.download_limit:
            raise ApiError(400, "Bad Request: file is too big")
        unique = hashlib.sha256(file_id.encode()).hexdigest()[:12]
        return {
            "file_id": file_id,
            "file_unique_id": f"AQAD{unique}",
            "file_size": len(data),
            "file_path": path,
        }

    async def _m_sendChatAction(self, params: dict[str, Any]) -> Any:
        self._chat(params)
        return True

    async def _m_getChatAdministrators(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        return [
            _member(user, index == 0) for index, user in enumerate(self.admins.get(chat["id"], []))
        ]

    async def _m_getChatMember(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        user_id = int(params["user_id"])
        for index, user in enumerate(self.admins.get(chat["id"], [])):
            if user["id"] == user_id:
                return _member(user, index == 0)
        return {"status": "member", "user": {"id": user_id, "is_bot": False, "first_name": "?"}}

    async def _m_sendMessage(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        text, entities = _formatted(params, self.reject_entities)
        markup = _inline_keyboard(params)
        self._rate(chat["id"])
        for key in [k for k in self.drafts if k[0] == chat["id"]]:
            del self.drafts[key]  # a real message replaces the chat's drafts
        message_id = self._next_message_id[chat["id"]] = self._next_message_id[chat["id"]] + 1
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": BOT,
            "chat": chat,
            "date": int(time.time()),
            "text": text,
        }
        if entities:
            message["entities"] = entities
        if params.get("message_thread_id") and chat.get("is_forum"):
            message["message_thread_id"] = int(params["message_thread_id"])
            message["is_topic_message"] = True
        quoted = (params.get("reply_parameters") or {}).get("message_id")
        replied = self._user_messages.get((chat["id"], int(quoted or 0)))
        if replied is not None:
            message["reply_to_message"] = {
                k: v for k, v in replied.items() if k != "reply_to_message"
            }
        if markup:
            message["reply_markup"] = markup
        self.messages[(chat["id"], message_id)] = message
        return message

    async def _m_editMessageText(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        message = self.messages.get((chat["id"], int(params.get("message_id") or 0)))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        text, entities = _formatted(params, self.reject_entities)
        markup = _inline_keyboard(params)
        if (text, entities, markup) == (
            message["text"],
            message.get("entities", []),
            message.get("reply_markup"),
        ):
            raise ApiError(400, NOT_MODIFIED)
        self._rate(chat["id"])
        message.update(text=text, entities=entities, edit_date=int(time.time()))
        if not entities:
            message.pop("entities")
        message.pop("reply_markup", None)
        if markup:
            message["reply_markup"] = markup
        return message

    async def _m_sendMessageDraft(self, params: dict[str, Any]) -> Any:
        if not self.drafts_enabled:
            raise ApiError(404, "Not Found: method not found")
        chat = self._chat(params)
        if chat["type"] != "private":
            raise ApiError(400, "Bad Request: drafts can be sent only to private chats")
        draft_id = int(params.get("draft_id") or 0)
        if draft_id == 0:
            raise ApiError(400, "Bad Request: draft_id must be non-zero")
        if params.get("text"):
            text, entities = _formatted(params, self.reject_entities)
        else:
            text, entities = "", []  # Telegram shows "Thinking..."
        self._rate(chat["id"])
        shown = {"chat_id": chat["id"], "draft_id": draft_id, "text": text, "entities": entities}
        self.drafts[(chat["id"], draft_id)] = shown
        self.drafted.append(shown)
        return True

    async def _m_answerCallbackQuery(self, params: dict[str, Any]) -> Any:
        query_id = str(params.get("callback_query_id") or "")
        if query_id not in self._queries or query_id in self.callback_answers:
            raise ApiError(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        if len(str(params.get("text") or "")) > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        self.callback_answers[query_id] = params
        return True

    # -- checks ---------------------------------------------------------------------------------

    def _chat(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            chat_id = int(params["chat_id"])
        except (KeyError, ValueError):
            raise ApiError(400, "Bad Request: chat_id is empty") from None
        if chat_id in self.migrated:
            raise ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": self.migrated[chat_id]},
            )
        chat = self.chats.get(chat_id)
        if chat is None:
            raise ApiError(400, "Bad Request: chat not found")
        return chat

    def _rate(self, chat_id: int) -> None:
        now = time.monotonic()
        limits = [(self._recent[chat_id], self.rate_count, self.rate_window_s)]
        if self.global_rate_count is not None:
            limits.append((self._recent_all, self.global_rate_count, self.global_rate_window_s))
        for recent, count, window in limits:
            while recent and recent[0] <= now - window:
                recent.popleft()
            if len(recent) >= count:
                retry = max(1, math.ceil(recent[0] + window - now))
                raise ApiError(
                    429, f"Too Many Requests: retry after {retry}", {"retry_after": retry}
                )
        for recent, _, _ in limits:
            recent.append(now)


def _inline_keyboard(params: dict[str, Any]) -> dict[str, Any] | None:
    """The message's inline keyboard, checked as Telegram checks callback buttons."""
    markup = params.get("reply_markup")
    if isinstance(markup, str):
        markup = json.loads(markup)
    if markup is None:
        return None
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise ApiError(400, "Bad Request: can't parse inline keyboard button: not an array")
    for button in (b for row in rows for b in row):
        data = button.get("callback_data") if isinstance(button, dict) else None
        if not isinstance(data, str) or not 1 <= len(data.encode()) <= 64:
            raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        if not str(button.get("text") or "").strip():
            raise ApiError(400, "Bad Request: text buttons are unallowed in the inline keyboard")
    return {"inline_keyboard": [[dict(b) for b in row] for row in rows]} if rows else None


# -- formatting checks ---------------------------------------------------------------------------


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _formatted(
    params: dict[str, Any], reject_entities: bool = False
) -> tuple[str, list[dict[str, Any]]]:
    """The message text after entity parsing, and its entities; raises like Telegram."""
    raw = params.get("text")
    if not isinstance(raw, str) or not raw.strip():
        raise ApiError(400, "Bad Request: message text is empty")
    mode = (params.get("parse_mode") or "").lower()
    if mode == "markdownv2":
        text = _parse_markdown_v2(raw)
        entities: list[dict[str, Any]] = []
    elif mode == "html":
        text = _parse_html(raw)
        entities = []
    else:
        text, entities = raw, _check_entities(raw, params.get("entities") or [])
    if entities and reject_entities:
        raise ApiError(400, "Bad Request: can't parse entities: unsupported entity")
    if utf16_len(text) > LIMIT:
        raise ApiError(400, "Bad Request: message is too long")
    if not text.strip():
        raise ApiError(400, "Bad Request: message text is empty")
    return text, entities


def _check_entities(text: str, entities: Any) -> list[dict[str, Any]]:
    if isinstance(entities, str):
        entities = json.loads(entities)
    size = utf16_len(text)
    for entity in entities:
        offset, length = entity.get("offset"), entity.get("length")
        if (
            not (isinstance(offset, int) and isinstance(length, int))
            or offset < 0
            or length < 1
            or offset + length > size
            or not entity.get("type")
        ):
            raise ApiError(400, f"Bad Request: can't parse entities: wrong entity {entity}")
    return [dict(e) for e in entities]


def _parse_markdown_v2(raw: str) -> str:
    """Strip MarkdownV2 markup, rejecting what Telegram rejects (a close approximation)."""
    out: list[str] = []
    open_marks: list[str] = []
    i = 0
    while i < len(raw):
        char = raw[i]
        if char == "\\" and i + 1 < len(raw):
            out.append(raw[i + 1])
            i += 2
            continue
        mark = (
            raw[i : i + 2]
            if raw[i : i + 2] in ("__", "||")
            else raw[i : i + 3]
            if raw[i : i + 3] == "```"
            else char
        )
        if mark in ("*", "_", "__", "~", "||", "`", "```"):
            if open_marks and open_marks[-1] == mark:
                open_marks.pop()
            else:
                open_marks.append(mark)
            i += len(mark)
            continue
        if char in MDV2_RESERVED and not (open_marks and open_marks[-1] in ("`", "```")):
            byte = len(raw[:i].encode())
            raise ApiError(
                400,
                "Bad Request: can't parse entities: Character "
                f"'{char}' is reserved and must be escaped with the preceding '\\' "
                f"(byte offset {byte})",
            )
        out.append(char)
        i += 1
    if open_marks:
        raise ApiError(
            400,
            f"Bad Request: can't parse entities: Can't find end of the entity '{open_marks[-1]}'",
        )
    return "".join(out)


class _HtmlChecker(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in HTML_TAGS:
            raise ApiError(
                400, f'Bad Request: can\'t parse entities: Unsupported start tag "{tag}"'
            )
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            raise ApiError(400, f'Bad Request: can\'t parse entities: Unmatched end tag "{tag}"')

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse_html(raw: str) -> str:
    checker = _HtmlChecker()
    checker.feed(raw)
    checker.close()
    if checker.stack or "<" in "".join(checker.text):
        raise ApiError(400, "Bad Request: can't parse entities: Can't find end tag")
    return "".join(checker.text)


# -- request / response plumbing -------------------------------------------------------------------


async def _params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query)
    body = await request.read()
    kind = request.content_type
    if body and kind == "application/json":
        params.update(json.loads(body))
    elif body and kind == "application/x-www-form-urlencoded":
        for key, value in parse_qsl(body.decode()):
            params[key] = _maybe_json(value)
    return params


def _maybe_json(value: str) -> Any:
    if value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _answer(error: ApiError) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": error.code, "description": error.description}
    if error.parameters:
        body["parameters"] = error.parameters
    return web.json_response(body, status=error.code)


def _member(user: dict[str, Any], owner: bool) -> dict[str, Any]:
    if owner:
        return {"status": "creator", "user": user, "is_anonymous": False}
    rights = (
        "can_manage_chat",
        "can_delete_messages",
        "can_manage_video_chats",
        "can_restrict_members",
        "can_promote_members",
        "can_change_info",
        "can_invite_users",
        "can_post_stories",
        "can_edit_stories",
        "can_delete_stories",
    )
    return {
        "status": "administrator",
        "user": user,
        "can_be_edited": False,
        "is_anonymous": False,
        **dict.fromkeys(rights, True),
    }


# -- update builders (shapes as in wire/telegram/) -----------------------------------------------


def private_chat(user: dict[str, Any]) -> dict[str, Any]:
    chat = {"id": user["id"], "first_name": user["first_name"], "type": "private"}
    if "username" in user:
        chat["username"] = user["username"]
    return chat


def supergroup(
    chat_id: int = -1001987654321, title: str = "LLM Lab", forum: bool = False
) -> dict[str, Any]:
    chat: dict[str, Any] = {"id": chat_id, "title": title, "type": "supergroup"}
    if forum:
        chat["is_forum"] = True
    return chat


_message_ids = iter(range(1000, 10**9))


def callback_query(
    query_id: str, user: dict[str, Any], message: dict[str, Any], data: str
) -> dict[str, Any]:
    """A ``callback_query`` update body: ``user`` pressed a button of the bot's ``message``."""
    return {
        "id": query_id,
        "from": user,
        "message": json.loads(json.dumps(message)),  # as it is at the press, not later
        "chat_instance": str(-7_214_466_318_260_457_411 - message["chat"]["id"]),
        "data": data,
    }


def message(
    chat: dict[str, Any], user: dict[str, Any], text: str | None, **extra: Any
) -> dict[str, Any]:
    """A ``message`` update body; ``text=None`` gives a sticker message."""
    body: dict[str, Any] = {
        "message_id": next(_message_ids),
        "from": user,
        "chat": chat,
        "date": int(time.time()),
    }
    if text is None:
        body["sticker"] = {
            "file_id": "CAACAgIAAxkBAAIBQmYfake",
            "file_unique_id": "AgADfake",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": "👍",
        }
    else:
        body["text"] = text
        entities = _implicit_entities(text)
        if entities:
            body["entities"] = entities
    body.update(extra)
    return {"message": body}


def media_message(
    chat: dict[str, Any], user: dict[str, Any], caption: str = "", **media: Any
) -> dict[str, Any]:
    """A ``message`` update with media (``photo=``, ``voice=``, ``document=``...) and an
    optional caption, whose mention / command entities are ``caption_entities``."""
    update = message(chat, user, "")
    body = update["message"]
    del body["text"]
    body.update(media)
    if caption:
        body["caption"] = caption
        if entities := _implicit_entities(caption):
            body["caption_entities"] = entities
    return update


def photo_sizes(file_id: str, size: int) -> list[dict[str, Any]]:
    """A photo's ``PhotoSize`` list as Telegram sends it: thumbnails first, the original last
    (the thumbnails' ids point at the same test file)."""
    sizes = [(90, 67, size // 40), (320, 240, size // 8), (800, 600, size // 2)]
    sizes.append((1280, 960, size))
    return [
        {
            "file_id": file_id if (width == 1280) else f"{file_id}-{width}",
            "file_unique_id": f"AQAD{width}",
            "file_size": file_size,
            "width": width,
            "height": height,
        }
        for width, height, file_size in sizes
    ]


def voice_note(file_id: str, size: int, duration: int = 3) -> dict[str, Any]:
    return {
        "file_id": file_id,
        "file_unique_id": "AgADvoice",
        "duration": duration,
        "mime_type": "audio/ogg",
        "file_size": size,
    }


def document(file_id: str, size: int, name: str, mime: str) -> dict[str, Any]:
    return {
        "file_id": file_id,
        "file_unique_id": "AgADdoc",
        "file_name": name,
        "mime_type": mime,
        "file_size": size,
    }


def _implicit_entities(text: str) -> list[dict[str, Any]]:
    """The mention / bot_command entities Telegram would attach."""
    entities: list[dict[str, Any]] = []
    if text.startswith("/"):
        length = utf16_len(text.split(" ", 1)[0])
        entities.append({"offset": 0, "length": length, "type": "bot_command"})
    position = 0
    for word in text.split(" "):
        if word.startswith("@") and len(word) > 1:
            entities.append(
                {"offset": utf16_len(text[:position]), "length": utf16_len(word), "type": "mention"}
            )
        position += len(word) + 1
    return entities


@pytest.fixture
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    """A started FakeTelegram (no rate limit unless a test sets one), stopped after the test."""
    fake = await FakeTelegram().start()
    try:
        yield fake
    finally:
        await fake.stop()
