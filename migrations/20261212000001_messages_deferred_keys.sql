-- no-transaction
-- The messages table's foreign keys become deferred: checked at COMMIT, where
-- a violation still fails the whole transaction, instead of row by row.
--
-- Why: the group commit writes a batch's messages with one multi-row INSERT.
-- While any constraint of that statement can abort it alone, SQLite keeps a
-- statement journal, a copy of every page the statement touches, to undo
-- just that statement: a fifth of the writer's time under load. The writers
-- use INSERT OR FAIL (they roll the whole transaction back on any error), so
-- the unique, NOT NULL and CHECK constraints no longer need it; immediate
-- foreign keys still would. SQLite cannot change a key's timing in place,
-- so the table is rebuilt as it was, with the same rowids (the full-text
-- index refers to them), then its indexes and triggers. Keys are off for the
-- copy (dm_queue refers to messages) and on again at the end.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

CREATE TABLE messages_rebuilt (
    id            TEXT PRIMARY KEY NOT NULL,
    room_id       TEXT REFERENCES rooms (id) DEFERRABLE INITIALLY DEFERRED,
    recipient_id  TEXT REFERENCES users (id) DEFERRABLE INITIALLY DEFERRED,
    sender_id     TEXT NOT NULL REFERENCES users (id) DEFERRABLE INITIALLY DEFERRED,
    content       TEXT NOT NULL,
    kind          TEXT NOT NULL DEFAULT 'text',
    seq           INTEGER,
    -- The sender's idempotency key: a repeated send returns the first message.
    client_id     TEXT,
    reply_to      TEXT,
    created_at    TEXT NOT NULL,
    edited_at     TEXT,
    delivered_at  TEXT,
    edit_seq      INTEGER,
    deleted_at    TEXT,
    delete_seq    INTEGER,
    reply_count   INTEGER NOT NULL DEFAULT 0,
    last_reply_at TEXT,
    CHECK ((room_id IS NULL) <> (recipient_id IS NULL)),
    CHECK ((room_id IS NULL) = (seq IS NULL))
);
INSERT INTO messages_rebuilt (
    rowid, id, room_id, recipient_id, sender_id, content, kind, seq, client_id, reply_to,
    created_at, edited_at, delivered_at, edit_seq, deleted_at, delete_seq, reply_count, last_reply_at
)
SELECT
    rowid, id, room_id, recipient_id, sender_id, content, kind, seq, client_id, reply_to,
    created_at, edited_at, delivered_at, edit_seq, deleted_at, delete_seq, reply_count, last_reply_at
FROM messages;
DROP TABLE messages;
ALTER TABLE messages_rebuilt RENAME TO messages;

CREATE UNIQUE INDEX messages_room_seq ON messages (room_id, seq) WHERE room_id IS NOT NULL;
CREATE UNIQUE INDEX messages_idempotency ON messages (sender_id, client_id) WHERE client_id IS NOT NULL;
CREATE INDEX messages_by_recipient ON messages (recipient_id, created_at) WHERE recipient_id IS NOT NULL;
CREATE INDEX messages_room_by_time ON messages (created_at, room_id) WHERE room_id IS NOT NULL;
CREATE INDEX messages_thread ON messages (reply_to, seq) WHERE reply_to IS NOT NULL;
CREATE INDEX messages_dm_by_sender ON messages (sender_id, recipient_id) WHERE recipient_id IS NOT NULL;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.rowid, old.content);
    INSERT INTO messages_fts (rowid, content) VALUES (new.rowid, new.content);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.rowid, old.content);
END;

COMMIT;
PRAGMA foreign_keys = ON;
