-- Stream writer leases (cluster mode; see src/meta/lease.rs): which node may append to a
-- stream, with a fencing epoch that only grows. Released leases keep their row (expiry 0)
-- so the epoch never goes back; the row goes with its stream.
CREATE TABLE stream_leases (
    stream_arn TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES streams (arn) ON DELETE CASCADE,
    holder     TEXT   NOT NULL,
    epoch      BIGINT NOT NULL CHECK (epoch > 0),
    expires_ms BIGINT NOT NULL CHECK (expires_ms >= 0)
);
