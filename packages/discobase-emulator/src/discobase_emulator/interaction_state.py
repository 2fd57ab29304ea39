"""What the emulator remembers of each interaction: its token, its clock, and every answer.

Discord gives a bot 3 seconds to acknowledge an interaction (once), and then 15 minutes to
use its token for the original response and follow-ups. Both clocks run on `time.monotonic`
from `created`, which the control API can move back (`age`) so a test reaches a deadline
without waiting for it. Interactions live in memory only: like their tokens on Discord they
are short-lived, and an emulator restart ends them.

Ephemeral messages belong to the interaction, not to the channel: nobody else sees them,
they are never in history and never dispatched to bots, so they are kept here (their
attachments are stored like any others, so their URLs work).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from .store import Message

ACK_DEADLINE = 3.0
TOKEN_LIFETIME = 15 * 60.0

APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
CHANNEL_MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE = 4, 5, 6, 7
AUTOCOMPLETE_RESULT, MODAL = 8, 9


@dataclass
class Interaction:
    id: int
    token: str
    application_id: int
    type: int
    guild_id: int
    channel_id: int
    user_id: int
    payload: dict[str, Any]
    created: float = field(default_factory=time.monotonic)
    message_id: int | None = None  # the message whose component was used (or the modal's)
    callback: dict[str, Any] | None = None  # {"type", "data"} as the bot sent it
    original_id: int | None = None
    followups: list[int] = field(default_factory=list)
    ephemeral: dict[int, Message] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    modal_open: bool = False  # a modal it opened that has not been submitted yet
    answered: asyncio.Event = field(default_factory=asyncio.Event)  # set by the callback

    def age(self) -> float:
        return time.monotonic() - self.created

    @property
    def acknowledged(self) -> bool:
        return self.callback is not None

    def too_late_to_ack(self) -> bool:
        return self.age() > ACK_DEADLINE

    def token_expired(self) -> bool:
        return self.age() > TOKEN_LIFETIME


class Interactions:
    """Every interaction by id and by token (follow-ups name only the token)."""

    def __init__(self) -> None:
        self.by_id: dict[int, Interaction] = {}
        self.by_token: dict[str, Interaction] = {}

    def add(self, inter: Interaction) -> None:
        self.prune()
        self.by_id[inter.id] = inter
        self.by_token[inter.token] = inter

    def prune(self) -> None:
        """Forget interactions whose token expired, so memory stays bounded."""
        for inter in [i for i in self.by_id.values() if i.token_expired()]:
            del self.by_id[inter.id]
            del self.by_token[inter.token]

    def clear(self) -> None:
        self.by_id.clear()
        self.by_token.clear()

    def ephemeral_message(self, channel_id: int, message_id: int) -> Message | None:
        """An ephemeral message still reachable through one of its interactions."""
        for inter in self.by_id.values():
            msg = inter.ephemeral.get(message_id)
            if msg is not None and msg.channel_id == channel_id:
                return msg
        return None
