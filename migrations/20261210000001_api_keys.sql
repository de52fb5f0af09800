-- Server API keys (issue 23): an application backend's credential for the
-- /api/ routes. Only the SHA-256 of the secret is stored (the secret is
-- shown once, at creation). `scopes` is a comma list of publish, presence,
-- rooms, users; `room_prefix` limits the key to rooms whose name starts
-- with it (NULL: every room). A revoked key stays listed, refused.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    room_prefix TEXT,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    last_used_at TEXT
);
