-- When the platform ended the stream. Ending no longer erases a decision: a flagged stream
-- that ends stays `flagged` (its case is still open) and gets an `ended_at`; only a stream
-- with nothing decided becomes `ended`. Streams ended before this column keep NULL.
ALTER TABLE streams ADD COLUMN ended_at BIGINT;
