-- Who closed a room (NULL while it is open). A gateway that missed the
-- `room_closed` event during a bus outage reads it back from here.
ALTER TABLE rooms ADD COLUMN closed_by TEXT;
