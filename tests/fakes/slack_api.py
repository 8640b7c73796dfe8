"""A fake Slack on 127.0.0.1: the Web API methods ollabot uses and a Socket Mode WebSocket.

It speaks the real wire format (``wire/README.md``, section slack/, names the sources):
form, query or JSON bodies with a Bearer token; ``{"ok": ...}`` answers; HTTP 429 with
``Retry-After`` past a per-channel rate (``chat.postMessage`` about 1/s, ``chat.update``
about 50/min, small bursts allowed); ``msg_too_long`` above 4,000 characters on
``chat.update``; Socket Mode ``hello``, envelopes and acknowledgements. It can also play
Slack in HTTP mode, sending signed requests. Blocks are recorded as sent (``chat.update``
keeps the old ones unless given new ones, as Slack does) and a button in them can be pressed:
a ``block_actions`` payload, delivered as an ``interactive`` envelope or a signed form post.
``chat.startStream``/``appendStream``/``stopStream`` stream Markdown into a thread reply;
``refuse_streams`` makes them answer with an error instead, as in a workspace that does not
allow them. Blocks are refused (``invalid_blocks``) beyond Slack's sizes: 50 blocks, 3,000
characters of section text, 10 context elements of 3,000 characters each (other block types
are taken unchecked). Files: ``add_file`` keeps bytes and returns the file object a
``file_share`` message carries (``url_private``, ``url_private_download`` on this server,
``mimetype``, ``size``, ``mode: hosted``); a download needs ``Authorization: Bearer`` with the
bot token, and without it gets Slack's sign-in page as HTML with status 200, as real Slack does.
Honest limits: one workspace, no files.info, no pagination.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web

TEAM = "T07TEAM0001"
BOT_USER = "U07OLLABOT1"
BOT_ID = "B07OLLABOT1"
APP_ID = "A07OLLABOT1"
ALICE = "U07ALICE001"
BOB = "U07BOB00001"
DM_CHANNEL = "D07DMALICE1"
LAB_CHANNEL = "C07LLMLAB01"
BOT_TOKEN = "xoxb-fake"
APP_TOKEN = "xapp-1-fake-app-token"
UPDATE_LIMIT = 4000
POST_LIMIT = 40000
MAX_BLOCKS = 50
BLOCK_TEXT_LIMIT = 3000
MAX_CONTEXT_ELEMENTS = 10


@dataclass
class ApiCall:
    method: str
    args: dict[str, Any]
    at: float
    status: int = 200
    error: str = ""


@dataclass
class Message:
    """A message as Slack stores it; ``edits`` counts successful chat.update calls."""

    channel: str
    ts: str
    text: str
    thread_ts: str = ""
    user: str = BOT_USER
    edits: int = 0
    streaming: bool = False
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def button(self) -> dict[str, Any] | None:
        """The button of the message's actions block, if it shows one."""
        return _button_in(self.blocks)


@dataclass
class Ephemeral:
    """A message only ``user`` sees (it has a ts, but no API call can find it again)."""

    channel: str
    user: str
    text: str
    ts: str = ""
    thread_ts: str = ""
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def button(self) -> dict[str, Any] | None:
        return _button_in(self.blocks)


def _button_in(blocks: list[dict[str, Any]]) -> dict[str, Any] | None:
    for block in blocks:
        if block.get("type") == "actions" and block.get("elements"):
            element: dict[str, Any] = block["elements"][0]
            return element
    return None


@dataclass
class Envelope:
    envelope_id: str
    kind: str
    payload: dict[str, Any]
    sent_at: float
    acked_at: float | None = None
    ack_payload: dict[str, Any] | None = None


@dataclass
class Bucket:
    """A token bucket: ``capacity`` calls at once, refilled at ``per_s`` per second."""

    capacity: float
    per_s: float
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def take(self) -> float:
        """0 when allowed, else the whole seconds to wait (Slack's ``Retry-After``)."""
        now = time.monotonic()
        if self.tokens < 0:
            self.tokens = self.capacity
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.per_s)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0
        return max(1, math.ceil((1 - self.tokens) / self.per_s))


