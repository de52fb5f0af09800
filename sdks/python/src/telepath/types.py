"""Wire types of the Telepath protocol v1, as typed dataclasses.

Every server frame, reply payload and REST body the SDK returns is one of
the dataclasses below (docs/PROTOCOL.md; the serde types in
``shared/src/protocol/`` are the source of truth for the field names).

* Field names are the wire names (``from`` is spelled ``from_`` in Python).
* Timestamps are kept as the server's RFC 3339 strings.
* Fields the server may leave out default to ``None`` (or an empty list).
* A field this version of the SDK does not know lands in ``extra``, so a
  newer server never breaks an older SDK; the whole frame as received is in
  ``raw`` for events.

Use :func:`parse_frame` to turn a decoded server frame (a ``dict``) into its
dataclass, and :func:`from_wire` for any of the types.
"""

from __future__ import annotations

import dataclasses
import types as _pytypes
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, Union

__all__ = [
    "ChosenStatus",
    "PresenceStatus",
    "UserRef",
    "User",
    "Limits",
    "Welcome",
    "ErrorBody",
    "Reply",
    "ReactionSummary",
    "Message",
    "DirectMessage",
    "MessageEdited",
    "MessageDeleted",
    "Reaction",
    "Receipt",
    "Broadcast",
    "Presence",
    "Typing",
    "Member",
    "RoomRef",
    "Invite",
    "Room",
    "RoomEvent",
    "RoomClosed",
    "Profile",
    "Notification",
    "NotificationsRead",
    "Announcement",
    "AnnouncementDismissed",
    "ServerError",
    "Bye",
    "UnknownFrame",
    "JoinReply",
    "SendReply",
    "DmReply",
    "EditReply",
    "DeleteReply",
    "ReactReply",
    "ReadReply",
    "StatusReply",
    "Participant",
    "MessagePage",
    "ThreadPage",
    "DmPage",
    "DmConversation",
    "DmState",
    "SearchResult",
    "SearchPage",
    "NotificationList",
    "OnlineUser",
    "LoginResponse",
    "Ticket",
    "ApiScope",
    "ApiKeyInfo",
    "CreatedApiKey",
    "PublishItem",
    "PublishOutcome",
    "DmResult",
    "ApiPresence",
    "AddedMembers",
    "DisconnectResult",
    "PublishToUserKind",
    "WebhookEvent",
    "WEBHOOK_EVENTS",
    "DeliveryStatus",
    "Webhook",
    "CreatedWebhook",
    "WebhookDelivery",
    "WebhookPayload",
    "StateChange",
    "Joined",
    "Recovery",
    "Gap",
    "RejoinError",
    "DmUpdated",
    "ServerFrame",
    "Event",
    "FRAME_TYPES",
    "EVENT_TYPES",
    "from_wire",
    "parse_frame",
]

ChosenStatus = Literal["online", "away", "busy", "meditating"]
"""Statuses a user may choose with ``status``."""
PresenceStatus = Literal["online", "away", "busy", "meditating", "offline"]
"""Every status a ``presence`` event may carry (``offline`` is the server's)."""
ApiScope = Literal["publish", "presence", "rooms", "users", "webhooks"]
"""What an API key may do: publish (to rooms and users), presence, rooms (create, add members), users (disconnect),
webhooks (manage every webhook; only a key without a room prefix)."""
PublishToUserKind = Literal["dm", "notification"]
"""What :meth:`telepath.TelepathServer.publish_to_user` sends: a DM (the default) or a notification of kind ``app``."""
WebhookEvent = Literal[
    "user.connected",
    "user.disconnected",
    "room.joined",
    "room.left",
    "message.created",
    "message.edited",
    "message.deleted",
    "presence.changed",
]
"""What a webhook can be told about."""
WEBHOOK_EVENTS: tuple[str, ...] = typing.get_args(WebhookEvent)
"""Every :data:`WebhookEvent`, in the protocol's order."""
DeliveryStatus = Literal["pending", "delivered", "failed"]
"""Where a webhook delivery stands (``failed``: its retries ran out)."""

T = TypeVar("T")


def _extra() -> dict[str, Any]:
    return {}


