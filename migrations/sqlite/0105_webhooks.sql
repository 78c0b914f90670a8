-- Takedown hooks registered by the platform.
CREATE TABLE webhooks (
    id          TEXT   NOT NULL CONSTRAINT webhooks_pk PRIMARY KEY,
    url         TEXT   NOT NULL,
    -- Comma-separated event types (stream.flagged, stream.killed, stream.restored, case.created).
    events      TEXT   NOT NULL,
    secret      TEXT   NOT NULL,
    created_by  TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    deleted_at  BIGINT
);
