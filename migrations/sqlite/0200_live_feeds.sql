-- Live reference feeds: a reference whose frames come from a URL hashed as it airs.
-- The reference row (library_references, status 'live') carries the title, owner and policy;
-- this row carries the feed: where to read it, its event window, the ingest lease (exactly one
-- process reads a feed at a time; another takes over when the lease expires) and the counters
-- the API shows.
CREATE TABLE live_feeds (
    reference_id      TEXT   NOT NULL CONSTRAINT live_feeds_pk PRIMARY KEY
                             CONSTRAINT live_feeds_reference_fk
                             REFERENCES library_references (id) ON DELETE CASCADE,
    url               TEXT   NOT NULL,
    status            TEXT   NOT NULL CONSTRAINT live_feeds_status_check
                             CHECK (status IN ('live', 'reconnecting', 'ended')),
    -- Time zero of the event (starts_at, else registration time): reference times of live
    -- frames and of the archive are milliseconds after it, whichever process ingested them.
    origin_ms         BIGINT NOT NULL,
    starts_at         BIGINT,
    ends_at           BIGINT,
    retention_ms      BIGINT NOT NULL,
    -- 1: the frames become an ordinary ready reference when the event ends.
    archive           BIGINT NOT NULL DEFAULT 0,
    lease_holder      TEXT,
    lease_expires_at  BIGINT,
    heartbeat_at      BIGINT,
    frames            BIGINT NOT NULL DEFAULT 0,
    last_frame_at     BIGINT,
    reconnects        BIGINT NOT NULL DEFAULT 0,
    last_error        TEXT,
    ended_at          BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX live_feeds_status_idx ON live_feeds (status);
