-- Cluster mode's shared fragment index (reel_storage::Catalog, see src/meta/catalog.rs) and
-- the one counter every writer lease takes its epoch from, so epochs (and the fragment
-- numbers derived from them) are unique across streams and grow per stream.
CREATE TABLE lease_epoch (
    id    INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    value BIGINT  NOT NULL CHECK (value >= 0)
);
INSERT INTO lease_epoch (id, value) SELECT 1, COALESCE(MAX(epoch), 0) FROM stream_leases;

-- One row per fragment durable in S3; no foreign key: DeleteStream removes the rows after
-- their objects, and rows of a stream that is gone are expired by retention.
CREATE TABLE fragments (
    stream_arn     TEXT COLLATE "C" NOT NULL,
    counter        BIGINT  NOT NULL CHECK (counter > 0),
    producer_ts_ms BIGINT  NOT NULL,
    server_ts_ms   BIGINT  NOT NULL,
    duration_ms    BIGINT  NOT NULL,
    chunk_count    BIGINT  NOT NULL,
    payload_bytes  BIGINT  NOT NULL,
    header_bytes   BIGINT  NOT NULL,
    truncated      BOOLEAN NOT NULL,
    object_bytes   BIGINT  NOT NULL,
    indexed_ms     BIGINT  NOT NULL,
    PRIMARY KEY (stream_arn, counter)
);
CREATE INDEX fragments_by_indexed ON fragments (indexed_ms);
