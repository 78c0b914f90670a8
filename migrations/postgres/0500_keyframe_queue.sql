-- The keyframe queue of every deployment without RabbitMQ (issue #15): a keyframe accepted with
-- 202 is a committed row here, so a process killed right after answering loses nothing.
--
-- One row per message, its fields as columns (the AMQP contract's headers) and the body as
-- bytes. A row is ready while `claim` is NULL; a consumer claims it by setting `claim` (a token
-- of its own) and `lease_until`, renews the lease while it works, and deletes the row once the
-- message's effects are committed (ack). A row whose lease ran out (its worker died) is ready
-- again. The id is an integer sequence, not a UUID like elsewhere: it gives exact FIFO order
-- and is never reused (an identity), so a late settlement cannot touch a newer row.
CREATE TABLE keyframe_queue (
    id              BIGINT  NOT NULL GENERATED ALWAYS AS IDENTITY CONSTRAINT keyframe_queue_pk PRIMARY KEY,
    stream_id       TEXT    NOT NULL,
    content_type    TEXT    NOT NULL,
    -- NULL for a stream-end message.
    ts_ms           BIGINT,
    account_id      TEXT,
    captured_at_ms  BIGINT,
    viewers         BIGINT,
    -- The message layout version (`x-offside-version`).
    version         BIGINT  NOT NULL,
    body            BYTEA   NOT NULL,
    -- Claims so far: more than one on a claim means the message is redelivered.
    deliveries      BIGINT  NOT NULL DEFAULT 0,
    -- Claims that ended unsettled (lease run out, delivery dropped): a message that keeps
    -- killing its worker is dead-lettered after a few.
    abandoned       BIGINT  NOT NULL DEFAULT 0,
    claim           TEXT,
    lease_until     BIGINT,
    created_at      BIGINT  NOT NULL,
    CONSTRAINT keyframe_queue_claim_check CHECK ((claim IS NULL) = (lease_until IS NULL))
);

-- Messages a worker refused for good, with the reason, for an operator to read (and delete).
-- The newest 10,000 are kept.
CREATE TABLE keyframe_dead_letters (
    id              BIGINT  NOT NULL GENERATED ALWAYS AS IDENTITY CONSTRAINT keyframe_dead_letters_pk PRIMARY KEY,
    stream_id       TEXT    NOT NULL,
    content_type    TEXT    NOT NULL,
    ts_ms           BIGINT,
    account_id      TEXT,
    captured_at_ms  BIGINT,
    viewers         BIGINT,
    version         BIGINT  NOT NULL,
    body            BYTEA   NOT NULL,
    reason          TEXT    NOT NULL,
    deliveries      BIGINT  NOT NULL,
    -- When the message was published.
    enqueued_at     BIGINT  NOT NULL,
    -- When it was dead-lettered.
    created_at      BIGINT  NOT NULL
);
