-- Personal notifications and announcements (issue 22).
--
-- A notification is one user's: a mention, a reply to their message, a
-- reaction to it (one row per message: `coalesce_key` 'reaction:{message}'
-- is replaced by the latest), an invitation, a DM received while offline.
-- Ids are UUIDv7 text, so they sort by creation; `read` is 0 or 1. Each
-- user keeps at most a bounded number (the api deletes the oldest read
-- ones first, then the oldest unread).
CREATE TABLE notifications (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('mention', 'reply', 'reaction', 'invite', 'dm')),
    room_id      TEXT,
    message_id   TEXT,
    from_id      TEXT,
    from_name    TEXT,
    text         TEXT NOT NULL,
    ts           TEXT NOT NULL,
    read         INTEGER NOT NULL DEFAULT 0,
    coalesce_key TEXT
);
CREATE INDEX notifications_by_user ON notifications (user_id, id);
CREATE INDEX notifications_unread ON notifications (user_id) WHERE read = 0;
CREATE UNIQUE INDEX notifications_coalesced ON notifications (user_id, coalesce_key)
    WHERE coalesce_key IS NOT NULL;
CREATE INDEX notifications_by_room ON notifications (room_id, user_id) WHERE room_id IS NOT NULL;

-- Announcements: an admin's message to everyone, shown until it expires or
-- the user dismisses it.
CREATE TABLE announcements (
    id         TEXT PRIMARY KEY NOT NULL,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    level      TEXT NOT NULL CHECK (level IN ('info', 'warning', 'critical')),
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT
);
CREATE TABLE announcement_dismissals (
    announcement_id TEXT NOT NULL REFERENCES announcements (id),
    user_id         TEXT NOT NULL,
    dismissed_at    TEXT NOT NULL,
    PRIMARY KEY (announcement_id, user_id)
);
