-- Who did what and when: every case decision, manual kill/restore and webhook change, and
-- every automatic decision (actor 'policy').
CREATE TABLE audit_log (
    id           TEXT   NOT NULL CONSTRAINT audit_log_pk PRIMARY KEY,
    actor        TEXT   NOT NULL,
    action       TEXT   NOT NULL,
    target_type  TEXT   NOT NULL,
    target_id    TEXT   NOT NULL,
    detail       TEXT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX audit_log_target_idx ON audit_log (target_type, target_id, id);
