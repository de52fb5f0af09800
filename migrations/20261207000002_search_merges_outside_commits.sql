-- The search index's segments are merged by the api's checkpointer (a few
-- pages at a time on its own connection, `db.rs`), not inside the writer's
-- commits: FTS5's automatic merging did that work in whichever commit
-- filled a level, which held that commit (and every send in it) for tens of
-- milliseconds now and then. A crisis merge still happens in a commit if
-- 64 segments pile up on one level (the checkpointer stopped keeping up).
INSERT INTO messages_fts (messages_fts, rank) VALUES ('automerge', 0);
INSERT INTO messages_fts (messages_fts, rank) VALUES ('crisismerge', 64);
