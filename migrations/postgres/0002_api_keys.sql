-- API keys are stored as the SHA-256 of the key; the key itself is shown once and never stored.
CREATE TABLE api_keys (
    id               TEXT   NOT NULL CONSTRAINT api_keys_pk PRIMARY KEY,
    name             TEXT   NOT NULL,
    role             TEXT   NOT NULL CONSTRAINT api_keys_role_check
                            CHECK (role IN ('admin', 'trust_safety', 'rights_holder', 'ingest')),
    rights_holder_id TEXT   CONSTRAINT api_keys_rights_holder_fk REFERENCES rights_holders (id),
    key_hash         BYTEA   NOT NULL CONSTRAINT api_keys_key_hash_unique UNIQUE,
    key_prefix       TEXT   NOT NULL,
    created_at       BIGINT NOT NULL,
    revoked_at       BIGINT,
    CONSTRAINT api_keys_scope_check
        CHECK ((role = 'rights_holder') = (rights_holder_id IS NOT NULL))
);
