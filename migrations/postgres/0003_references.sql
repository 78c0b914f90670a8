-- The reference library. A reference is a broadcast (video, image or imported hash list) whose
-- frames are matched against live streams; its policy says what to do on a match.
CREATE TABLE library_references (
    id                TEXT   NOT NULL CONSTRAINT library_references_pk PRIMARY KEY,
    rights_holder_id  TEXT   CONSTRAINT library_references_rights_holder_fk REFERENCES rights_holders (id),
    title             TEXT   NOT NULL,
    source            TEXT   NOT NULL CONSTRAINT library_references_source_check
                             CHECK (source IN ('video', 'image', 'hashes')),
    status            TEXT   NOT NULL CONSTRAINT library_references_status_check
                             CHECK (status IN ('processing', 'ready', 'live', 'failed')),
    frames            BIGINT NOT NULL DEFAULT 0,
    progress_permille BIGINT,
    error             TEXT,
    policy            TEXT   NOT NULL,
    -- The uploaded file, kept until its job finishes so an interrupted job can be re-run.
    upload_path       TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX library_references_rights_holder_idx ON library_references (rights_holder_id, id);
CREATE INDEX library_references_status_idx ON library_references (status);

-- Reference frames, packed: each row holds up to a few thousand frames of one reference as
-- fixed-size records, so loading a library of millions of frames reads thousands of rows.
CREATE TABLE reference_frame_chunks (
    reference_id TEXT   NOT NULL CONSTRAINT reference_frame_chunks_reference_fk
                        REFERENCES library_references (id) ON DELETE CASCADE,
    seq          BIGINT NOT NULL,
    frame_count  BIGINT NOT NULL,
    data         BYTEA   NOT NULL,
    created_at   BIGINT NOT NULL,
    CONSTRAINT reference_frame_chunks_pk PRIMARY KEY (reference_id, seq)
);
