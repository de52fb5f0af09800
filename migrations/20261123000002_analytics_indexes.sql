-- Analytics count recent room messages (messages per minute, active rooms)
-- by time; without this index those counts scan the whole table.
CREATE INDEX messages_room_by_time ON messages (created_at, room_id) WHERE room_id IS NOT NULL;
-- Connect and disconnect totals.
CREATE INDEX connection_logs_by_event ON connection_logs (event);