# ---------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class UserRef:
    """A user as frames and REST bodies show it."""

    id: str
    name: str
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class User:
    """A user with a role (``welcome``, ``POST /auth/login``)."""

    id: str
    name: str
    role: str = "user"
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class Limits:
    """The bounds a client must respect, announced in ``welcome``."""

    max_frame_bytes: int = 65536
    max_rate_per_s: int = 50
    max_user_rate_per_s: int = 0
    max_body_bytes: int = 16384
    max_rooms_per_conn: int = 100
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class ErrorBody:
    """``{"code","message"}``: in replies, ``error`` frames and REST error bodies."""

    code: str
    message: str = ""
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class ReactionSummary:
    """One emoji on a message; ``me`` (REST only) whether the caller put it there."""

    emoji: str
    count: int
    me: bool | None = None
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class RoomRef:
    """A room as an invitation or an invite link shows it."""

    id: str
    name: str
    private: bool = False
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class Room:
    """A room as REST (and the ``room_created``/``room_updated`` events) show it."""

    id: str
    name: str
    description: str | None = None
    max_participants: int = 100
    private: bool = False
    created_by: str = ""
    created_at: str = ""
    is_active: bool = True
    topic: str | None = None
    member_count: int | None = None
    online_count: int | None = None
    role: str | None = None
    unread: int | None = None
    read_seq: int | None = None
    unread_capped: bool = False
    retention: int | None = None
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


