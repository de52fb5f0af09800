-- Webhooks (issue 23): endpoints an application registers with an API key,
-- and the durable queue of deliveries to them. An event is queued in the
-- transaction that committed what it reports (a room message, an edit, a
-- delete, a connection-log report, a presence change) or right after the
-- commit (joins and leaves), one row per endpoint that wants it; a row is
-- retried with exponential backoff until it is delivered (2xx) or
-- `TELEPATH_WEBHOOK_RETRY_FOR` after it was queued (`failed`).
-- `secret` is kept as given: it keys the HMAC of every delivery.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY NOT NULL,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at TEXT NOT NULL,
    dropped INTEGER NOT NULL DEFAULT 0
);

-- `next_attempt_at` in unix milliseconds; `status` pending, delivered, failed.
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    last_attempt_at TEXT,
    last_status INTEGER,
    last_error TEXT,
    delivered_at TEXT
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (webhook_id, next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
