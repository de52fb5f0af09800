-- Rooms people can run (issue 21): room roles owner / moderator / member,
-- mutes, bans, invitations, invite links, an audit log, room topics, and
-- user profiles.

-- The participants table again, for its role check: the room roles are now
-- owner, moderator and member (the unused 'admin' room role becomes
-- moderator). `muted_until`: a muted member reads but may not send, react
-- or type until then ('9999-12-31…' for a mute without end). `removed`: why
-- an inactive participant is no longer one.
CREATE TABLE room_participants_new (
    room_id       TEXT NOT NULL REFERENCES rooms (id),
    user_id       TEXT NOT NULL REFERENCES users (id),
    role          TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'moderator', 'member')),
    joined_at     TEXT NOT NULL,
    is_active     INTEGER NOT NULL DEFAULT 1,
    delivered_seq INTEGER NOT NULL DEFAULT 0,
    read_seq      INTEGER NOT NULL DEFAULT 0,
    muted_until   TEXT,
    removed       TEXT CHECK (removed IN ('left', 'kicked', 'banned')),
    PRIMARY KEY (room_id, user_id)
);
INSERT INTO room_participants_new
    (room_id, user_id, role, joined_at, is_active, delivered_seq, read_seq, removed)
SELECT room_id, user_id, CASE role WHEN 'admin' THEN 'moderator' ELSE role END,
       joined_at, is_active, delivered_seq, read_seq,
       CASE is_active WHEN 0 THEN 'left' END
FROM room_participants ORDER BY rowid;
DROP TABLE room_participants;
ALTER TABLE room_participants_new RENAME TO room_participants;
CREATE INDEX room_participants_by_user ON room_participants (user_id, is_active);

ALTER TABLE rooms ADD COLUMN topic TEXT;

-- A ban keeps a user out of a room until `until` (NULL: until lifted).
CREATE TABLE room_bans (
    room_id    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    banned_by  TEXT NOT NULL,
    until      TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;

-- An invitation of one user into a room, pending until accepted, declined
-- or revoked (a ban revokes it).
CREATE TABLE room_invites (
    id         TEXT PRIMARY KEY NOT NULL,
    room_id    TEXT NOT NULL REFERENCES rooms (id),
    user_id    TEXT NOT NULL REFERENCES users (id),
    invited_by TEXT NOT NULL REFERENCES users (id),
    state      TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'accepted', 'declined', 'revoked')),
    created_at TEXT NOT NULL,
    decided_at TEXT
);
-- At most one pending invitation per room and user; a user's inbox.
CREATE UNIQUE INDEX room_invites_pending ON room_invites (room_id, user_id) WHERE state = 'pending';
CREATE INDEX room_invites_by_user ON room_invites (user_id, state, created_at);

-- Invite links: only the SHA-256 of the token is kept.
CREATE TABLE room_invite_links (
    token_hash TEXT PRIMARY KEY NOT NULL,
    room_id    TEXT NOT NULL REFERENCES rooms (id),
    created_by TEXT NOT NULL REFERENCES users (id),
    max_uses   INTEGER,
    uses       INTEGER NOT NULL DEFAULT 0,
    expires_at TEXT,
    created_at TEXT NOT NULL
) WITHOUT ROWID;

-- What owners, moderators and admins did in a room, newest last.
CREATE TABLE room_audit (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id    TEXT NOT NULL,
    actor_id   TEXT NOT NULL,
    action     TEXT NOT NULL,
    target_id  TEXT,
    detail     TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX room_audit_by_room ON room_audit (room_id, id);

-- Profiles.
ALTER TABLE users ADD COLUMN display_name TEXT;
ALTER TABLE users ADD COLUMN bio TEXT;
ALTER TABLE users ADD COLUMN avatar_url TEXT;
-- A JSON array of at most 16 tags.
ALTER TABLE users ADD COLUMN abilities TEXT;
