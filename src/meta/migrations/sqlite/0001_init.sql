-- reel metadata schema, version 1.
-- Names are unique per account (one account per reel); ARNs are primary keys.

CREATE TABLE channels (
    arn                 TEXT    NOT NULL PRIMARY KEY,
    name                TEXT    NOT NULL UNIQUE,
    channel_type        TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    creation_millis     INTEGER NOT NULL,
    message_ttl_seconds INTEGER NOT NULL CHECK (message_ttl_seconds > 0),
    version             TEXT    NOT NULL
) STRICT;

CREATE TABLE streams (
    arn                     TEXT    NOT NULL PRIMARY KEY,
    name                    TEXT    NOT NULL UNIQUE,
    device_name             TEXT,
    media_type              TEXT,
    kms_key_id              TEXT,
    status                  TEXT    NOT NULL,
    creation_millis         INTEGER NOT NULL,
    data_retention_in_hours INTEGER NOT NULL CHECK (data_retention_in_hours >= 0),
    version                 TEXT    NOT NULL
) STRICT;

-- Tags of channels and streams; removed together with their resource.
CREATE TABLE tags (
    resource_arn TEXT NOT NULL,
    key          TEXT NOT NULL,
    value        TEXT NOT NULL,
    PRIMARY KEY (resource_arn, key)
) STRICT;

-- A row exists only while a channel's media storage is ENABLED. A stream takes the
-- media of at most one channel (UNIQUE), and cannot be deleted while mapped.
CREATE TABLE storage_mappings (
    channel_arn TEXT NOT NULL PRIMARY KEY REFERENCES channels (arn) ON DELETE CASCADE,
    stream_arn  TEXT NOT NULL UNIQUE REFERENCES streams (arn)
) STRICT;
