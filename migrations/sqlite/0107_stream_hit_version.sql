-- A counter bumped with every keyframe whose hits are stored: a worker that has the stream's
-- matcher in memory at version N and commits version N + 1 itself knows nobody else added
-- hits in between, and feeds the keyframe to that matcher instead of replaying every hit.
ALTER TABLE streams ADD COLUMN hit_version BIGINT NOT NULL DEFAULT 0;
-- The replay reads all of a stream's hits (every reference) by stream time.
CREATE INDEX stream_hits_stream_ts_idx ON stream_hits (stream_id, stream_ts_ms);
