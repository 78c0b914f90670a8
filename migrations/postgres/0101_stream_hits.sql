-- Per-keyframe index hits of a stream: the temporal matcher's input, kept in the database so
-- that any worker may take any keyframe of a stream and still see the whole stream's evidence.
-- The primary key makes a redelivered keyframe's hits idempotent.
CREATE TABLE stream_hits (
    stream_id        TEXT   NOT NULL,
    reference_id     TEXT   NOT NULL,
    stream_ts_ms     BIGINT NOT NULL,
    reference_ts_ms  BIGINT NOT NULL,
    distance         BIGINT NOT NULL,
    -- Hit weight in millionths (integers keep the SQL portable across both databases).
    weight_micros    BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    CONSTRAINT stream_hits_pk PRIMARY KEY (stream_id, reference_id, stream_ts_ms, reference_ts_ms)
);
