-- Every detector alert, one row per alert id (derived from the rule and
-- the firing event: a detector replaying history raises the same ids).
-- Same de-duplication as session_events.
CREATE TABLE IF NOT EXISTS {{db}}.alerts
(
    id            String,
    time          DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    source        LowCardinality(String),
    rule          LowCardinality(String),
    rule_type     LowCardinality(String),
    rule_version  LowCardinality(String),
    severity      LowCardinality(String),
    user_id       String,
    session_ids   Array(String),
    -- The address an IP-scoped rule fired for (:: when none, or when
    -- pseudonymized: ip_hash then).
    ip            IPv6,
    ip_hash       String,
    action        LowCardinality(String),
    target        String,
    mode          LowCardinality(String),
    action_result LowCardinality(String),
    summary       String CODEC(ZSTD(1)),
    -- The alert's evidence as JSON (events.Evidence), addresses
    -- pseudonymized like the columns.
    evidence      String CODEC(ZSTD(3)),
    inserted_at   DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta, ZSTD(1)),
    INDEX ip_idx ip TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (user_id, time, id)
SETTINGS
    non_replicated_deduplication_window = 1000,
    ttl_only_drop_parts = 1;
