"""The Block Kit shape of a reply: its text in sections, and a Stop or Retry button below;
above them, when the channel shows it, a thinking model's reasoning in a context block.

A reply being written shows Stop; a finished one (stopped or not) shows Retry. A button's
value names the thread and the person whose question the reply answers, so that a press
can be checked and turned into a command (``adapters.slack.buttons``); Stop's also names the
reply (its question's ``reply_tag``), so that a late press stops no newer reply.
"""

from __future__ import annotations

import json
from typing import Any

from adapters.slack.formatting import split_message
from core.i18n import N_, _
from core.text import shortened

STOP_ACTION = "ollabot_stop"
RETRY_ACTION = "ollabot_retry"
COMMAND_OF_ACTION = {STOP_ACTION: "stop", RETRY_ACTION: "retry"}
STOP_LABEL = N_("Stop")
RETRY_LABEL = N_("Retry")
WRITING = N_("Writing the answer…")
SECTION_LIMIT = 3000  # characters of mrkdwn in one section block
TEXT_LIMIT = 3000  # characters of any other text object (a context element)
REASONING_MARK = "💭 "


def reply_blocks(
    mrkdwn: str,
    action: str | None,
    thread_ts: str,
    author: str,
    reasoning: str = "",
    reply: str = "",
) -> list[dict[str, Any]]:
    """The message as blocks: the ``reasoning`` if any, its text in sections, then the
    button ``action`` if any."""
    blocks = [reasoning_block(reasoning)] if reasoning.strip() else []
    blocks += [
        {"type": "section", "text": {"type": "mrkdwn", "text": part}}
        for part in split_message(mrkdwn, SECTION_LIMIT)
        if part
    ]
    if action is not None:
        blocks.append(button_block(action, thread_ts, author, reply))
    return blocks


def reasoning_block(reasoning: str) -> dict[str, Any]:
    """A thinking model's reasoning as small grey plain text, cut with an ellipsis to fit."""
    note = shortened(REASONING_MARK + reasoning.strip(), TEXT_LIMIT)
    return {"type": "context", "elements": [{"type": "plain_text", "text": note}]}


def private_stop_blocks(thread_ts: str, author: str, reply: str) -> list[dict[str, Any]]:
    """For a reply Slack streams (its message cannot carry buttons until it ends): the Stop
    button in a message only the asker sees."""
    section = {"type": "section", "text": {"type": "mrkdwn", "text": f"_{_(WRITING)}_"}}
    return [section, button_block(STOP_ACTION, thread_ts, author, reply)]


def button_block(action: str, thread_ts: str, author: str, reply: str = "") -> dict[str, Any]:
    """An actions block with one button; its label is in the language spoken now. Stop
    names ``reply``, the tag of the reply it stops."""
    label = STOP_LABEL if action == STOP_ACTION else RETRY_LABEL
    value = {"thread": thread_ts, "author": author}
    if action == STOP_ACTION and reply:
        value["reply"] = reply
    button = {
        "type": "button",
        "action_id": action,
        "text": {"type": "plain_text", "text": _(label)},
        "value": json.dumps(value),
    }
    return {"type": "actions", "elements": [button]}
