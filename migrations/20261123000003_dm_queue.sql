-- The offline queue of direct messages: one row per DM its recipient has
-- not acked yet. Delivered live or not, a DM stays queued until the
-- recipient's `ack`, so a DM that reached no device is sent again on the
-- next connect. Rows also leave when they expire (TELEPATH_OFFLINE_TTL).
CREATE TABLE dm_queue (
    message_id   TEXT PRIMARY KEY NOT NULL REFERENCES messages (id),
    recipient_id TEXT NOT NULL REFERENCES users (id),
    queued_at    TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
-- A recipient's queue, oldest first; the per-user bound counts it.
CREATE INDEX dm_queue_by_recipient ON dm_queue (recipient_id, queued_at);
-- The cleanup job deletes by expiry.
CREATE INDEX dm_queue_by_expiry ON dm_queue (expires_at);

-- When the recipient acked the DM (NULL until then).
ALTER TABLE messages ADD COLUMN delivered_at TEXT;
