//! The statements and the [`MetaStore`](super::MetaStore) logic both SQL backends share,
//! written once as [`sql_store!`].
//!
//! The SQL text is the same for SQLite and Postgres: `$N` placeholders (sqlx binds `$N` to
//! the N-th argument on SQLite too), `ON CONFLICT … DO UPDATE`, `RETURNING`, `COALESCE` and
//! plain integer arithmetic mean the same in both. What really differs stays with each
//! backend and is passed in: how a transaction begins (the Postgres write lock, the read
//! snapshot of `tags`), which pool serves which statement, and the name-prefix filter of
//! the listings.

/// Implements [`MetaStore`](super::MetaStore) for a backend store type over one sqlx
/// database type:
///
/// ```text
/// sql_store!(Store, db: sqlx::Sqlite, reads: readers, leases: writer, name_filter: "…", now_ms: "…",
///            lease_share_lock: "…");
/// ```
///
/// - `Store` must have the inherent methods `begin_write(&self)` (the transaction every
///   write runs in, with whatever it takes to make check-then-write atomic) and
///   `begin_read(&self)` (the read transaction of `tags`, in which the existence check and
///   the tags agree), both `-> Result<sqlx::Transaction<'static, db>, MetaError>`;
/// - `reads` names its pool field for single-statement lookups, `leases` the pool field
///   the lease release and lookup run on;
/// - `name_filter` is the listings' `WHERE` condition: `$1` the name prefix and `$2` the
///   name to resume after, each NULL when absent (a string literal, for `concat!`);
/// - `now_ms` is the SQL expression of the database clock in ms since the Unix epoch (the
///   fragment catalog stamps rows with it);
/// - `lease_share_lock` is the locking clause a fenced fragment insert puts on the lease row
///   it checks (Postgres: `FOR SHARE`, so a concurrent lease take waits for the insert or
///   the insert sees the take; SQLite: empty, its one writer connection serializes writes).
///
/// It expands (in the backend's module) to an inherent `impl` with the shared private
/// helpers and the whole `#[async_trait] impl MetaStore`; a macro-made trait impl is still
/// seen by `async_trait`, which runs after the expansion.
macro_rules! sql_store {
    (
        $store:ident,
        db: $db:ty,
        reads: $reads:ident,
        leases: $leases:ident,
        name_filter: $names:literal,
        now_ms: $now_ms:literal,
        lease_share_lock: $share_lock:literal $(,)?
    ) => {
        impl $store {
            /// Upsert `tags` of the resource `arn`.
            async fn insert_tags(
                tx: &mut sqlx::Transaction<'static, $db>,
                arn: &str,
                tags: &$crate::meta::Tags,
            ) -> Result<(), $crate::meta::MetaError> {
                for (k, v) in tags {
                    sqlx::query(
                        "INSERT INTO tags (resource_arn, key, value) VALUES ($1, $2, $3) \
                         ON CONFLICT (resource_arn, key) DO UPDATE SET value = excluded.value",
                    )
                    .bind(arn)
                    .bind(k)
                    .bind(v)
                    .execute(&mut **tx)
                    .await
                    .map_err($crate::meta::common::db_err)?;
                }
                Ok(())
            }

            /// Whether a channel or a stream has this ARN.
            async fn resource_exists(
                tx: &mut sqlx::Transaction<'static, $db>,
                arn: &str,
            ) -> Result<bool, $crate::meta::MetaError> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT (SELECT COUNT(*) FROM channels WHERE arn = $1) + (SELECT COUNT(*) FROM streams WHERE arn = $1)",
                )
                .bind(arn)
                .fetch_one(&mut **tx)
                .await
                .map_err($crate::meta::common::db_err)?;
                Ok(n > 0)
            }

            /// The result of a `SELECT COUNT(*) …` without parameters.
            async fn count(
                tx: &mut sqlx::Transaction<'static, $db>,
                sql: &'static str,
            ) -> Result<u64, $crate::meta::MetaError> {
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut **tx).await.map_err($crate::meta::common::db_err)?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            /// The current version of a row (`sql` binds its ARN as `$1`), or NotFound.
            async fn current_version(
                tx: &mut sqlx::Transaction<'static, $db>,
                sql: &'static str,
                arn: &str,
                what: &str,
            ) -> Result<String, $crate::meta::MetaError> {
                sqlx::query_scalar(sql)
                    .bind(arn)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err($crate::meta::common::db_err)?
                    .ok_or_else(|| $crate::meta::MetaError::NotFound(format!("{what} {arn}")))
            }

            /// The rows of a `SELECT … WHERE name-prefix/after … LIMIT $3` listing as one
            /// page in name order.
            async fn list_page<T>(
                &self,
                sql: &'static str,
                q: &$crate::meta::ListQuery,
                row: fn(&<$db as sqlx::Database>::Row) -> Result<T, sqlx::Error>,
                name: fn(&T) -> &str,
            ) -> Result<$crate::meta::Page<T>, $crate::meta::MetaError> {
                use $crate::meta::common::{db_err, list_limit, page};
                let rows = sqlx::query(sql)
                    .bind(q.name_prefix.as_deref())
                    .bind(q.after.as_deref())
                    .bind(list_limit(q))
                    .fetch_all(&self.$reads)
                    .await
                    .map_err(db_err)?;
                let items = rows.iter().map(row).collect::<Result<Vec<_>, _>>().map_err(db_err)?;
                Ok(page(items, q.limit.max(1), name))
            }

            /// Delete a channel or stream row (`sql` binds its ARN as `$1`) and its tags,
            /// then commit.
            async fn delete_resource(
                mut tx: sqlx::Transaction<'static, $db>,
                sql: &'static str,
                arn: &str,
            ) -> Result<(), $crate::meta::MetaError> {
                use $crate::meta::common::db_err;
                sqlx::query(sql).bind(arn).execute(&mut *tx).await.map_err(db_err)?;
                sqlx::query("DELETE FROM tags WHERE resource_arn = $1")
                    .bind(arn)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                tx.commit().await.map_err(db_err)
            }

            /// Check, inside a write transaction, that the stream exists (else `NotFound`)
            /// and, when the configuration being written is enabled, that it keeps data (else
            /// `NoDataRetention`): an enabled image or notification configuration works on
            /// persisted fragments.
            async fn check_configurable(
                tx: &mut sqlx::Transaction<'static, $db>,
                stream_arn: &str,
                needs_retention: bool,
            ) -> Result<(), $crate::meta::MetaError> {
                use $crate::meta::MetaError;
                let retention: Option<i64> =
                    sqlx::query_scalar("SELECT data_retention_in_hours FROM streams WHERE arn = $1")
                        .bind(stream_arn)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err($crate::meta::common::db_err)?;
                match retention {
                    None => Err(MetaError::NotFound(format!("stream {stream_arn}"))),
                    Some(0) if needs_retention => Err(MetaError::NoDataRetention(stream_arn.into())),
                    Some(_) => Ok(()),
                }
            }

            /// A stream's one-per-stream configuration: `sql` selects its columns from
            /// `streams s LEFT JOIN <table> c` for `s.arn = $1` (`stream_config_select!`), one
            /// row per existing stream with NULL columns when it has none, and `row` decodes
            /// them. `NotFound` if the stream does not exist.
            async fn stream_config<T>(
                &self,
                sql: &'static str,
                stream_arn: &str,
                row: fn(&<$db as sqlx::Database>::Row) -> Result<Option<T>, sqlx::Error>,
            ) -> Result<Option<T>, $crate::meta::MetaError> {
                use $crate::meta::common::db_err;
                let found = sqlx::query(sql).bind(stream_arn).fetch_optional(&self.$reads).await.map_err(db_err)?;
                match found {
                    None => Err($crate::meta::MetaError::NotFound(format!("stream {stream_arn}"))),
                    Some(found) => row(&found).map_err(db_err),
                }
            }

            /// Replace a stream's one-per-stream configuration with `upsert` (an `INSERT … ON
            /// CONFLICT (stream_arn) DO UPDATE` with its arguments bound) or, when there is none,
            /// remove it (`delete` binds the ARN as `$1`), in one write transaction after
            /// [`Self::check_configurable`] (`enabled`: the configuration written is enabled).
            async fn set_stream_config(
                &self,
                stream_arn: &str,
                enabled: bool,
                upsert: Option<sqlx::query::Query<'static, $db, <$db as sqlx::Database>::Arguments>>,
                delete: &'static str,
            ) -> Result<(), $crate::meta::MetaError> {
                use $crate::meta::common::db_err;
                let mut tx = self.begin_write().await?;
                Self::check_configurable(&mut tx, stream_arn, enabled).await?;
                let write = match upsert {
                    Some(upsert) => upsert,
                    None => sqlx::query(delete).bind(stream_arn),
                };
                write.execute(&mut *tx).await.map_err(db_err)?;
                tx.commit().await.map_err(db_err)
            }

            /// The channel whose media this stream stores, if any.
            async fn storage_holder(
                tx: &mut sqlx::Transaction<'static, $db>,
                stream_arn: &str,
            ) -> Result<Option<String>, $crate::meta::MetaError> {
                sqlx::query_scalar("SELECT channel_arn FROM storage_mappings WHERE stream_arn = $1")
                    .bind(stream_arn)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err($crate::meta::common::db_err)
            }

            /// The stored lease of `stream_arn`, if it ever had one.
            async fn lease_row(
                conn: &mut <$db as sqlx::Database>::Connection,
                stream_arn: &str,
            ) -> Result<Option<$crate::meta::Lease>, $crate::meta::MetaError> {
                let row: Option<(String, i64, i64)> =
                    sqlx::query_as("SELECT holder, epoch, expires_ms FROM stream_leases WHERE stream_arn = $1")
                        .bind(stream_arn)
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err($crate::meta::common::db_err)?;
                Ok(row.map(|r| $crate::meta::common::lease_from_row(stream_arn, r)))
            }

            /// Store `lease` (insert, or overwrite the stream's row).
            async fn write_lease(
                tx: &mut sqlx::Transaction<'static, $db>,
                lease: &$crate::meta::Lease,
            ) -> Result<(), $crate::meta::MetaError> {
                use $crate::meta::common::lease_i64;
                sqlx::query(
                    "INSERT INTO stream_leases (stream_arn, holder, epoch, expires_ms) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (stream_arn) DO UPDATE SET holder = excluded.holder, epoch = excluded.epoch, \
                     expires_ms = excluded.expires_ms",
                )
                .bind(&lease.stream_arn)
                .bind(&lease.holder)
                .bind(lease_i64(lease.epoch))
                .bind(lease_i64(lease.expires_ms))
                .execute(&mut **tx)
                .await
                .map(|_| ())
                .map_err($crate::meta::common::db_err)
            }
        }

        #[async_trait::async_trait]
        impl $crate::meta::MetaStore for $store {
            async fn channel_by_arn(
                &self,
                arn: &str,
            ) -> Result<Option<$crate::meta::ChannelRecord>, $crate::meta::MetaError> {
                use $crate::meta::common::{channel_cols, channel_row, db_err};
                let row = sqlx::query(concat!("SELECT ", channel_cols!(), " FROM channels WHERE arn = $1"))
                    .bind(arn)
                    .fetch_optional(&self.$reads)
                    .await
                    .map_err(db_err)?;
                row.as_ref().map(channel_row).transpose().map_err(db_err)
            }

            async fn stream_by_arn(
                &self,
                arn: &str,
            ) -> Result<Option<$crate::meta::StreamRecord>, $crate::meta::MetaError> {
                use $crate::meta::common::{db_err, stream_cols, stream_row};
                let row = sqlx::query(concat!("SELECT ", stream_cols!(), " FROM streams WHERE arn = $1"))
                    .bind(arn)
                    .fetch_optional(&self.$reads)
                    .await
                    .map_err(db_err)?;
                row.as_ref().map(stream_row).transpose().map_err(db_err)
            }

            async fn stream_by_name(
                &self,
                name: &str,
            ) -> Result<Option<$crate::meta::StreamRecord>, $crate::meta::MetaError> {
                use $crate::meta::common::{db_err, stream_cols, stream_row};
                let row = sqlx::query(concat!("SELECT ", stream_cols!(), " FROM streams WHERE name = $1"))
                    .bind(name)
                    .fetch_optional(&self.$reads)
                    .await
                    .map_err(db_err)?;
                row.as_ref().map(stream_row).transpose().map_err(db_err)
            }

            async fn media_storage(
                &self,
                channel_arn: &str,
            ) -> Result<$crate::meta::MediaStorageConfig, $crate::meta::MetaError> {
                // One row per existing channel; its stream is NULL while storage is disabled.
                let row: Option<Option<String>> = sqlx::query_scalar(
                    "SELECT m.stream_arn FROM channels c LEFT JOIN storage_mappings m ON m.channel_arn = c.arn \
                     WHERE c.arn = $1",
                )
                .bind(channel_arn)
                .fetch_optional(&self.$reads)
                .await
                .map_err($crate::meta::common::db_err)?;
                match row {
                    None => Err($crate::meta::MetaError::NotFound(format!("channel {channel_arn}"))),
                    Some(stream_arn) => {
                        Ok($crate::meta::MediaStorageConfig { enabled: stream_arn.is_some(), stream_arn })
                    }
                }
            }

            async fn channel_by_name(
                &self,
                name: &str,
            ) -> Result<Option<$crate::meta::ChannelRecord>, $crate::meta::MetaError> {
                use $crate::meta::common::{channel_cols, channel_row, db_err};
                let row = sqlx::query(concat!("SELECT ", channel_cols!(), " FROM channels WHERE name = $1"))
                    .bind(name)
                    .fetch_optional(&self.$reads)
                    .await
                    .map_err(db_err)?;
                row.as_ref().map(channel_row).transpose().map_err(db_err)
            }

            async fn create_channel(
                &self,
                c: &$crate::meta::ChannelRecord,
                tags: &$crate::meta::Tags,
                max_channels: u64,
            ) -> Result<(), $crate::meta::MetaError> {
                use $crate::meta::common::{db_err, is_unique_violation, millis};
                use $crate::meta::{MetaError, Quota};
                let mut tx = self.begin_write().await?;
                if Self::count(&mut tx, "SELECT COUNT(*) FROM channels").await? >= max_channels {
                    return Err(MetaError::QuotaExceeded(Quota::Channels(max_channels)));
                }
                sqlx::query(
                    "INSERT INTO channels (name, arn, channel_type, status, creation_millis, message_ttl_seconds, \
                     version) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&c.name)
                .bind(&c.arn)
                .bind(&c.channel_type)
                .bind(&c.status)
                .bind(millis(c.creation_time))
                .bind(i64::from(c.message_ttl_seconds))
                .bind(&c.version)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        MetaError::AlreadyExists(format!("channel {}", c.name))
                    } else {
                        db_err(e)
                    }
                })?;
                Self::insert_tags(&mut tx, &c.arn, tags).await?;
                tx.commit().await.map_err(db_err)
            }

            async fn list_channels(
                &self,
                q: &$crate::meta::ListQuery,
            ) -> Result<$crate::meta::Page<$crate::meta::ChannelRecord>, $crate::meta::MetaError> {
                use $crate::meta::common::{channel_cols, channel_row};
                const SQL: &str =
                    concat!("SELECT ", channel_cols!(), " FROM channels WHERE ", $names, " ORDER BY name LIMIT $3");
                self.list_page(SQL, q, channel_row, |c| &c.name).await
            }

            async fn update_channel(
                &self,
                arn: &str,
                expected_version: &str,
                message_ttl_seconds: Option<u32>,
                new_version: &str,
            ) -> Result<$crate::meta::ChannelRecord, $crate::meta::MetaError> {
                use $crate::meta::common::{channel_cols, channel_row, check_version, db_err, updated_record};
                let mut tx = self.begin_write().await?;
                let current =
                    Self::current_version(&mut tx, "SELECT version FROM channels WHERE arn = $1", arn, "channel")
                        .await?;
                check_version(&current, Some(expected_version), arn)?;
                let row = sqlx::query(concat!(
                    "UPDATE channels SET message_ttl_seconds = COALESCE($2, message_ttl_seconds), version = $3 \
                     WHERE arn = $1 AND version = $4 RETURNING ",
                    channel_cols!()
                ))
                .bind(arn)
                .bind(message_ttl_seconds.map(i64::from))
                .bind(new_version)
                .bind(expected_version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
                let record = updated_record(row, channel_row, arn, expected_version)?;
                tx.commit().await.map_err(db_err)?;
                Ok(record)
            }

            async fn delete_channel(
                &self,
                arn: &str,
                expected_version: Option<&str>,
            ) -> Result<(), $crate::meta::MetaError> {
                let mut tx = self.begin_write().await?;
                let current =
                    Self::current_version(&mut tx, "SELECT version FROM channels WHERE arn = $1", arn, "channel")
                        .await?;
                $crate::meta::common::check_version(&current, expected_version, arn)?;
                // The storage mapping goes with the channel (ON DELETE CASCADE).
                Self::delete_resource(tx, "DELETE FROM channels WHERE arn = $1", arn).await
            }

            async fn create_stream(
                &self,
                s: &$crate::meta::StreamRecord,
                tags: &$crate::meta::Tags,
                max_streams: u64,
            ) -> Result<(), $crate::meta::MetaError> {
                use $crate::meta::common::{db_err, is_unique_violation, millis};
                use $crate::meta::{MetaError, Quota};
                let mut tx = self.begin_write().await?;
                if Self::count(&mut tx, "SELECT COUNT(*) FROM streams").await? >= max_streams {
                    return Err(MetaError::QuotaExceeded(Quota::Streams(max_streams)));
                }
                sqlx::query(
                    "INSERT INTO streams (name, arn, device_name, media_type, kms_key_id, status, creation_millis, \
                     data_retention_in_hours, version, default_storage_tier) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&s.name)
                .bind(&s.arn)
                .bind(s.device_name.as_deref())
                .bind(s.media_type.as_deref())
                .bind(s.kms_key_id.as_deref())
                .bind(&s.status)
                .bind(millis(s.creation_time))
                .bind(i64::from(s.data_retention_in_hours))
                .bind(&s.version)
                .bind(s.default_storage_tier.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        MetaError::AlreadyExists(format!("stream {}", s.name))
                    } else {
                        db_err(e)
                    }
                })?;
                Self::insert_tags(&mut tx, &s.arn, tags).await?;
                tx.commit().await.map_err(db_err)
            }

            async fn list_streams(
                &self,
                q: &$crate::meta::ListQuery,
            ) -> Result<$crate::meta::Page<$crate::meta::StreamRecord>, $crate::meta::MetaError> {
                use $crate::meta::common::{stream_cols, stream_row};
                const SQL: &str =
                    concat!("SELECT ", stream_cols!(), " FROM streams WHERE ", $names, " ORDER BY name LIMIT $3");
                self.list_page(SQL, q, stream_row, |s| &s.name).await
            }

            async fn update_stream(
                &self,
                arn: &str,
                expected_version: &str,
                update: &$crate::meta::StreamUpdate,
                new_version: &str,
            ) -> Result<$crate::meta::StreamRecord, $crate::meta::MetaError> {
                use $crate::meta::common::{check_version, db_err, stream_cols, stream_row, updated_record};
                let mut tx = self.begin_write().await?;
                let current =
                    Self::current_version(&mut tx, "SELECT version FROM streams WHERE arn = $1", arn, "stream")
                        .await?;
                check_version(&current, Some(expected_version), arn)?;
                if update.data_retention_in_hours == Some(0)
                    && let Some(channel) = Self::storage_holder(&mut tx, arn).await?
                {
                    return Err($crate::meta::MetaError::InUse(format!(
                        "stream {arn} stores the media of channel {channel}; disable its media storage before \
                         removing retention"
                    )));
                }
                let row = sqlx::query(concat!(
                    "UPDATE streams SET device_name = COALESCE($2, device_name), media_type = COALESCE($3, media_type), \
                     data_retention_in_hours = COALESCE($4, data_retention_in_hours), \
                     default_storage_tier = COALESCE($7, default_storage_tier), version = $5 \
                     WHERE arn = $1 AND version = $6 RETURNING ",
                    stream_cols!()
                ))
                .bind(arn)
                .bind(update.device_name.as_deref())
                .bind(update.media_type.as_deref())
                .bind(update.data_retention_in_hours.map(i64::from))
                .bind(new_version)
                .bind(expected_version)
                .bind(update.default_storage_tier.map(|t| t.as_str()))
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
                let record = updated_record(row, stream_row, arn, expected_version)?;
                tx.commit().await.map_err(db_err)?;
                Ok(record)
            }

            async fn delete_stream(
                &self,
                arn: &str,
                expected_version: Option<&str>,
            ) -> Result<(), $crate::meta::MetaError> {
                let mut tx = self.begin_write().await?;
                let current =
                    Self::current_version(&mut tx, "SELECT version FROM streams WHERE arn = $1", arn, "stream")
                        .await?;
                $crate::meta::common::check_version(&current, expected_version, arn)?;
                if let Some(channel) = Self::storage_holder(&mut tx, arn).await? {
                    return Err($crate::meta::MetaError::InUse(format!(
                        "stream {arn} stores the media of channel {channel}; disable its media storage first"
                    )));
                }
                // Its image generation and notification configurations go with it (ON DELETE CASCADE).
                Self::delete_resource(tx, "DELETE FROM streams WHERE arn = $1", arn).await
            }

            async fn image_generation_config(
                &self,
                stream_arn: &str,
            ) -> Result<Option<$crate::meta::ImageGenerationConfig>, $crate::meta::MetaError> {
                use $crate::meta::common::{image_generation_cols, image_generation_row, stream_config_select};
                let sql = stream_config_select!("image_generation_configs", image_generation_cols!());
                self.stream_config(sql, stream_arn, image_generation_row).await
            }

            async fn set_image_generation_config(
                &self,
                stream_arn: &str,
                config: Option<&$crate::meta::ImageGenerationConfig>,
            ) -> Result<(), $crate::meta::MetaError> {
                use $crate::meta::common::status;
                let upsert = config.map(|c| {
                    sqlx::query(
                        "INSERT INTO image_generation_configs (stream_arn, status, image_selector_type, \
                         destination_uri, destination_region, sampling_interval_ms, format, jpeg_quality, \
                         width_pixels, height_pixels) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                         ON CONFLICT (stream_arn) DO UPDATE SET status = excluded.status, \
                         image_selector_type = excluded.image_selector_type, destination_uri = excluded.destination_uri, \
                         destination_region = excluded.destination_region, \
                         sampling_interval_ms = excluded.sampling_interval_ms, format = excluded.format, \
                         jpeg_quality = excluded.jpeg_quality, width_pixels = excluded.width_pixels, \
                         height_pixels = excluded.height_pixels",
                    )
                    .bind(stream_arn)
                    .bind(status(c.enabled))
                    .bind(&c.image_selector_type)
                    .bind(&c.destination_uri)
                    .bind(&c.destination_region)
                    .bind(i64::from(c.sampling_interval_ms))
                    .bind(&c.format)
                    .bind(c.jpeg_quality.as_deref())
                    .bind(c.width_pixels.map(i64::from))
                    .bind(c.height_pixels.map(i64::from))
                });
                let delete = "DELETE FROM image_generation_configs WHERE stream_arn = $1";
                self.set_stream_config(stream_arn, config.is_some_and(|c| c.enabled), upsert, delete).await
            }

            async fn notification_config(
                &self,
                stream_arn: &str,
            ) -> Result<Option<$crate::meta::NotificationConfig>, $crate::meta::MetaError> {
                use $crate::meta::common::{notification_cols, notification_row, stream_config_select};
                let sql = stream_config_select!("notification_configs", notification_cols!());
                self.stream_config(sql, stream_arn, notification_row).await
            }

            async fn set_notification_config(
                &self,
                stream_arn: &str,
                config: Option<&$crate::meta::NotificationConfig>,
            ) -> Result<(), $crate::meta::MetaError> {
                use $crate::meta::common::status;
                let upsert = config.map(|c| {
                    sqlx::query(
                        "INSERT INTO notification_configs (stream_arn, status, destination_uri) VALUES ($1, $2, $3) \
                         ON CONFLICT (stream_arn) DO UPDATE SET status = excluded.status, \
                         destination_uri = excluded.destination_uri",
                    )
                    .bind(stream_arn)
                    .bind(status(c.enabled))
                    .bind(&c.destination_uri)
                });
                let delete = "DELETE FROM notification_configs WHERE stream_arn = $1";
                self.set_stream_config(stream_arn, config.is_some_and(|c| c.enabled), upsert, delete).await
            }

            async fn set_media_storage(
                &self,
                channel_arn: &str,
                stream_arn: Option<&str>,
                max_enabled: u64,
            ) -> Result<(), $crate::meta::MetaError> {
                use $crate::meta::common::{db_err, is_unique_violation};
                use $crate::meta::{MetaError, Quota};
                let mut tx = self.begin_write().await?;
                Self::current_version(&mut tx, "SELECT version FROM channels WHERE arn = $1", channel_arn, "channel")
                    .await?;
                let Some(stream_arn) = stream_arn else {
                    sqlx::query("DELETE FROM storage_mappings WHERE channel_arn = $1")
                        .bind(channel_arn)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    return tx.commit().await.map_err(db_err);
                };
                let retention: Option<i64> =
                    sqlx::query_scalar("SELECT data_retention_in_hours FROM streams WHERE arn = $1")
                        .bind(stream_arn)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err)?;
                match retention {
                    None => return Err(MetaError::NotFound(format!("stream {stream_arn}"))),
                    Some(0) => return Err(MetaError::NoDataRetention(stream_arn.into())),
                    Some(_) => {}
                }
                match Self::storage_holder(&mut tx, stream_arn).await? {
                    Some(holder) if holder == channel_arn => return tx.commit().await.map_err(db_err),
                    Some(holder) => {
                        return Err(MetaError::InUse(format!(
                            "stream {stream_arn} already stores the media of channel {holder}"
                        )));
                    }
                    None => {}
                }
                let enabled_elsewhere: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM storage_mappings WHERE channel_arn <> $1")
                        .bind(channel_arn)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db_err)?;
                if u64::try_from(enabled_elsewhere).unwrap_or(0) >= max_enabled {
                    return Err(MetaError::QuotaExceeded(Quota::StorageEnabledChannels(max_enabled)));
                }
                sqlx::query(
                    "INSERT INTO storage_mappings (channel_arn, stream_arn) VALUES ($1, $2) \
                     ON CONFLICT (channel_arn) DO UPDATE SET stream_arn = excluded.stream_arn",
                )
                .bind(channel_arn)
                .bind(stream_arn)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        MetaError::InUse(format!("stream {stream_arn} already stores the media of another channel"))
                    } else {
                        db_err(e)
                    }
                })?;
                tx.commit().await.map_err(db_err)
            }

            async fn channel_for_stream(
                &self,
                stream_arn: &str,
            ) -> Result<Option<$crate::meta::ChannelRecord>, $crate::meta::MetaError> {
                use $crate::meta::common::{channel_cols, channel_row, db_err};
                let row = sqlx::query(concat!(
                    "SELECT ",
                    channel_cols!(),
                    " FROM channels WHERE arn = (SELECT channel_arn FROM storage_mappings WHERE stream_arn = $1)"
                ))
                .bind(stream_arn)
                .fetch_optional(&self.$reads)
                .await
                .map_err(db_err)?;
                row.as_ref().map(channel_row).transpose().map_err(db_err)
            }

            async fn tags(&self, arn: &str) -> Result<$crate::meta::Tags, $crate::meta::MetaError> {
                use $crate::meta::common::db_err;
                // One read transaction so the existence check and the tags agree.
                let mut tx = self.begin_read().await?;
                if !Self::resource_exists(&mut tx, arn).await? {
                    return Err($crate::meta::MetaError::NotFound(format!("resource {arn}")));
                }
                let rows: Vec<(String, String)> =
                    sqlx::query_as("SELECT key, value FROM tags WHERE resource_arn = $1")
                        .bind(arn)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db_err)?;
                tx.commit().await.map_err(db_err)?;
                Ok(rows.into_iter().collect())
            }

            async fn tag(
                &self,
                arn: &str,
                tags: &$crate::meta::Tags,
                max_tags: usize,
            ) -> Result<(), $crate::meta::MetaError> {
                use $crate::meta::common::db_err;
                use $crate::meta::{MetaError, Quota};
                let mut tx = self.begin_write().await?;
                if !Self::resource_exists(&mut tx, arn).await? {
                    return Err(MetaError::NotFound(format!("resource {arn}")));
                }
                Self::insert_tags(&mut tx, arn, tags).await?;
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tags WHERE resource_arn = $1")
                    .bind(arn)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err)?;
                if usize::try_from(n).unwrap_or(usize::MAX) > max_tags {
                    // Dropping the transaction rolls the upserts back.
                    return Err(MetaError::QuotaExceeded(Quota::Tags(max_tags)));
                }
                tx.commit().await.map_err(db_err)
            }

            async fn untag(&self, arn: &str, keys: &[String]) -> Result<(), $crate::meta::MetaError> {
                use $crate::meta::common::db_err;
                let mut tx = self.begin_write().await?;
                if !Self::resource_exists(&mut tx, arn).await? {
                    return Err($crate::meta::MetaError::NotFound(format!("resource {arn}")));
                }
                for key in keys {
                    sqlx::query("DELETE FROM tags WHERE resource_arn = $1 AND key = $2")
                        .bind(arn)
                        .bind(key)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                }
                tx.commit().await.map_err(db_err)
            }

            async fn ping(&self) -> Result<(), $crate::meta::MetaError> {
                sqlx::query("SELECT 1").execute(&self.$reads).await.map(|_| ()).map_err($crate::meta::common::db_err)
            }

            async fn acquire_lease(
                &self,
                stream_arn: &str,
                node: &str,
                now_ms: u64,
                lease_ms: u64,
            ) -> Result<$crate::meta::Lease, $crate::meta::MetaError> {
                use $crate::meta::common::db_err;
                let mut tx = self.begin_write().await?;
                let streams: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM streams WHERE arn = $1")
                    .bind(stream_arn)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err)?;
                if streams == 0 {
                    return Err($crate::meta::MetaError::NotFound(format!("stream {stream_arn}")));
                }
                let current = Self::lease_row(&mut tx, stream_arn).await?;
                let epoch: i64 =
                    sqlx::query_scalar("UPDATE lease_epoch SET value = value + 1 WHERE id = 1 RETURNING value")
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db_err)?;
                let epoch = u64::try_from(epoch).unwrap_or(0);
                let next = $crate::meta::lease::take(stream_arn, current.as_ref(), node, now_ms, lease_ms, epoch);
                if next.epoch != epoch {
                    sqlx::query("UPDATE lease_epoch SET value = $1 WHERE id = 1")
                        .bind($crate::meta::common::lease_i64(next.epoch))
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                }
                Self::write_lease(&mut tx, &next).await?;
                tx.commit().await.map_err(db_err)?;
                Ok(next)
            }

            async fn renew_leases(
                &self,
                node: &str,
                held: &[(String, u64)],
                now_ms: u64,
                lease_ms: u64,
            ) -> Result<Vec<$crate::meta::Lease>, $crate::meta::MetaError> {
                use $crate::meta::common::{db_err, lease_i64};
                // `lease::renew`'s rule in one statement per chunk (no write lock: a
                // concurrent take either lands first, and the epoch no longer matches, or
                // overwrites this).
                let mut renewed = Vec::with_capacity(held.len());
                for chunk in held.chunks($crate::meta::RENEWALS_PER_STATEMENT) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE stream_leases SET expires_ms = ");
                    q.push_bind(lease_i64(now_ms.saturating_add(lease_ms)));
                    q.push(" WHERE holder = ").push_bind(node.to_string()).push(" AND expires_ms > 0 AND (");
                    for (k, (stream, epoch)) in chunk.iter().enumerate() {
                        q.push(if k == 0 { "(stream_arn = " } else { " OR (stream_arn = " });
                        q.push_bind(stream.clone()).push(" AND epoch = ").push_bind(lease_i64(*epoch)).push(")");
                    }
                    q.push(") RETURNING stream_arn, holder, epoch, expires_ms");
                    let rows: Vec<(String, String, i64, i64)> =
                        q.build_query_as().fetch_all(&self.$leases).await.map_err(db_err)?;
                    renewed.extend(rows.into_iter().map(|(stream, holder, epoch, expires)| {
                        $crate::meta::common::lease_from_row(&stream, (holder, epoch, expires))
                    }));
                }
                Ok(renewed)
            }

            async fn release_lease(
                &self,
                stream_arn: &str,
                node: &str,
                epoch: u64,
            ) -> Result<(), $crate::meta::MetaError> {
                sqlx::query(
                    "UPDATE stream_leases SET expires_ms = 0 WHERE stream_arn = $1 AND holder = $2 AND epoch = $3",
                )
                .bind(stream_arn)
                .bind(node)
                .bind($crate::meta::common::lease_i64(epoch))
                .execute(&self.$leases)
                .await
                .map(|_| ())
                .map_err($crate::meta::common::db_err)
            }

            async fn lease(&self, stream_arn: &str) -> Result<Option<$crate::meta::Lease>, $crate::meta::MetaError> {
                let mut conn = self.$leases.acquire().await.map_err($crate::meta::common::db_err)?;
                Self::lease_row(&mut conn, stream_arn).await
            }

            async fn insert_fragment(
                &self,
                stream_arn: &str,
                entry: &reel_storage::CatalogEntry,
                node: &str,
                epoch: u64,
            ) -> Result<(), $crate::meta::MetaError> {
                use $crate::meta::common::{db_err, lease_i64};
                // One statement: the row goes in only while `node` holds the lease at
                // `epoch`. The lease row is locked for share while it is checked, so a take
                // running concurrently either commits first (and nothing is inserted) or
                // waits for this insert to commit.
                let i = &entry.info;
                let inserted = sqlx::query(concat!(
                    "INSERT INTO fragments (stream_arn, counter, producer_ts_ms, server_ts_ms, duration_ms, \
                     chunk_count, payload_bytes, header_bytes, truncated, object_bytes, indexed_ms) \
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, ",
                    $now_ms,
                    " FROM stream_leases WHERE stream_arn = $1 AND holder = $11 AND epoch = $12 ",
                    $share_lock,
                    " ON CONFLICT (stream_arn, counter) DO NOTHING"
                ))
                .bind(stream_arn)
                .bind(lease_i64(i.number.counter()))
                .bind(lease_i64(i.producer_ts_ms))
                .bind(lease_i64(i.server_ts_ms))
                .bind(i64::from(i.duration_ms))
                .bind(i64::from(i.chunk_count))
                .bind(lease_i64(i.payload_bytes))
                .bind(i64::from(i.header_bytes))
                .bind(i.truncated)
                .bind(lease_i64(entry.object_bytes))
                .bind(node)
                .bind(lease_i64(epoch))
                .execute(&self.$leases)
                .await
                .map_err(db_err)?
                .rows_affected();
                if inserted > 0 {
                    return Ok(());
                }
                // Nothing inserted: a retry of a fragment already indexed (accepted again;
                // its counter carries the epoch it was fenced under), or a lost lease.
                let indexed: Option<i64> =
                    sqlx::query_scalar("SELECT counter FROM fragments WHERE stream_arn = $1 AND counter = $2")
                        .bind(stream_arn)
                        .bind(lease_i64(i.number.counter()))
                        .fetch_optional(&self.$leases)
                        .await
                        .map_err(db_err)?;
                match indexed {
                    Some(_) => Ok(()),
                    None => Err($crate::meta::MetaError::LeaseLost { stream: stream_arn.into(), epoch }),
                }
            }

            async fn fragments_after(
                &self,
                stream_arn: &str,
                after: u64,
                limit: usize,
            ) -> Result<Vec<reel_storage::CatalogEntry>, $crate::meta::MetaError> {
                use $crate::meta::common::{db_err, lease_i64};
                let rows: Vec<$crate::meta::catalog::FragmentRow> = sqlx::query_as(concat!(
                    "SELECT stream_arn, ",
                    $crate::meta::common::fragment_cols!(),
                    " FROM fragments WHERE stream_arn = $1 AND counter > $2 ORDER BY counter LIMIT $3"
                ))
                .bind(stream_arn)
                .bind(lease_i64(after))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.$reads)
                .await
                .map_err(db_err)?;
                Ok(rows.into_iter().map(|r| r.entry().1).collect())
            }

            async fn fragments_after_each(
                &self,
                after: &[(String, u64)],
                limit: usize,
            ) -> Result<Vec<(String, reel_storage::CatalogEntry)>, $crate::meta::MetaError> {
                use $crate::meta::common::{db_err, lease_i64};
                if after.is_empty() {
                    return Ok(Vec::new());
                }
                // One statement; the primary key (stream_arn, counter) serves each range.
                let mut q = sqlx::QueryBuilder::<$db>::new(concat!(
                    "SELECT stream_arn, ",
                    $crate::meta::common::fragment_cols!(),
                    " FROM fragments WHERE "
                ));
                for (k, (stream, counter)) in after.iter().enumerate() {
                    q.push(if k == 0 { "(stream_arn = " } else { " OR (stream_arn = " });
                    q.push_bind(stream.clone()).push(" AND counter > ").push_bind(lease_i64(*counter)).push(")");
                }
                q.push(" ORDER BY stream_arn, counter LIMIT ").push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
                let rows: Vec<$crate::meta::catalog::FragmentRow> =
                    q.build_query_as().fetch_all(&self.$reads).await.map_err(db_err)?;
                Ok(rows.into_iter().map(|r| r.entry()).collect())
            }

            async fn fragment_floors(
                &self,
                stream_arns: &[String],
            ) -> Result<Vec<(String, u64)>, $crate::meta::MetaError> {
                if stream_arns.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT stream_arn, MIN(counter) FROM fragments WHERE stream_arn IN (",
                );
                let mut list = q.separated(", ");
                for arn in stream_arns {
                    list.push_bind(arn.clone());
                }
                q.push(") GROUP BY stream_arn");
                let rows: Vec<(String, i64)> =
                    q.build_query_as().fetch_all(&self.$reads).await.map_err($crate::meta::common::db_err)?;
                Ok(rows.into_iter().filter_map(|(s, m)| Some((s, u64::try_from(m).ok()?))).collect())
            }

            async fn expire_fragments(
                &self,
                now_ms: u64,
                limit: usize,
            ) -> Result<Vec<(String, u64)>, $crate::meta::MetaError> {
                use $crate::meta::common::{db_err, lease_i64};
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "DELETE FROM fragments WHERE (stream_arn, counter) IN ( \
                       SELECT f.stream_arn, f.counter FROM fragments f LEFT JOIN streams s ON s.arn = f.stream_arn \
                       WHERE s.arn IS NULL \
                          OR f.server_ts_ms + f.duration_ms + s.data_retention_in_hours * 3600000 < $1 \
                       LIMIT $2) \
                     RETURNING stream_arn, counter",
                )
                .bind(lease_i64(now_ms))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.$leases)
                .await
                .map_err(db_err)?;
                Ok(rows.into_iter().map(|(s, c)| (s, u64::try_from(c).unwrap_or(0))).collect())
            }

            async fn remove_fragments(&self, stream_arn: &str) -> Result<Vec<u64>, $crate::meta::MetaError> {
                let rows: Vec<i64> = sqlx::query_scalar("DELETE FROM fragments WHERE stream_arn = $1 RETURNING counter")
                    .bind(stream_arn)
                    .fetch_all(&self.$leases)
                    .await
                    .map_err($crate::meta::common::db_err)?;
                Ok(rows.into_iter().filter_map(|c| u64::try_from(c).ok()).collect())
            }
        }
    };
}
pub(super) use sql_store;
