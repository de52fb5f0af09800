-- Telepath's initial schema: the seed's five tables.
-- Ids are canonical lowercase UUID strings; timestamps are RFC 3339 TEXT in UTC.

-- Users (the seed calls them psychics). Created by dev login or on first use
-- of a valid token; status and last_online are persisted from presence.
CREATE TABLE users (
    id          TEXT PRIMARY KEY NOT NULL,
    username    TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    status      TEXT NOT NULL DEFAULT 'offline',
    status_text TEXT,
    last_online TEXT,
    created_at  TEXT NOT NULL
);

CREATE TABLE rooms (
    id               TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL,
    description      TEXT,
    max_participants INTEGER NOT NULL DEFAULT 100 CHECK (max_participants > 0),
    is_private       INTEGER NOT NULL DEFAULT 0,
    is_active        INTEGER NOT NULL DEFAULT 1,
    created_by       TEXT NOT NULL REFERENCES users (id),
    created_at       TEXT NOT NULL,
    -- seq of the newest message. The next message takes last_seq + 1 in the
    -- same transaction as its insert, so seqs are 1, 2, 3... without holes.
    last_seq         INTEGER NOT NULL DEFAULT 0,
    -- Active participants, kept in step with room_participants so the
    -- max_participants check is one row read inside the join transaction.
    participant_count INTEGER NOT NULL DEFAULT 0
);
-- GET /rooms lists public active rooms.
CREATE INDEX rooms_visible ON rooms (is_private, is_active, created_at);

CREATE TABLE room_participants (
    room_id       TEXT NOT NULL REFERENCES rooms (id),
    user_id       TEXT NOT NULL REFERENCES users (id),
    role          TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
    joined_at     TEXT NOT NULL,
    -- 0 after the user left; the row stays so cursors survive a re-join.
    is_active     INTEGER NOT NULL DEFAULT 1,
    -- Highest seq acknowledged as delivered / read by the user.
    delivered_seq INTEGER NOT NULL DEFAULT 0,
    read_seq      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
-- "the caller's rooms" and "is this user a member" lookups.
CREATE INDEX room_participants_by_user ON room_participants (user_id, is_active);

-- Room messages (room_id + seq) and direct messages (recipient_id).
CREATE TABLE messages (
    id           TEXT PRIMARY KEY NOT NULL,
    room_id      TEXT REFERENCES rooms (id),
    recipient_id TEXT REFERENCES users (id),
    sender_id    TEXT NOT NULL REFERENCES users (id),
    content      TEXT NOT NULL,
    kind         TEXT NOT NULL DEFAULT 'text',
    seq          INTEGER,
    -- The sender's idempotency key: a repeated send returns the first message.
    client_id    TEXT,
    reply_to     TEXT,
    created_at   TEXT NOT NULL,
    edited_at    TEXT,
    CHECK ((room_id IS NULL) <> (recipient_id IS NULL)),
    CHECK ((room_id IS NULL) = (seq IS NULL))
);
-- History pages and gap repair read by (room_id, seq); unique, so a seq is never reused.
CREATE UNIQUE INDEX messages_room_seq ON messages (room_id, seq) WHERE room_id IS NOT NULL;
CREATE UNIQUE INDEX messages_idempotency ON messages (sender_id, client_id) WHERE client_id IS NOT NULL;
CREATE INDEX messages_by_recipient ON messages (recipient_id, created_at) WHERE recipient_id IS NOT NULL;

-- One row per WebSocket connect and disconnect, for analytics and audits.
CREATE TABLE connection_logs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT NOT NULL,
    conn_id    TEXT NOT NULL,
    node_id    TEXT NOT NULL,
    event      TEXT NOT NULL CHECK (event IN ('connect', 'disconnect')),
    ip         TEXT,
    user_agent TEXT,
    reason     TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX connection_logs_by_user ON connection_logs (user_id, created_at);
CREATE INDEX connection_logs_by_time ON connection_logs (created_at);
