-- Notifications from the application's backend (issue 23): kind 'app',
-- sent with `POST /api/users/{id}/publish` `"kind": "notification"`; a
-- repeat of its sender's `client_id` finds the first through
-- `coalesce_key` 'app:{sender}:{client_id}'. SQLite cannot change a CHECK
-- constraint in place: the table is rebuilt with the same rows and indexes.
CREATE TABLE notifications_new (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('mention', 'reply', 'reaction', 'invite', 'dm', 'app')),
    room_id      TEXT,
    message_id   TEXT,
    from_id      TEXT,
    from_name    TEXT,
    text         TEXT NOT NULL,
    ts           TEXT NOT NULL,
    read         INTEGER NOT NULL DEFAULT 0,
    coalesce_key TEXT
);
INSERT INTO notifications_new
    (id, user_id, kind, room_id, message_id, from_id, from_name, text, ts, read, coalesce_key)
    SELECT id, user_id, kind, room_id, message_id, from_id, from_name, text, ts, read, coalesce_key
    FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_new RENAME TO notifications;
CREATE INDEX notifications_by_user ON notifications (user_id, id);
CREATE INDEX notifications_unread ON notifications (user_id) WHERE read = 0;
CREATE UNIQUE INDEX notifications_coalesced ON notifications (user_id, coalesce_key)
    WHERE coalesce_key IS NOT NULL;
CREATE INDEX notifications_by_room ON notifications (room_id, user_id) WHERE room_id IS NOT NULL;