# ---------------------------------------------------------------------------
# Server -> client frames (events)
# ---------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class Welcome:
    """Always the first frame on a connection."""

    type: Literal["welcome"] = "welcome"
    conn_id: str
    user: User
    node: str = ""
    heartbeat_ms: int = 15000
    limits: Limits = field(default_factory=Limits)
    notifications_unread: int | None = None
    """The user's unread notifications (absent when the server could not tell in time)."""
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class Reply:
    """The answer to a request that carried a ``ref``."""

    type: Literal["reply"] = "reply"
    ref: str
    ok: bool
    data: Any = None
    error: ErrorBody | None = None
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class Message:
    """A room message (``message`` event, and the REST form of a message).

    It is the message's state when it was read: ``edited_at`` once edited; a
    deleted message is a tombstone (``deleted`` true, ``body`` ``None``);
    ``reactions`` when it has any; a thread parent carries ``reply_count``.
    """

    type: Literal["message"] = "message"
    room: str
    id: str
    seq: int
    from_: UserRef
    body: str | None = None
    kind: str = "text"
    ts: str = ""
    reply_to: str | None = None
    edited_at: str | None = None
    deleted: bool = False
    reactions: list[ReactionSummary] = field(default_factory=list)
    reply_count: int = 0
    last_reply_at: str | None = None
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class DirectMessage:
    """A direct message (``dm`` event, ``GET /dms/pending``, ``GET /dms?with=``)."""

    type: Literal["dm"] = "dm"
    id: str
    from_: UserRef
    to: str
    """The recipient's user id."""
    body: str | None = None
    ts: str = ""
    edited_at: str | None = None
    deleted: bool = False
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class MessageEdited:
    """A message's body changed: a room's carries ``room``/``seq``, a DM's ``dm``/``to``."""

    type: Literal["message_edited"] = "message_edited"
    id: str
    body: str = ""
    edited_at: str = ""
    by: UserRef | None = None
    room: str | None = None
    seq: int | None = None
    dm: str | None = None
    to: str | None = None
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class MessageDeleted:
    """A message was deleted (a tombstone stays): room (``room``/``seq``) or DM (``dm``/``to``)."""

    type: Literal["message_deleted"] = "message_deleted"
    id: str
    by: UserRef | None = None
    room: str | None = None
    seq: int | None = None
    dm: str | None = None
    to: str | None = None
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class Reaction:
    """A reaction was put on (``on``) or taken off; ``count`` is absolute after the change."""

    type: Literal["reaction"] = "reaction"
    room: str
    id: str
    seq: int
    emoji: str
    user: UserRef
    on: bool
    count: int
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class Receipt:
    """A reader's read cursor moved (not in the room's log: ``seq`` is the cursor)."""

    type: Literal["receipt"] = "receipt"
    room: str
    user: UserRef
    seq: int
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class Broadcast:
    """An admin broadcast (fire and forget, connected users only)."""

    type: Literal["broadcast"] = "broadcast"
    id: str
    from_: UserRef
    body: str
    ts: str = ""
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class Presence:
    """A user's effective status or status text changed."""

    type: Literal["presence"] = "presence"
    user: UserRef
    status: str
    text: str | None = None
    last_seen: str = ""
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class Typing:
    """Someone started (``active``) or stopped typing in a room."""

    type: Literal["typing"] = "typing"
    room: str
    user: UserRef
    active: bool
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class Member:
    """Someone joined or left a room, or a moderator changed their standing.

    ``action``: ``joined``, ``left`` (``reason`` ``kicked``/``banned`` when a
    moderator caused it), ``role`` (``role``), ``muted`` (``until``), ``unmuted``.
    """

    type: Literal["member"] = "member"
    room: str
    user: UserRef
    action: str
    reason: str | None = None
    by: UserRef | None = None
    role: str | None = None
    until: str | None = None
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class Invite:
    """An invitation of ``user`` into a room (``invite`` event, ``GET /invites``)."""

    type: Literal["invite"] = "invite"
    id: str
    room: RoomRef
    user: UserRef
    from_: UserRef
    state: str = "pending"
    created_at: str = ""
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class RoomEvent:
    """A room was created (``room_created``) or changed (``room_updated``)."""

    type: Literal["room_created", "room_updated"] = "room_created"
    room: Room
    by: UserRef | None = None
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class RoomClosed:
    """A room was closed by its owner or an admin: the client forgets it."""

    type: Literal["room_closed"] = "room_closed"
    room: str
    by: UserRef | None = None
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class Profile:
    """A user's profile (``GET /users/{user}``, and the ``profile`` event)."""

    type: Literal["profile"] = "profile"
    id: str
    name: str
    display_name: str | None = None
    bio: str | None = None
    avatar_url: str | None = None
    abilities: list[str] = field(default_factory=list)
    status: str = "offline"
    status_text: str | None = None
    last_seen: str | None = None
    online: bool = False
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class Notification:
    """A personal notification (``mention``, ``reply``, ``reaction``, ``invite``, ``dm``, or ``app``: sent by an
    application's backend with :meth:`telepath.TelepathServer.publish_to_user` ``kind="notification"``, ``text``
    being the body it sent and ``from_`` its bot or ``system`` user)."""

    type: Literal["notification"] = "notification"
    id: str
    kind: str
    text: str = ""
    ts: str = ""
    room: str | None = None
    message_id: str | None = None
    from_: UserRef | None = None
    read: bool | None = None
    """``GET /notifications`` only."""
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class NotificationsRead:
    """Notifications were marked read (``ids``, or all ``up_to`` an id); ``unread`` is the new total."""

    type: Literal["notifications_read"] = "notifications_read"
    unread: int = 0
    ids: list[str] | None = None
    up_to: str | None = None
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class Announcement:
    """An admin's announcement to everyone (sent again after each welcome until dismissed)."""

    type: Literal["announcement"] = "announcement"
    id: str
    title: str
    body: str
    level: str = "info"
    created_by: UserRef | None = None
    created_at: str = ""
    expires_at: str | None = None
    dismissed: bool | None = None
    """``GET /announcements`` only."""
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class AnnouncementDismissed:
    """The user dismissed an announcement on some device."""

    type: Literal["announcement_dismissed"] = "announcement_dismissed"
    id: str
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class ServerError:
    """A failing request without ``ref`` (``error`` frame)."""

    type: Literal["error"] = "error"
    code: str
    message: str = ""
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class Bye:
    """Sent just before the server closes: ``admin``, ``restart``, ``token_expired``, ``token_revoked``, ``slow_consumer``, ``replaced``."""

    type: Literal["bye"] = "bye"
    reason: str
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class UnknownFrame:
    """A frame whose ``type`` this SDK does not know (a newer server): kept as is."""

    type: str
    raw: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


# ---------------------------------------------------------------------------
# Reply data
# ---------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class JoinReply:
    """``join`` reply: ``seq`` is the room's latest; ``recovered`` false means nothing was replayed."""

    room: str
    seq: int
    recovered: bool = True
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class SendReply:
    """``send`` reply (after commit). ``client_id`` is the idempotency key the SDK used."""

    id: str
    seq: int
    ts: str = ""
    client_id: str | None = None
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class DmReply:
    """``dm`` reply: ``delivered`` says a live device of the recipient had it at once."""

    id: str
    ts: str = ""
    delivered: bool = False
    client_id: str | None = None
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class EditReply:
    """``edit`` reply (``seq`` absent for a DM)."""

    id: str
    edited_at: str = ""
    seq: int | None = None
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class DeleteReply:
    """``delete`` reply (``seq`` absent for a DM)."""

    id: str
    seq: int | None = None
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class ReactReply:
    """``react`` reply: ``count`` users have that emoji on the message now."""

    id: str
    seq: int
    count: int
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class ReadReply:
    """``read`` reply: the caller's read cursor after the call (it only moves forward)."""

    room: str
    seq: int
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class StatusReply:
    """``status`` reply."""

    status: str
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


