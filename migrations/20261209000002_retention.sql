-- Message retention (issue 22): a room's own retention in days (NULL: the
-- server default, TELEPATH_RETENTION_DAYS), and the seq up to which its
-- history has been deleted by retention (0: nothing deleted). A client
-- resuming from below `pruned_seq` cannot be replayed (`recovered:false`).
ALTER TABLE rooms ADD COLUMN retention_days INTEGER;
ALTER TABLE rooms ADD COLUMN pruned_seq INTEGER NOT NULL DEFAULT 0;