class FakeSlack:
    """One fake workspace with our bot, Alice (a workspace admin) and Bob (a member).

    A user with a ``team`` of another workspace is a Slack Connect guest from there.
    """

    def __init__(
        self,
        post_rate: tuple[float, float] = (3, 1.0),
        update_rate: tuple[float, float] = (5, 50 / 60),
    ) -> None:
        self.port = 0
        self.connections = 0
        self.calls: list[ApiCall] = []
        self.messages: dict[tuple[str, str], Message] = {}
        self.ephemerals: list[Ephemeral] = []
        self.envelopes: dict[str, Envelope] = {}
        self.users: dict[str, dict[str, Any]] = {
            ALICE: {"name": "alice", "is_admin": True, "is_owner": False},
            BOB: {"name": "bob", "is_admin": False, "is_owner": False},
        }
        self.rates = {
            "chat.postMessage": post_rate,
            "chat.update": update_rate,
            "chat.appendStream": (10, 100 / 60),
        }
        self.refuse_streams = ""  # an error code: the workspace refuses the stream methods
        self.injected: dict[str, list[tuple[int, dict[str, Any], dict[str, str]]]] = {}
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self._ts = itertools.count(1)
        self._sockets: list[web.WebSocketResponse] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.files: dict[str, bytes] = {}  # file id -> bytes
        self.downloads: list[tuple[str, bool]] = []  # (file id, whether the token was right)

    # ---- lifecycle -------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The Web API base URL (``OLLABOT_SLACK__API_BASE_URL``)."""
        return f"http://127.0.0.1:{self.port}/api/"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link/", self._socket)
        app.router.add_get("/files-pri/{team_file}/{rest:.+}", self._download)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- what tests look at -----------------------------------------------------------

    def next_ts(self) -> str:
        return f"1767270000.{next(self._ts):06d}"

    async def wait_until(self, condition: Callable[[], bool], within_s: float = 10.0) -> None:
        """Wait until ``condition()`` holds, re-checked whenever the fake records something."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(condition), within_s)

    def bot_messages(self, channel: str, thread_ts: str = "") -> list[Message]:
        """The bot's messages in a thread (or at the top level), oldest first."""
        return sorted(
            (
                m
                for m in self.messages.values()
                if m.channel == channel and m.thread_ts == thread_ts and m.user == BOT_USER
            ),
            key=lambda m: m.ts,
        )

    def calls_to(self, method: str) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method]

    def inject(self, method: str, status: int, body: dict[str, Any], **headers: str) -> None:
        """Answer the next call of ``method`` with this response instead."""
        self.injected.setdefault(method, []).append((status, body, headers))

    def stream_calls(self) -> list[ApiCall]:
        return [c for c in self.calls if c.method.endswith("Stream")]

    # ---- Socket Mode -----------------------------------------------------------------

    async def deliver(self, kind: str, payload: dict[str, Any], retry_attempt: int = 0) -> Envelope:
        """Send an envelope (``events_api`` or ``slash_commands``) to the connected app."""
        envelope_id = str(uuid.uuid4())
        frame: dict[str, Any] = {
            "envelope_id": envelope_id,
            "payload": payload,
            "type": kind,
            "accepts_response_payload": kind == "slash_commands",
        }
        if kind == "events_api":
            frame["retry_attempt"] = retry_attempt
            frame["retry_reason"] = "timeout" if retry_attempt else ""
        envelope = Envelope(envelope_id, kind, payload, time.monotonic())
        self.envelopes[envelope_id] = envelope
        await self._send(frame)
        envelope.sent_at = time.monotonic()
        return envelope

    async def _send(self, frame: dict[str, Any]) -> None:
        """Send on the newest open connection (waiting for one while the app reconnects)."""
        while True:
            await self.wait_until(lambda: self._open_socket() is not None)
            ws = self._open_socket()
            try:
                if ws is not None:
                    await ws.send_str(json.dumps(frame))
                    return
            except ConnectionError:
                continue

    def _open_socket(self) -> web.WebSocketResponse | None:
        return next((ws for ws in reversed(self._sockets) if not ws.closed), None)

    async def ask_to_reconnect(self) -> None:
        """Send ``disconnect`` (``refresh_requested``), as Slack does every few hours."""
        frame = {"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "x"}}
        await self._send(frame)

    async def wait_for_ack(self, envelope: Envelope, within_s: float = 5.0) -> float:
        """Wait for the acknowledgement; returns the seconds it took."""
        await self.wait_until(lambda: envelope.acked_at is not None, within_s)
        assert envelope.acked_at is not None
        return envelope.acked_at - envelope.sent_at

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        self.connections += 1
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._sockets),
                "debug_info": {"host": "applink-fake", "approximate_connection_time": 18060},
                "connection_info": {"app_id": APP_ID},
            }
        )
        await self._notify()
        try:
            async for frame in ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    await self._record_ack(json.loads(frame.data))
        finally:
            self._sockets.remove(ws)
        return ws

    async def _record_ack(self, ack: dict[str, Any]) -> None:
        envelope = self.envelopes.get(str(ack.get("envelope_id")))
        if envelope is not None and envelope.acked_at is None:
            envelope.acked_at = time.monotonic()
            envelope.ack_payload = ack.get("payload")
        await self._notify()

    # ---- HTTP mode: Slack calling the app ----------------------------------------------

    @staticmethod
    def sign(secret: str, timestamp: str, body: bytes) -> str:
        base = b"v0:" + timestamp.encode() + b":" + body
        return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()

    async def send_http(
        self,
        url: str,
        body: bytes,
        secret: str,
        *,
        content_type: str = "application/json",
        timestamp: int | None = None,
        signature: str | None = None,
        retry_num: int | None = None,
    ) -> tuple[int, str, float]:
        """POST a signed request like Slack does; returns status, body and seconds taken."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": signature or self.sign(secret, stamp, body),
        }
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        started = time.monotonic()
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=body, headers=headers) as response,
        ):
            return response.status, await response.text(), time.monotonic() - started

    # ---- payloads Slack would send -----------------------------------------------------

    def event_body(self, event: dict[str, Any]) -> dict[str, Any]:
        """An ``event_callback`` body around ``event`` with a fresh ``event_id``."""
        return {
            "token": "vErIfIcAtIoNtOkEn0000000",
            "team_id": TEAM,
            "context_team_id": TEAM,
            "context_enterprise_id": None,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": TEAM,
                    "user_id": BOT_USER,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": "4-opaque",
        }

    def user_message(
        self,
        text: str,
        *,
        channel: str = DM_CHANNEL,
        user: str = ALICE,
        thread_ts: str = "",
        kind: str = "message",
        files: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A person's ``message`` (or ``app_mention``) event; DMs when the channel is D….
        With ``files`` it is a ``file_share`` message carrying them."""
        ts = self.next_ts()
        event: dict[str, Any] = {
            "user": user,
            "type": kind,
            "ts": ts,
            "client_msg_id": str(uuid.uuid4()),
            "text": text,
            "team": TEAM,
            "channel": channel,
            "event_ts": ts,
        }
        if kind == "message":
            event["channel_type"] = "im" if channel.startswith("D") else "channel"
        if thread_ts:
            event["thread_ts"] = thread_ts
            event["parent_user_id"] = ALICE
        if files:
            event["files"] = files
            event["upload"] = False
            if kind == "message":
                event["subtype"] = "file_share"
        self.messages[(channel, ts)] = Message(channel, ts, text, thread_ts, user)
        return self.event_body(event)

    def add_file(self, data: bytes, name: str, mimetype: str) -> dict[str, Any]:
        """Keep an uploaded file; returns its object as a message's ``files`` lists it."""
        file_id = f"F07{uuid.uuid4().hex[:8].upper()}"
        self.files[file_id] = data
        private = f"http://127.0.0.1:{self.port}/files-pri/{TEAM}-{file_id}/{name}"
        return {
            "id": file_id,
            "created": int(time.time()),
            "timestamp": int(time.time()),
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": name.rsplit(".", 1)[-1],
            "user": ALICE,
            "size": len(data),
            "mode": "hosted",
            "is_external": False,
            "is_public": False,
            "url_private": private,
            "url_private_download": f"{private.rsplit('/', 1)[0]}/download/{name}",
            "permalink": f"https://ollalab.slack.com/files/{ALICE}/{file_id}/{name}",
        }

    def command_payload(
        self, text: str, *, user: str = ALICE, channel: str = LAB_CHANNEL
    ) -> dict[str, str]:
        """A ``/ollabot`` slash command as Socket Mode delivers it (all values strings)."""
        return {
            "token": "vErIfIcAtIoNtOkEn0000000",
            "team_id": TEAM,
            "team_domain": "ollalab",
            "channel_id": channel,
            "channel_name": "llm-lab",
            "user_id": user,
            "user_name": str(self.users.get(user, {}).get("name", user)),
            "command": "/ollabot",
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": f"http://127.0.0.1:{self.port}/commands/{TEAM}/1/x",
            "trigger_id": f"{uuid.uuid4().int % 10**13}.7300000000001.{uuid.uuid4().hex}",
        }

    @staticmethod
    def command_form(payload: dict[str, str]) -> bytes:
        return urlencode(payload).encode()

    def press(self, message: Message | Ephemeral, user: str = ALICE) -> dict[str, Any]:
        """The ``block_actions`` payload of ``user`` pressing the button ``message`` shows."""
        button = message.button()
        assert button is not None, "the message shows no button"
        name = str(self.users.get(user, {}).get("name", user))
        ephemeral = isinstance(message, Ephemeral)
        container: dict[str, Any] = {
            "type": "message",
            "message_ts": message.ts,
            "channel_id": message.channel,
            "is_ephemeral": ephemeral,
        }
        if message.thread_ts:
            container["thread_ts"] = message.thread_ts
        return {
            "type": "block_actions",
            "user": {"id": user, "username": name, "name": name, "team_id": TEAM},
            "api_app_id": APP_ID,
            "token": "vErIfIcAtIoNtOkEn0000000",
            "container": container,
            "trigger_id": f"{uuid.uuid4().int % 10**13}.7300000000001.{uuid.uuid4().hex}",
            "team": {"id": TEAM, "domain": "ollalab"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": message.channel, "name": "llm-lab"},
            # an ephemeral message cannot be looked up, so Slack does not echo it
            **(
                {"message": _echo(message) | {"blocks": message.blocks}}
                if isinstance(message, Message)
                else {}
            ),
            "state": {"values": {}},
            "response_url": f"http://127.0.0.1:{self.port}/actions/{TEAM}/1/x",
            "actions": [
                {
                    "action_id": button["action_id"],
                    "block_id": str(button.get("block_id", "b1")),
                    "text": button["text"],
                    "value": button.get("value", ""),
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }

    @staticmethod
    def interaction_form(payload: dict[str, Any]) -> bytes:
        """How HTTP mode carries an interaction: a form with one ``payload`` field of JSON."""
        return urlencode({"payload": json.dumps(payload)}).encode()

    # ---- files ---------------------------------------------------------------------------

    async def _download(self, request: web.Request) -> web.Response:
        file_id = request.match_info["team_file"].removeprefix(f"{TEAM}-")
        authorized = request.headers.get("Authorization") == f"Bearer {BOT_TOKEN}"
        self.downloads.append((file_id, authorized))
        if not authorized:
            page = (
                "<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in</body></html>"
            )
            return web.Response(text=page, content_type="text/html")
        if file_id not in self.files:
            return web.Response(status=404, text="file_not_found")
        return web.Response(body=self.files[file_id], content_type="application/octet-stream")

    # ---- the Web API -------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _arguments(request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        call = ApiCall(method, args, time.monotonic())
        self.calls.append(call)
        status, body, headers = self._answer(method, token or str(args.get("token", "")), args)
        call.status, call.error = status, str(body.get("error", ""))
        await self._notify()
        return web.json_response(body, status=status, headers=headers)

    def _answer(
        self, method: str, token: str, args: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self.injected.get(method):
            return self.injected[method].pop(0)
        expected = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if token != expected:
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        wait = self._rate_limit(method, str(args.get("channel", "")))
        if wait:
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(wait)}
        result: dict[str, Any] = handler(args)
        return 200, result, {}

    def _rate_limit(self, method: str, channel: str) -> int:
        rate = self.rates.get(method)
        if rate is None:
            return 0
        bucket = self._buckets.setdefault((method, channel), Bucket(*rate))
        return int(bucket.take())

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://ollalab.slack.com/",
            "team": "Olla Lab",
            "user": "ollabot",
            "team_id": TEAM,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        ticket = uuid.uuid4()
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}"}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user")))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        return {
            "ok": True,
            "user": {
                "id": args["user"],
                "team_id": user.get("team", TEAM),
                "name": user["name"],
                "deleted": False,
                "real_name": user["name"].title(),
                "profile": {"display_name": user["name"], "real_name": user["name"].title()},
                "is_admin": user["is_admin"],
                "is_owner": user["is_owner"],
                "is_primary_owner": False,
                "is_bot": False,
                **({"locale": user.get("locale", "en-US")} if args.get("include_locale") else {}),
            },
        }

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        text, channel = str(args.get("text") or ""), str(args.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not text:
            return {"ok": False, "error": "no_text"}
        if len(text) > POST_LIMIT:
            return {"ok": False, "error": "msg_too_long"}
        if not blocks_fit(_blocks(args.get("blocks"))):
            return {"ok": False, "error": "invalid_blocks"}
        message = Message(channel, self.next_ts(), text, str(args.get("thread_ts") or ""))
        message.blocks = _blocks(args.get("blocks"))
        self.messages[(channel, message.ts)] = message
        return {"ok": True, "channel": channel, "ts": message.ts, "message": _echo(message)}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self.messages.get((str(args.get("channel")), str(args.get("ts"))))
        text = str(args.get("text") or "")
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if message.user != BOT_USER:
            return {"ok": False, "error": "cant_update_message"}
        if message.streaming:
            return {"ok": False, "error": "streaming_state_conflict"}
        if len(text) > UPDATE_LIMIT:
            return {"ok": False, "error": "msg_too_long"}
        if not blocks_fit(_blocks(args.get("blocks"))):
            return {"ok": False, "error": "invalid_blocks"}
        message.text, message.edits = text, message.edits + 1
        if "blocks" in args:
            message.blocks = _blocks(args["blocks"])
        echo = _echo(message) | {"edited": {"user": BOT_ID, "ts": self.next_ts()}}
        return {
            "ok": True,
            "channel": message.channel,
            "ts": message.ts,
            "text": text,
            "message": echo,
        }

    def _chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        text = str(args.get("text") or "")
        if not text:
            return {"ok": False, "error": "no_text"}
        if not blocks_fit(_blocks(args.get("blocks"))):
            return {"ok": False, "error": "invalid_blocks"}
        ephemeral = Ephemeral(
            str(args["channel"]),
            str(args["user"]),
            text,
            self.next_ts(),
            str(args.get("thread_ts") or ""),
            _blocks(args.get("blocks")),
        )
        self.ephemerals.append(ephemeral)
        return {"ok": True, "message_ts": ephemeral.ts}

    def _chat_startStream(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel") or "")
        thread = str(args.get("thread_ts") or "")
        if self.refuse_streams:
            return {"ok": False, "error": self.refuse_streams}
        if not thread:
            return {"ok": False, "error": "invalid_arguments"}
        if not channel.startswith("D") and not args.get("recipient_user_id"):
            return {"ok": False, "error": "missing_recipient_user_id"}
        text = str(args.get("markdown_text") or "")
        message = Message(channel, self.next_ts(), text, thread, streaming=True)
        self.messages[(channel, message.ts)] = message
        return {"ok": True, "channel": channel, "ts": message.ts}

    def _chat_appendStream(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.refuse_streams:
            return {"ok": False, "error": self.refuse_streams}
        message = self.messages.get((str(args.get("channel")), str(args.get("ts"))))
        if message is None or not message.streaming:
            return {"ok": False, "error": "message_not_in_streaming_state"}
        message.text += str(args.get("markdown_text") or "")
        return {"ok": True, "channel": message.channel, "ts": message.ts}

    def _chat_stopStream(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self.messages.get((str(args.get("channel")), str(args.get("ts"))))
        if message is None or not message.streaming:
            return {"ok": False, "error": "message_not_in_streaming_state"}
        if not blocks_fit(_blocks(args.get("blocks"))):
            return {"ok": False, "error": "invalid_blocks"}
        message.text += str(args.get("markdown_text") or "")
        message.streaming = False
        message.blocks = _blocks(args.get("blocks"))
        echo = _echo(message) | {"streaming_state": "completed"}
        return {"ok": True, "channel": message.channel, "ts": message.ts, "message": echo}

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def _echo(message: Message) -> dict[str, Any]:
    echo: dict[str, Any] = {
        "user": BOT_USER,
        "type": "message",
        "ts": message.ts,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "text": message.text,
        "team": TEAM,
    }
    if message.thread_ts:
        echo |= {"thread_ts": message.thread_ts, "parent_user_id": ALICE}
    return echo


def blocks_fit(blocks: list[dict[str, Any]]) -> bool:
    """Whether Slack would take these blocks (sections' and contexts' sizes checked)."""
    if len(blocks) > MAX_BLOCKS:
        return False
    for block in blocks:
        if block.get("type") == "section":
            texts = [str((block.get("text") or {}).get("text") or "")]
        elif block.get("type") == "context":
            elements = block.get("elements") or []
            if not 0 < len(elements) <= MAX_CONTEXT_ELEMENTS:
                return False
            texts = [str(element.get("text") or "") for element in elements]
        else:
            continue  # other block types are taken unchecked
        if not all(0 < len(text) <= BLOCK_TEXT_LIMIT for text in texts):
            return False
    return True


def _blocks(blocks: Any) -> list[dict[str, Any]]:
    """Blocks as sent: a JSON array, or its text in a form field."""
    if isinstance(blocks, str):
        blocks = json.loads(blocks) if blocks else []
    return list(blocks or [])


async def _arguments(request: web.Request) -> dict[str, Any]:
    args: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        args.update(await request.json())
    elif request.can_read_body:
        args.update(dict(await request.post()))
    return args


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    """A fresh fake Slack per test."""
    server = FakeSlack()
    await server.start()
    yield server
    await server.stop()