# ---------------------------------------------------------------------------
# REST bodies
# ---------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class Participant:
    """A participant of a room (``POST /rooms/{id}/join``, ``GET /rooms/{id}/participants``)."""

    user: UserRef
    role: str = "member"
    joined_at: str = ""
    online: bool = False
    read_seq: int = 0
    last_seen: str | None = None
    muted_until: str | None = None
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class MessagePage:
    """A page of a room's history, in seq order."""

    messages: list[Message] = field(default_factory=list)
    has_more: bool = False
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class ThreadPage:
    """A thread: the parent as it is now and a page of its replies in seq order."""

    parent: Message
    messages: list[Message] = field(default_factory=list)
    has_more: bool = False
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class DmPage:
    """A page of one DM conversation, in time order."""

    messages: list[DirectMessage] = field(default_factory=list)
    has_more: bool = False
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class DmConversation:
    """One conversation of ``GET /dms``: its latest DM and the other user's DMs not acked yet."""

    user: UserRef
    last: DirectMessage
    unread: int = 0
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class DmState:
    """Where one DM stands (``GET /dms/{id}``): ``queued`` while it waits for the recipient's ack."""

    id: str
    from_: UserRef
    to: str
    ts: str = ""
    delivered: bool = False
    delivered_at: str | None = None
    queued: bool = False
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class SearchResult:
    """One search hit: a room message (``room``, ``seq``) or a DM (``with_``: the other user)."""

    id: str
    from_: UserRef
    ts: str = ""
    snippet: str = ""
    room: str | None = None
    seq: int | None = None
    with_: Any = None
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class SearchPage:
    """``GET /search``: hits, and the ``offset`` of the next page when there may be one."""

    results: list[SearchResult] = field(default_factory=list)
    next_offset: int | None = None
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class NotificationList:
    """``GET /notifications``: newest first; ``unread`` counts all unread ones."""

    notifications: list[Notification] = field(default_factory=list)
    unread: int = 0
    has_more: bool = False
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class OnlineUser:
    """A user with at least one live connection (``GET /presence/online``)."""

    id: str
    name: str
    status: str = "online"
    text: str | None = None
    last_seen: str = ""
    connections: int = 0
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class LoginResponse:
    """``POST /auth/login`` (dev login)."""

    token: str
    user: User
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class Ticket:
    """``POST /auth/ticket``: a single-use connect ticket, valid ``expires_in`` seconds."""

    ticket: str
    expires_in: int = 30
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


# ---------------------------------------------------------------------------
# The server API (``/api/``, :class:`telepath.TelepathServer`) and its keys
# ---------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class ApiKeyInfo:
    """An API key as ``GET /admin/api-keys`` lists it (never its secret)."""

    id: str
    name: str
    scopes: list[str] = field(default_factory=list)
    """Any of ``publish``, ``presence``, ``rooms``, ``users``, ``webhooks``."""
    room_prefix: str | None = None
    """The key acts only on rooms whose name starts with this (``None``: any room)."""
    created_at: str = ""
    revoked_at: str | None = None
    last_used_at: str | None = None
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class CreatedApiKey(ApiKeyInfo):
    """A new API key (``POST /admin/api-keys``): ``key`` is its secret, shown this once.

    ``repr()`` leaves the secret out.
    """

    key: str = field(repr=False)
    """``tpk_`` and 43 characters: ``TelepathServer(base_url, key)``."""


@dataclass(slots=True, kw_only=True)
class PublishItem:
    """One item of :meth:`telepath.TelepathServer.publish_batch` (``POST /api/publish``).

    ``as_user`` (wire name ``as``) is the bot user it is sent as (a
    username, created if new); ``None``: the ``system`` user.
    """

    room: str
    body: str
    kind: str | None = None
    client_id: str | None = None
    as_user: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The JSON object the server expects (``None`` fields left out)."""
        out: dict[str, Any] = {"room": self.room, "body": self.body}
        if self.kind is not None:
            out["kind"] = self.kind
        if self.client_id is not None:
            out["client_id"] = self.client_id
        if self.as_user is not None:
            out["as"] = self.as_user
        return out


@dataclass(slots=True, kw_only=True)
class PublishOutcome:
    """One item's outcome in ``POST /api/publish``: the committed ``message``, or the ``error`` that refused it."""

    message: Message | None = None
    error: ErrorBody | None = None
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.message is not None


