-- reel metadata schema, version 1 (Postgres; the same tables as the SQLite schema).
-- Names are unique per account (one account per reel cluster); ARNs are primary keys.
-- Names and ARNs use the "C" collation so that ordering, `name > $after` paging and
-- uniqueness compare bytes, as SQLite does, whatever the database's locale.

CREATE TABLE channels (
    arn                 TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name                TEXT COLLATE "C" NOT NULL UNIQUE,
    channel_type        TEXT   NOT NULL,
    status              TEXT   NOT NULL,
    creation_millis     BIGINT NOT NULL,
    message_ttl_seconds BIGINT NOT NULL CHECK (message_ttl_seconds > 0),
    version             TEXT   NOT NULL
);

CREATE TABLE streams (
    arn                     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name                    TEXT COLLATE "C" NOT NULL UNIQUE,
    device_name             TEXT,
    media_type              TEXT,
    kms_key_id              TEXT,
    status                  TEXT   NOT NULL,
    creation_millis         BIGINT NOT NULL,
    data_retention_in_hours BIGINT NOT NULL CHECK (data_retention_in_hours >= 0),
    version                 TEXT   NOT NULL
);

-- Tags of channels and streams; removed together with their resource.
CREATE TABLE tags (
    resource_arn TEXT COLLATE "C" NOT NULL,
    key          TEXT COLLATE "C" NOT NULL,
    value        TEXT NOT NULL,
    PRIMARY KEY (resource_arn, key)
);

-- A row exists only while a channel's media storage is ENABLED. A stream takes the
-- media of at most one channel (UNIQUE), and cannot be deleted while mapped.
CREATE TABLE storage_mappings (
    channel_arn TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES channels (arn) ON DELETE CASCADE,
    stream_arn  TEXT COLLATE "C" NOT NULL UNIQUE REFERENCES streams (arn)
);
