-- A user's tokens issued (`iat`, seconds since the epoch) before this are
-- refused: set by POST /admin/users/{id}/revoke and by a role change.
ALTER TABLE users ADD COLUMN tokens_valid_after INTEGER;