@dataclass(slots=True, kw_only=True)
class DmResult:
    """A DM stored by ``POST /api/users/{id}/publish``: ``delivered`` says the recipient had a live connection."""

    id: str
    ts: str = ""
    delivered: bool = False
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class ApiPresence:
    """``GET /api/presence`` and ``GET /api/rooms/{id}/presence``: who of those asked about is online."""

    online: list[OnlineUser] = field(default_factory=list)
    """The online ones, with status and connection count."""
    offline: list[str] = field(default_factory=list)
    """The ids of the others."""
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class AddedMembers:
    """``POST /api/rooms/{id}/members``: the ids of the users who were not participants before."""

    added: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class DisconnectResult:
    """``POST /api/users/{id}/disconnect``: how many connections were told to close (4003)."""

    disconnected: int = 0
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class Webhook:
    """A webhook as ``GET /api/webhooks`` lists it (never its secret)."""

    id: str
    url: str
    events: list[str] = field(default_factory=list)
    """:data:`WebhookEvent` names."""
    created_at: str = ""
    pending: int = 0
    """Deliveries waiting (not yet delivered, not given up)."""
    dropped: int = 0
    """Events not queued because ``pending`` was at its bound (``TELEPATH_WEBHOOK_MAX_PENDING``)."""
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class CreatedWebhook(Webhook):
    """A new webhook (``POST /api/webhooks``): ``secret`` signs every delivery and is shown this once.

    ``repr()`` leaves the secret out.
    """

    secret: str = field(repr=False)
    """The one given, or ``whsec_`` and 43 characters made by the server: pass it to :func:`telepath.verify_webhook`."""


@dataclass(slots=True, kw_only=True)
class WebhookDelivery:
    """One event's delivery to one webhook (``GET /api/webhooks/{id}/deliveries``)."""

    id: int
    """Increasing in the order events were queued; the ``Telepath-Delivery`` header."""
    event_id: str
    """The body's ``id`` and ``Telepath-Event-Id``: the same on every attempt and for every webhook."""
    event: str
    status: str
    """A :data:`DeliveryStatus`."""
    attempts: int = 0
    created_at: str = ""
    next_attempt_at: str | None = None
    """When the next attempt is due (pending only)."""
    last_attempt_at: str | None = None
    last_status: int | None = None
    """The HTTP status of the last attempt (``None`` when it got no answer)."""
    last_error: str | None = None
    """Why the last attempt failed."""
    delivered_at: str | None = None
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class WebhookPayload:
    """The JSON body of a webhook delivery (parse it once :func:`telepath.verify_webhook` accepted the raw bytes).

    ``data`` is the event's JSON object as sent (for ``message.created``, the
    ``message`` frame's fields: ``from_wire(Message, payload.data)`` makes it
    a :class:`Message`). Delivery is at least once: drop an ``id`` already
    handled.
    """

    id: str
    type: str
    """A :data:`WebhookEvent`."""
    created_at: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=_extra, repr=False, compare=False)


# ---------------------------------------------------------------------------
# Events the SDK itself emits (not server frames)
# ---------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class StateChange:
    """The connection's state changed: ``connecting``, ``open``, ``reconnecting`` or ``closed``.

    ``reconnecting`` is emitted for every scheduled attempt, with its number
    and delay, and the close code and reason that ended the last connection.
    """

    type: Literal["state"] = "state"
    state: str
    attempt: int | None = None
    delay: float | None = None
    code: int | None = None
    reason: str | None = None


@dataclass(slots=True, kw_only=True)
class Joined:
    """A join (``rejoin`` true after a reconnect) succeeded; ``since`` is what it asked for."""

    type: Literal["joined"] = "joined"
    room: str
    seq: int
    recovered: bool
    rejoin: bool
    since: int | None = None


@dataclass(slots=True, kw_only=True)
class Recovery:
    """A join with ``since`` came back ``recovered: false``: page history over REST up to ``seq``."""

    type: Literal["recovery"] = "recovery"
    room: str
    seq: int
    since: int | None = None


@dataclass(slots=True, kw_only=True)
class Gap:
    """A hole in a room's seqs: ``fetch`` (reading it over REST), ``filled``, or ``rejoin`` (join with since)."""

    type: Literal["gap"] = "gap"
    room: str
    after: int
    before: int
    action: str
    error: Exception | None = None


