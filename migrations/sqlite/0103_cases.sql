-- Review cases opened by flag and kill decisions, with the evidence that led to them.
CREATE TABLE cases (
    id                TEXT   NOT NULL CONSTRAINT cases_pk PRIMARY KEY,
    stream_id         TEXT   NOT NULL CONSTRAINT cases_stream_fk REFERENCES streams (id),
    reference_id      TEXT   NOT NULL,
    -- Copied from the reference so a rights holder's view survives the reference's deletion.
    rights_holder_id  TEXT,
    match_id          TEXT   NOT NULL CONSTRAINT cases_match_fk REFERENCES stream_matches (id),
    action            TEXT   NOT NULL,
    status            TEXT   NOT NULL CONSTRAINT cases_status_check
                             CHECK (status IN ('open', 'confirmed', 'dismissed')),
    note              TEXT,
    decided_by        TEXT,
    decided_at        BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    CONSTRAINT cases_stream_reference_unique UNIQUE (stream_id, reference_id)
);
CREATE INDEX cases_status_idx ON cases (status, id);
CREATE INDEX cases_rights_holder_idx ON cases (rights_holder_id, id);

CREATE TABLE case_evidence (
    case_id          TEXT   NOT NULL CONSTRAINT case_evidence_case_fk REFERENCES cases (id) ON DELETE CASCADE,
    seq              BIGINT NOT NULL,
    stream_ts_ms     BIGINT NOT NULL,
    reference_ts_ms  BIGINT NOT NULL,
    distance         BIGINT NOT NULL,
    CONSTRAINT case_evidence_pk PRIMARY KEY (case_id, seq)
);
