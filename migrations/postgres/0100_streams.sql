-- Live streams seen by the workers, keyed by the platform's stream id.
CREATE TABLE streams (
    id                  TEXT   NOT NULL CONSTRAINT streams_pk PRIMARY KEY,
    account_id          TEXT,
    status              TEXT   NOT NULL CONSTRAINT streams_status_check
                               CHECK (status IN ('live', 'flagged', 'killed', 'ended')),
    -- Why the status last changed (policy, a case decision, a manual kill or restore).
    status_reason       TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX streams_status_idx ON streams (status, id);