@dataclass(slots=True, kw_only=True)
class RejoinError:
    """A rejoin after a reconnect failed for good (the room was closed, ...): the room is forgotten."""

    type: Literal["rejoin_error"] = "rejoin_error"
    room: str
    error: Exception


@dataclass(slots=True, kw_only=True)
class DmUpdated:
    """A DM already seen came again in a newer state (edited or deleted): replace it by id."""

    type: Literal["dm_updated"] = "dm_updated"
    dm: DirectMessage


ServerFrame = Union[
    Welcome,
    Reply,
    Message,
    DirectMessage,
    MessageEdited,
    MessageDeleted,
    Reaction,
    Receipt,
    Broadcast,
    Presence,
    Typing,
    Member,
    Invite,
    RoomEvent,
    RoomClosed,
    Profile,
    Notification,
    NotificationsRead,
    Announcement,
    AnnouncementDismissed,
    ServerError,
    Bye,
    UnknownFrame,
]
"""Every frame the server sends, as its dataclass."""

Event = Union[ServerFrame, StateChange, Joined, Recovery, Gap, RejoinError, DmUpdated]
"""Everything :class:`telepath.TelepathClient` emits."""

FRAME_TYPES: dict[str, type] = {
    "welcome": Welcome,
    "reply": Reply,
    "message": Message,
    "dm": DirectMessage,
    "message_edited": MessageEdited,
    "message_deleted": MessageDeleted,
    "reaction": Reaction,
    "receipt": Receipt,
    "broadcast": Broadcast,
    "presence": Presence,
    "typing": Typing,
    "member": Member,
    "invite": Invite,
    "room_created": RoomEvent,
    "room_updated": RoomEvent,
    "room_closed": RoomClosed,
    "profile": Profile,
    "notification": Notification,
    "notifications_read": NotificationsRead,
    "announcement": Announcement,
    "announcement_dismissed": AnnouncementDismissed,
    "error": ServerError,
    "bye": Bye,
}
"""Server frame ``type`` -> dataclass."""

EVENT_TYPES: frozenset[str] = frozenset(
    set(FRAME_TYPES) - {"reply"}
    | {"state", "joined", "recovery", "gap", "rejoin_error", "dm_updated", "notifications_unread"}
)
"""Every event name :meth:`telepath.TelepathClient.on` accepts (besides ``*``)."""


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------

_RENAMED = {"from": "from_", "with": "with_"}
_WIRE = {v: k for k, v in _RENAMED.items()}
_hints_cache: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    h = _hints_cache.get(cls)
    if h is None:
        h = typing.get_type_hints(cls)
        _hints_cache[cls] = h
    return h


def _convert(tp: Any, value: Any) -> Any:
    """Converts one JSON value to the annotated type (dataclasses, lists, optionals)."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin is Union or origin is _pytypes.UnionType:
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            if isinstance(arg, type) and dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return from_wire(arg, value)
            if typing.get_origin(arg) is list and isinstance(value, list):
                return _convert(arg, value)
        return value
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return [_convert(inner, v) for v in value] if isinstance(value, list) else value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_wire(tp, value)
    return value


def from_wire(cls: type[T], data: dict[str, Any]) -> T:
    """Builds dataclass ``cls`` from a decoded JSON object.

    Known fields are converted (nested objects become their dataclasses),
    unknown ones go to ``extra``; ``raw`` (on events) keeps ``data`` itself.
    Raises ``TypeError`` when a required field is missing.
    """
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in data.items():
        name = _RENAMED.get(key, key)
        if name in names and name not in ("raw", "extra"):
            kwargs[name] = _convert(hints[name], value)
        else:
            extra[key] = value
    if "extra" in names:
        kwargs["extra"] = extra
    if "raw" in names:
        kwargs["raw"] = data
    return cls(**kwargs)


def parse_frame(data: dict[str, Any]) -> ServerFrame:
    """Turns a decoded server frame into its dataclass (an :class:`UnknownFrame` for an unknown ``type``).

    A frame missing a required field raises ``TypeError`` (the client drops it).
    """
    kind = data.get("type")
    cls = FRAME_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return UnknownFrame(type=str(kind), raw=data)
    frame: ServerFrame = from_wire(cls, data)
    return frame


def to_wire_name(name: str) -> str:
    """The wire name of a Python field name (``from_`` -> ``from``)."""
    return _WIRE.get(name, name)
