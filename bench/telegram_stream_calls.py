"""Bot API calls per streamed reply: native drafts (private chats) against edits.

Run: ``.venv/bin/python -m bench.telegram_stream_calls [--tokens 300] [--rate 30]``.
One reply of ``--tokens`` tokens arriving at ``--rate`` tokens a second is streamed through the
real ``TelegramSink`` with Telegram's pacing (``Limits()``: one call a second in a private
chat, 20 messages a minute in a group) into the fake Bot API, three times at once, in three
chats: a private chat with drafts, a private chat where drafts are off (edits), and a group
(edits under the group's budget). Every Bot API call of the reply counts (typing included).
Prints the calls per reply of each and the ratio drafts / edits in a private chat.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from typing import Any

from adapters.telegram.buttons import Controls
from adapters.telegram.drafts import DraftSupport
from adapters.telegram.pacing import Limits, Pacers
from adapters.telegram.request import AiohttpRequest, BotApi
from adapters.telegram.sink import TelegramSink
from tests.fakes.telegram_api import ALICE, BOB, TOKEN, FakeTelegram, private_chat, supergroup

GROUP = supergroup()


async def stream(
    api: BotApi,
    pacers: Pacers,
    chat: dict[str, Any],
    drafts: DraftSupport,
    tokens: int,
    rate: float,
) -> None:
    """One reply: ``tokens`` words at ``rate`` a second, then the final text."""
    group = chat["type"] != "private"
    reply_to = {"chat_id": str(chat["id"]), "group": "1" if group else ""}
    controls = Controls(str(ALICE["id"]), f"tg:{chat['id']}", reply="bench1")
    sink = TelegramSink(api, pacers, reply_to, controls, drafts)
    await sink.begin()
    text, started = "", time.monotonic()
    for n in range(tokens):
        await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        text += f"word{n} "
        await sink.update(text)
    await sink.finish(text.strip())


async def main(tokens: int, rate: float) -> None:
    telegram = await FakeTelegram().start()
    chats = {
        "private, drafts": (private_chat(ALICE), DraftSupport()),
        "private, edits": (private_chat(BOB), DraftSupport(enabled=False)),
        "group, edits": (GROUP, DraftSupport()),
    }
    for chat, _ in chats.values():
        telegram.chats[chat["id"]] = chat
    request = AiohttpRequest()
    api, pacers = BotApi(request, f"{telegram.url}{TOKEN}"), Pacers(Limits())
    try:
        await asyncio.gather(
            *(stream(api, pacers, chat, d, tokens, rate) for chat, d in chats.values())
        )
    finally:
        await request.shutdown()
        await telegram.stop()
    print(
        f"method: one reply of {tokens} tokens at {rate:g} tokens/s ({tokens / rate:.0f} s) "
        "through TelegramSink with production pacing, against the fake Bot API; every call "
        "of the reply counted"
    )
    counts: dict[str, Counter[str]] = {}
    for name, (chat, _) in chats.items():
        counts[name] = Counter(
            c.method for c in telegram.calls if int(c.params.get("chat_id", 0)) == chat["id"]
        )
        errors = sum(
            c.status != 200 for c in telegram.calls if int(c.params["chat_id"]) == chat["id"]
        )
        total = sum(counts[name].values())
        print(f"{name}: {total} calls per reply {dict(counts[name])}, errors {errors}")
    drafts, edits = (sum(counts[n].values()) for n in ("private, drafts", "private, edits"))
    print(f"ratio drafts / edits (private chat): {drafts / edits:.2f}")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--rate", type=float, default=30.0)
    args = parser.parse_args()
    asyncio.run(main(args.tokens, args.rate))


if __name__ == "__main__":
    cli()
