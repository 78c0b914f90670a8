-- Local features of sampled reference frames (the geometric recognition tier), packed like
-- reference_frame_chunks: each row holds up to a few hundred feature frames, so a worker
-- loads a reference's features without decoding its video again.
CREATE TABLE reference_feature_chunks (
    reference_id TEXT   NOT NULL CONSTRAINT reference_feature_chunks_reference_fk
                        REFERENCES library_references (id) ON DELETE CASCADE,
    seq          BIGINT NOT NULL,
    frame_count  BIGINT NOT NULL,
    data         BYTEA   NOT NULL,
    created_at   BIGINT NOT NULL,
    CONSTRAINT reference_feature_chunks_pk PRIMARY KEY (reference_id, seq)
);
