-- Stream time of the first keyframe a worker saw of the stream, written when the stream is first
-- recorded. The geometric tier looks at every keyframe of a stream's opening (recognition's
-- FeatureSchedule), whichever process takes them; streams recorded before this column have none
-- and are on the quiet schedule.
ALTER TABLE streams ADD COLUMN first_ts_ms BIGINT;
