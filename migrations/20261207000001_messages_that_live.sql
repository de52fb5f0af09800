-- Messages that live (issue 20): edits, deletes, reactions, threads, read
-- cursors and full-text search.

-- A message as it is now. `content` is the current body ('' once deleted);
-- edit_seq / delete_seq are the seqs of the changes that produced it, so a
-- repeated edit or delete answers with them and stores nothing.
ALTER TABLE messages ADD COLUMN edit_seq INTEGER;
ALTER TABLE messages ADD COLUMN deleted_at TEXT;
ALTER TABLE messages ADD COLUMN delete_seq INTEGER;
-- Thread parents: replies naming this message in reply_to, and the newest one's time.
ALTER TABLE messages ADD COLUMN reply_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN last_reply_at TEXT;
-- GET /rooms/{id}/messages/{message_id}/thread pages a message's replies by seq.
CREATE INDEX messages_thread ON messages (reply_to, seq) WHERE reply_to IS NOT NULL;

-- The changes in a room's log, beside its messages: each took the room's next
-- seq (rooms.last_seq) in the transaction that stored it. A delete turns the
-- message's earlier edits into deletes (their bodies go), so no body survives it.
CREATE TABLE room_events (
    room_id    TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('message_edited', 'message_deleted', 'reaction')),
    message_id TEXT NOT NULL,
    -- Who made the change (the editor, the deleter, the reacting user).
    user_id    TEXT NOT NULL,
    body       TEXT,
    emoji      TEXT,
    active     INTEGER,
    count      INTEGER,
    created_at TEXT NOT NULL,
    PRIMARY KEY (room_id, seq)
) WITHOUT ROWID;
CREATE INDEX room_events_by_message ON room_events (message_id);

-- Who has which emoji on which message; seq is the change that put it there.
CREATE TABLE reactions (
    message_id TEXT NOT NULL,
    emoji      TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
) WITHOUT ROWID;

-- Full-text search over message bodies (room messages and DMs), kept in step
-- in the same transaction as the send, edit or delete: new messages are
-- indexed by the api's writers with one statement per batch (a trigger per
-- row cost the group commit three times as much), edits and deletes by the
-- triggers below. An external-content index: the text lives once, in messages. Prefixes of 2
-- and 3 characters are indexed too: search takes its last word as a prefix,
-- and without these a short one ("th*") merges the lists of every word it
-- begins (seconds over a million messages, against tens of milliseconds).
CREATE VIRTUAL TABLE messages_fts USING fts5(
    content,
    content = 'messages',
    content_rowid = 'rowid',
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.rowid, old.content);
    INSERT INTO messages_fts (rowid, content) VALUES (new.rowid, new.content);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.rowid, old.content);
END;
-- Messages stored before this migration.
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');

-- GET /dms lists a user's conversations: the DMs they sent, by recipient
-- (those they received are found by messages_by_recipient).
CREATE INDEX messages_dm_by_sender ON messages (sender_id, recipient_id) WHERE recipient_id IS NOT NULL;
