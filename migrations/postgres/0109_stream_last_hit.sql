-- Stream time of the stream's latest keyframe with a hit, written with the hits. The worker reads
-- it with the stream's status to schedule the geometric tier by need (every keyframe of a stream
-- with recent evidence), whichever process recorded the hit.
ALTER TABLE streams ADD COLUMN last_hit_ts_ms BIGINT;
