-- The transactional outbox: events written in the same transaction as the decision that caused
-- them, one delivery row per subscribed webhook, and every attempt the delivery loop made.
CREATE TABLE outbox_events (
    id          TEXT   NOT NULL CONSTRAINT outbox_events_pk PRIMARY KEY,
    event_type  TEXT   NOT NULL,
    -- The exact JSON body POSTed to webhooks.
    body        TEXT   NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id               TEXT   NOT NULL CONSTRAINT webhook_deliveries_pk PRIMARY KEY,
    event_id         TEXT   NOT NULL CONSTRAINT webhook_deliveries_event_fk REFERENCES outbox_events (id),
    webhook_id       TEXT   NOT NULL CONSTRAINT webhook_deliveries_webhook_fk REFERENCES webhooks (id),
    status           TEXT   NOT NULL CONSTRAINT webhook_deliveries_status_check
                            CHECK (status IN ('pending', 'delivered')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    delivered_at     BIGINT,
    created_at       BIGINT NOT NULL,
    CONSTRAINT webhook_deliveries_event_webhook_unique UNIQUE (event_id, webhook_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (status, next_attempt_at);

CREATE TABLE webhook_attempts (
    id            TEXT   NOT NULL CONSTRAINT webhook_attempts_pk PRIMARY KEY,
    delivery_id   TEXT   NOT NULL CONSTRAINT webhook_attempts_delivery_fk REFERENCES webhook_deliveries (id),
    attempt       BIGINT NOT NULL,
    status_code   BIGINT,
    error         TEXT,
    duration_ms   BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, attempt);
