-- Visual evidence (issue #14): small stills of what matched, so a reviewer sees it.
--
-- One still per second of reference time (long side ~320 px, JPEG), written by the reference
-- job in the transaction that stores the frames, and by a live feed's ingest as it airs.
-- Times are reference times: for a live feed, ms after the feed's origin, as its hits are.
CREATE TABLE reference_stills (
    reference_id TEXT   NOT NULL CONSTRAINT reference_stills_reference_fk
                        REFERENCES library_references (id) ON DELETE CASCADE,
    ts_ms        BIGINT NOT NULL,
    image        BLOB   NOT NULL,
    created_at   BIGINT NOT NULL,
    CONSTRAINT reference_stills_pk PRIMARY KEY (reference_id, ts_ms)
);

-- Downscaled copies (long side ~480 px, JPEG) of stream keyframes that produced a hit, and of
-- every deciding keyframe; deleted after the stills retention (default 30 days).
CREATE TABLE stream_stills (
    stream_id    TEXT   NOT NULL,
    ts_ms        BIGINT NOT NULL,
    image        BLOB   NOT NULL,
    created_at   BIGINT NOT NULL,
    CONSTRAINT stream_stills_pk PRIMARY KEY (stream_id, ts_ms)
);
CREATE INDEX stream_stills_created_idx ON stream_stills (created_at);

-- Which recognition tier produced a hit: 'pdq' (perceptual hash) or 'features' (local
-- features verified geometrically). NULL for hits stored before tiers were recorded.
ALTER TABLE stream_hits ADD COLUMN tier TEXT;
ALTER TABLE case_evidence ADD COLUMN tier TEXT;

-- Reach: the latest viewer count the platform sent with a keyframe (orders the review queue).
ALTER TABLE streams ADD COLUMN viewers BIGINT;

-- How far a re-stream trails a live reference feed (capture time minus air time), in ms.
ALTER TABLE stream_matches ADD COLUMN delay_ms BIGINT;

-- A streamer's dispute of a decision, relayed by the platform: the case goes back to the
-- head of the review queue, marked.
ALTER TABLE cases ADD COLUMN disputed_at BIGINT;
ALTER TABLE cases ADD COLUMN dispute_reason TEXT;
CREATE INDEX cases_queue_idx ON cases (status, disputed_at, created_at, id);
