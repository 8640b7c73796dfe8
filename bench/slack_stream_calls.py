"""Slack Web API calls per streamed reply: Slack's own streams against chat.update.

Run: ``.venv/bin/python -m bench.slack_stream_calls [--tokens 300] [--rate 30]``.
The real ``SlackSinks`` write one reply into a thread of the fake Slack while tokens arrive
at ``--rate`` per second, twice side by side: once in a workspace that allows
``chat.startStream``/``appendStream``/``stopStream``, once in one that refuses them (the
placeholder, ``chat.update`` previews and the final update). Both run under the sinks'
default pacing. Printed per way: the Web API calls of the reply, the characters of text
they carried, and the ratios of the update way to the stream way.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.sink import SlackAddress, SlackSinks
from core.models import IncomingMessage
from tests.fakes.slack_api import ALICE, BOT_TOKEN, LAB_CHANNEL, TEAM, FakeSlack


@dataclass(frozen=True, slots=True)
class Cost:
    calls: int
    characters: int
    seconds: float


def reply_message(thread: str) -> IncomingMessage:
    return IncomingMessage(
        platform="slack",
        message_id=f"Ev{thread}",
        conversation=f"slack:{TEAM}:{LAB_CHANNEL}:{thread}",
        channel=f"slack:{TEAM}:{LAB_CHANNEL}",
        author_id=ALICE,
        author_name="alice",
        text="tell me about KV caches",
        in_group=True,
        reply_to=SlackAddress(LAB_CHANNEL, thread, ALICE).to_reply_to(),
    )


async def one_reply(streams: bool, tokens: int, rate: float) -> Cost:
    """Stream one reply through the real sink into a fresh fake Slack; count its calls."""
    fake = FakeSlack()
    fake.refuse_streams = "" if streams else "not_allowed"
    await fake.start()
    try:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=fake.url)
        sinks = SlackSinks(client)
        if not streams:
            sinks.streams.refused = "not_allowed"  # learnt from an earlier reply
        sink = sinks(reply_message(fake.next_ts()))
        started = time.monotonic()
        await sink.begin()
        words: list[str] = []
        for n in range(tokens):
            await asyncio.sleep(1 / rate)
            words.append(f"tok{n}")
            await sink.update(" ".join(words))
        await sink.finish(" ".join(words))
        seconds = time.monotonic() - started
    finally:
        await fake.stop()
    characters = sum(
        len(str(call.args.get("text") or call.args.get("markdown_text") or ""))
        for call in fake.calls
    )
    return Cost(len(fake.calls), characters, seconds)


async def run(tokens: int, rate: float) -> None:
    stream, update = await asyncio.gather(
        one_reply(True, tokens, rate), one_reply(False, tokens, rate)
    )
    print(f"reply               {tokens} tokens at {rate:g} tokens/s ({stream.seconds:.1f} s)")
    print(f"chat.*Stream        {stream.calls} calls, {stream.characters} characters sent")
    print(f"post + chat.update  {update.calls} calls, {update.characters} characters sent")
    print(f"calls ratio         {update.calls / stream.calls:.2f} (update / stream)")
    print(f"characters ratio    {update.characters / max(1, stream.characters):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--rate", type=float, default=30.0, help="tokens per second")
    args = parser.parse_args()
    asyncio.run(run(args.tokens, args.rate))


if __name__ == "__main__":
    main()
