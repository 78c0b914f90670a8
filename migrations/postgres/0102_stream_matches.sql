-- A decision on one (stream, reference): written at most once, whatever the number of workers
-- and redeliveries. The unique constraint is what makes the decision happen once.
CREATE TABLE stream_matches (
    id                 TEXT   NOT NULL CONSTRAINT stream_matches_pk PRIMARY KEY,
    stream_id          TEXT   NOT NULL CONSTRAINT stream_matches_stream_fk REFERENCES streams (id),
    reference_id       TEXT   NOT NULL,
    action             TEXT   NOT NULL CONSTRAINT stream_matches_action_check
                              CHECK (action IN ('monitor', 'flag', 'kill')),
    offset_ms          BIGINT NOT NULL,
    matched_ms         BIGINT NOT NULL,
    matched_keyframes  BIGINT NOT NULL,
    first_match_ts_ms  BIGINT NOT NULL,
    decided_at_ts_ms   BIGINT NOT NULL,
    created_at         BIGINT NOT NULL,
    CONSTRAINT stream_matches_stream_reference_unique UNIQUE (stream_id, reference_id)
);
