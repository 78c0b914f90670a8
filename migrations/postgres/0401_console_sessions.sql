-- Web console sign-ins (issue #14): an API key exchanged for a browser session. As for API
-- keys, only the SHA-256 of the session token is stored (hex, as the id); the token itself
-- lives in the browser's HttpOnly cookie. A session counts only while its key is not revoked
-- (checked by a join on every request), so revoking a key signs its sessions out.
CREATE TABLE console_sessions (
    id            TEXT   NOT NULL CONSTRAINT console_sessions_pk PRIMARY KEY,
    key_id        TEXT   NOT NULL CONSTRAINT console_sessions_key_fk
                         REFERENCES api_keys (id) ON DELETE CASCADE,
    -- The session's CSRF token: every console form carries it in a hidden field.
    csrf_token    TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL
);
CREATE INDEX console_sessions_key_idx ON console_sessions (key_id);
CREATE INDEX console_sessions_expires_idx ON console_sessions (expires_at);
