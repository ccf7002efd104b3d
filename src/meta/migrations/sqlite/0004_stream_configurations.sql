-- Per-stream configurations: the storage tier (a stream attribute, versioned with the stream)
-- and the image generation and notification configurations (one optional row each, removed
-- with their stream).
ALTER TABLE streams ADD COLUMN default_storage_tier TEXT NOT NULL DEFAULT 'HOT'
    CHECK (default_storage_tier IN ('HOT', 'WARM'));

CREATE TABLE image_generation_configs (
    stream_arn           TEXT    NOT NULL PRIMARY KEY REFERENCES streams (arn) ON DELETE CASCADE,
    status               TEXT    NOT NULL CHECK (status IN ('ENABLED', 'DISABLED')),
    image_selector_type  TEXT    NOT NULL CHECK (image_selector_type IN ('SERVER_TIMESTAMP', 'PRODUCER_TIMESTAMP')),
    destination_uri      TEXT    NOT NULL,
    destination_region   TEXT    NOT NULL,
    sampling_interval_ms INTEGER NOT NULL CHECK (sampling_interval_ms > 0),
    format               TEXT    NOT NULL CHECK (format IN ('JPEG', 'PNG')),
    jpeg_quality         TEXT,
    width_pixels         INTEGER CHECK (width_pixels > 0),
    height_pixels        INTEGER CHECK (height_pixels > 0)
) STRICT;

CREATE TABLE notification_configs (
    stream_arn      TEXT NOT NULL PRIMARY KEY REFERENCES streams (arn) ON DELETE CASCADE,
    status          TEXT NOT NULL CHECK (status IN ('ENABLED', 'DISABLED')),
    destination_uri TEXT NOT NULL
) STRICT;
