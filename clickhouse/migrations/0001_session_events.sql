-- Every session and auth event, one row per event id.
--
-- ReplacingMergeTree with the event id last in the sorting key: a row
-- written twice (a batch retried after an ambiguous failure, a writer
-- killed between the insert and its JetStream ack) collapses into one when
-- parts merge, and queries that must not see the second copy before that
-- read with FINAL, LIMIT 1 BY id or uniqExact(id).
--
-- Sorting key (user_id, time, id): a user's history is one range of the
-- primary index. A session's history is found through the bloom filter on
-- session_id (its rows sit among its user's). A time range uses the
-- monthly partitions and the by_time projection (a sorted index of row
-- offsets, read without FINAL).
CREATE TABLE IF NOT EXISTS {{db}}.session_events
(
    id                  String,
    time                DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    type                LowCardinality(String),
    source              LowCardinality(String),
    user_id             String,
    session_id          String,
    app                 LowCardinality(String),
    -- The address, or :: when addresses are pseudonymized (ip_hash then).
    ip                  IPv6,
    -- Keyed HMAC-SHA-256 of the address (first 16 bytes, hex) when
    -- addresses are pseudonymized, else empty.
    ip_hash             String,
    country             LowCardinality(String),
    city                LowCardinality(String),
    user_agent          String CODEC(ZSTD(1)),
    reason              LowCardinality(String),
    actor               LowCardinality(String),
    rule                LowCardinality(String),
    path                String CODEC(ZSTD(1)),
    previous_session_id String,
    -- When ClickHouse stored the row (end-to-end lag, investigations).
    inserted_at         DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta, ZSTD(1)),
    INDEX session_idx session_id TYPE bloom_filter(0.001) GRANULARITY 1,
    PROJECTION by_time (SELECT _part_offset ORDER BY time)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (user_id, time, id)
SETTINGS
    -- keep the checksums (or insert_deduplication_token) of the last 1000
    -- inserted blocks: a retried batch is dropped at insert time.
    non_replicated_deduplication_window = 1000,
    deduplicate_merge_projection_mode = 'rebuild',
    -- retention (a TTL set at start, see -retention-months) drops whole
    -- parts once every row in them expired, never rewrites them.
    ttl_only_drop_parts = 1;
