-- Every action: enforcement by the detector and reviewers' decisions in
-- the console, one row per action id. Same de-duplication as
-- session_events.
CREATE TABLE IF NOT EXISTS {{db}}.actions
(
    id          String,
    time        DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    source      LowCardinality(String),
    kind        LowCardinality(String),
    actor       LowCardinality(String),
    action      LowCardinality(String),
    alert_id    String,
    rule        LowCardinality(String),
    user_id     String,
    session_id  String,
    result      LowCardinality(String),
    error       LowCardinality(String),
    attempts    UInt32,
    note        String CODEC(ZSTD(1)),
    count       UInt32,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta, ZSTD(1)),
    INDEX alert_idx alert_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (user_id, time, id)
SETTINGS
    non_replicated_deduplication_window = 1000,
    ttl_only_drop_parts = 1;
