//! Constraint checks from the service model (docs/kvs-wire.md Appendix A.1): required members,
//! lengths, patterns, ranges and enums. Each failure is a 400 `InvalidArgumentException`
//! worded like AWS's own validation messages, naming the member and the constraint.
//!
//! Patterns are matched against the whole value. Lengths count Unicode scalar values,
//! as Smithy's `@length` does.

use std::sync::LazyLock;

use regex::Regex;

use crate::arn::{self, ResourceArn};
use crate::error::{ApiError, ApiResult};

/// Pattern of channel, stream and device names.
pub const NAME_PATTERN: &str = "[a-zA-Z0-9_.-]+";
/// Pattern of versions.
pub const VERSION_PATTERN: &str = "[a-zA-Z0-9]+";
/// Pattern of `MediaType`.
pub const MEDIA_TYPE_PATTERN: &str = r"[\w\-\.\+]+/[\w\-\.\+]+(,[\w\-\.\+]+/[\w\-\.\+]+)*";
/// Pattern of tag keys.
pub const TAG_KEY_PATTERN: &str = r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$";
/// Pattern of tag values.
pub const TAG_VALUE_PATTERN: &str = r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*";

/// Pattern of `DestinationUri` (image and notification destinations).
pub const DESTINATION_URI_PATTERN: &str = "^[a-zA-Z_0-9]+:(//)?([^/]+)/?([^*]*)$";
/// Values of the model's `ConfigurationStatus` (image generation, notifications).
pub const CONFIGURATION_STATUSES: &[&str] = &["ENABLED", "DISABLED"];

/// `ImageSelectorType` values (image generation, GetImages).
pub const IMAGE_SELECTOR_TYPES: &[&str] = &["SERVER_TIMESTAMP", "PRODUCER_TIMESTAMP"];
/// Image `Format` values (image generation, GetImages).
pub const IMAGE_FORMATS: &[&str] = &["JPEG", "PNG"];
/// `FormatConfig` keys (the map holds at most one entry).
pub const FORMAT_CONFIG_KEYS: &[&str] = &["JPEGQuality"];
/// Pattern of `FormatConfig` values (0–256 characters).
pub const FORMAT_CONFIG_VALUE_PATTERN: &str = "^[a-zA-Z_0-9]+";
/// Largest `WidthPixels` of an image.
pub const MAX_WIDTH_PIXELS: i64 = 3840;
/// Largest `HeightPixels` of an image.
pub const MAX_HEIGHT_PIXELS: i64 = 2160;

/// Longest channel or stream name.
pub const MAX_NAME_LEN: usize = 256;
/// Longest `DeviceName`.
pub const MAX_DEVICE_NAME_LEN: usize = 128;
/// Longest `Version` / `CurrentVersion`.
pub const MAX_VERSION_LEN: usize = 64;
/// Longest `MediaType`.
pub const MAX_MEDIA_TYPE_LEN: usize = 128;
/// Longest `KmsKeyId`.
pub const MAX_KMS_KEY_ID_LEN: usize = 2048;
/// Longest tag key.
pub const MAX_TAG_KEY_LEN: usize = 128;
/// Longest tag value.
pub const MAX_TAG_VALUE_LEN: usize = 256;
/// Most tags (or tag keys) one request may carry (the model's list/map bound).
pub const MAX_TAGS_PER_REQUEST: usize = 50;

// `\w` in the model's (Java) patterns is ASCII-only; spell it out for the regex crate.
static MEDIA_TYPE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9_\-.+]+/[A-Za-z0-9_\-.+]+(,[A-Za-z0-9_\-.+]+/[A-Za-z0-9_\-.+]+)*$")
        .unwrap_or_else(|e| unreachable!("static pattern: {e}"))
});
static DESTINATION_URI_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(DESTINATION_URI_PATTERN).unwrap_or_else(|e| unreachable!("static pattern: {e}")));
// Matched against the whole value, as every model pattern is.
static FORMAT_CONFIG_VALUE_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[a-zA-Z_0-9]+$").unwrap_or_else(|e| unreachable!("static pattern: {e}")));
static TAG_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$").unwrap_or_else(|e| unreachable!("static pattern: {e}"))
});

/// `InvalidArgumentException` in AWS's validation wording.
pub fn invalid(value: &str, member: &str, constraint: &str) -> ApiError {
    ApiError::invalid_argument(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
    ))
}

/// A required member must be present (and not `null`).
pub fn required<T>(value: Option<T>, member: &str) -> ApiResult<T> {
    value.ok_or_else(|| {
        ApiError::invalid_argument(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

/// Length in `min..=max` Unicode scalar values.
pub fn length(value: &str, member: &str, min: usize, max: usize) -> ApiResult<()> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(invalid(
            &shorten(value),
            member,
            &format!("Member must have length between {min} and {max}, inclusive"),
        ));
    }
    Ok(())
}

fn pattern_error(value: &str, member: &str, pattern: &str) -> ApiError {
    invalid(&shorten(value), member, &format!("Member must satisfy regular expression pattern: {pattern}"))
}

/// A channel or stream name: 1–256 of `[a-zA-Z0-9_.-]`.
pub fn name(value: &str, member: &str) -> ApiResult<()> {
    name_with_max(value, member, MAX_NAME_LEN)
}

/// A `DeviceName`: 1–128 of `[a-zA-Z0-9_.-]`.
pub fn device_name(value: &str, member: &str) -> ApiResult<()> {
    name_with_max(value, member, MAX_DEVICE_NAME_LEN)
}

fn name_with_max(value: &str, member: &str, max: usize) -> ApiResult<()> {
    length(value, member, 1, max)?;
    if !value.bytes().all(arn::is_name_byte) {
        return Err(pattern_error(value, member, NAME_PATTERN));
    }
    Ok(())
}

/// A resource ARN (model pattern and 1–1024 length), parsed.
pub fn resource_arn(value: &str, member: &str) -> ApiResult<ResourceArn> {
    arn::parse(value).map_err(|e| match e {
        arn::ArnError::Length => invalid(
            &shorten(value),
            member,
            &format!("Member must have length between 1 and {}, inclusive", arn::MAX_ARN_LEN),
        ),
        arn::ArnError::Pattern => {
            pattern_error(value, member, r"arn:[a-z\d-]+:kinesisvideo:[a-z0-9-]+:[0-9]+:[a-z]+/[a-zA-Z0-9_.-]+/[0-9]+")
        }
    })
}

/// A `Version` / `CurrentVersion`: 1–64 ASCII alphanumerics.
pub fn version(value: &str, member: &str) -> ApiResult<()> {
    length(value, member, 1, MAX_VERSION_LEN)?;
    if !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(pattern_error(value, member, VERSION_PATTERN));
    }
    Ok(())
}

/// A string of `min..=max` characters that `re` matches as a whole; `pattern` is the
/// model's spelling of it, quoted in the refusal.
pub fn matches(value: &str, member: &str, (min, max): (usize, usize), re: &Regex, pattern: &str) -> ApiResult<()> {
    length(value, member, min, max)?;
    if !re.is_match(value) {
        return Err(pattern_error(value, member, pattern));
    }
    Ok(())
}

/// A `DestinationUri`: 1–255 characters, `scheme:[//]authority[/path]` without `*`.
pub fn destination_uri(value: &str, member: &str) -> ApiResult<()> {
    matches(value, member, (1, 255), &DESTINATION_URI_RE, DESTINATION_URI_PATTERN)
}

/// The `JPEGQuality` of a `FormatConfig` map at `member` (image generation, GetImages):
/// exactly one entry, key `JPEGQuality`, value matching the model's pattern and (as
/// documented) an integer 1–100. Returns the value as given and as a number.
pub fn jpeg_quality(map: std::collections::BTreeMap<String, String>, member: &str) -> ApiResult<(String, u8)> {
    count(map.len(), member, 1, 1)?;
    let Some((key, value)) = map.into_iter().next() else {
        return Err(ApiError::invalid_argument(format!("{member} must have one entry")));
    };
    one_of(&key, &format!("{member}.key"), FORMAT_CONFIG_KEYS)?;
    let value_member = format!("{member}.value");
    matches(&value, &value_member, (0, 256), &FORMAT_CONFIG_VALUE_RE, FORMAT_CONFIG_VALUE_PATTERN)?;
    match value.parse::<u8>() {
        Ok(q @ 1..=100) => Ok((value, q)),
        _ => Err(invalid(&value, &value_member, "JPEGQuality must be an integer from 1 to 100")),
    }
}

/// A `MediaType` such as `video/h264,audio/aac`.
pub fn media_type(value: &str, member: &str) -> ApiResult<()> {
    length(value, member, 1, MAX_MEDIA_TYPE_LEN)?;
    if !MEDIA_TYPE_RE.is_match(value) {
        return Err(pattern_error(value, member, MEDIA_TYPE_PATTERN));
    }
    Ok(())
}

/// A `KmsKeyId`: 1–2048 characters, no line breaks (pattern `.+`).
pub fn kms_key_id(value: &str, member: &str) -> ApiResult<()> {
    length(value, member, 1, MAX_KMS_KEY_ID_LEN)?;
    if value.contains(['\n', '\r']) {
        return Err(pattern_error(value, member, ".+"));
    }
    Ok(())
}

/// A tag key: 1–128 letters, separators, digits and `_.:/=+-@`.
pub fn tag_key(value: &str, member: &str) -> ApiResult<()> {
    length(value, member, 1, MAX_TAG_KEY_LEN)?;
    if !TAG_RE.is_match(value) {
        return Err(pattern_error(value, member, TAG_KEY_PATTERN));
    }
    Ok(())
}

/// A tag value: 0–256 of the same characters as keys.
pub fn tag_value(value: &str, member: &str) -> ApiResult<()> {
    length(value, member, 0, MAX_TAG_VALUE_LEN)?;
    if !TAG_RE.is_match(value) {
        return Err(pattern_error(value, member, TAG_VALUE_PATTERN));
    }
    Ok(())
}

/// An integer in `min..=max`.
pub fn range(value: i64, member: &str, min: i64, max: i64) -> ApiResult<i64> {
    if value < min || value > max {
        let constraint = if max == i64::MAX {
            format!("Member must have value greater than or equal to {min}")
        } else {
            format!("Member must have value between {min} and {max}, inclusive")
        };
        return Err(invalid(&value.to_string(), member, &constraint));
    }
    Ok(value)
}

/// A list or map size in `min..=max`.
pub fn count(n: usize, member: &str, min: usize, max: usize) -> ApiResult<()> {
    if n < min || n > max {
        return Err(ApiError::invalid_argument(format!(
            "1 validation error detected: Value at '{member}' failed to satisfy constraint: \
             Member must have length between {min} and {max}, inclusive (got {n})"
        )));
    }
    Ok(())
}

/// One of the enum's values (case-sensitive), returned as the static string.
pub fn one_of(value: &str, member: &str, allowed: &[&'static str]) -> ApiResult<&'static str> {
    allowed.iter().copied().find(|a| *a == value).ok_or_else(|| {
        invalid(&shorten(value), member, &format!("Member must satisfy enum value set: [{}]", allowed.join(", ")))
    })
}

/// Values quoted in messages are cut so a huge input does not make a huge error.
fn shorten(value: &str) -> String {
    const MAX: usize = 300;
    if value.chars().count() <= MAX {
        value.to_string()
    } else {
        let mut s: String = value.chars().take(MAX).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(r: ApiResult<impl std::fmt::Debug>) -> String {
        let e = r.expect_err("must be refused");
        assert_eq!(e.code, "InvalidArgumentException");
        e.message
    }

    #[test]
    fn names() {
        assert!(name("cam-1_a.b", "ChannelName").is_ok());
        assert!(name(&"a".repeat(256), "ChannelName").is_ok());
        assert!(bad(name(&"a".repeat(257), "ChannelName")).contains("length between 1 and 256"));
        assert!(bad(name("", "ChannelName")).contains("length"));
        assert!(bad(name("a b", "ChannelName")).contains("pattern"));
        assert!(bad(name("é", "ChannelName")).contains("pattern"));
        assert!(bad(device_name(&"d".repeat(129), "DeviceName")).contains("128"));
    }

    #[test]
    fn versions_and_required() {
        assert!(version("Abc123", "CurrentVersion").is_ok());
        assert!(bad(version("abc-1", "CurrentVersion")).contains("pattern"));
        assert!(bad(version(&"a".repeat(65), "CurrentVersion")).contains("64"));
        assert!(bad(required::<String>(None, "ChannelARN")).contains("must not be null"));
    }

    #[test]
    fn media_types_and_kms() {
        for ok in ["video/h264", "video/h264,audio/aac", "video/x-matroska", "a.b+c/d_e"] {
            assert!(media_type(ok, "MediaType").is_ok(), "{ok}");
        }
        for no in ["video", "video/", "/h264", "video/h264,", "video/h 264", "vidéo/h264"] {
            assert!(media_type(no, "MediaType").is_err(), "{no}");
        }
        assert!(kms_key_id("alias/aws/kinesisvideo", "KmsKeyId").is_ok());
        assert!(kms_key_id("a\nb", "KmsKeyId").is_err());
    }

    #[test]
    fn tags() {
        assert!(tag_key("team:owner/é @x=+-", "Key").is_ok());
        assert!(tag_key("", "Key").is_err());
        assert!(tag_key(&"k".repeat(129), "Key").is_err());
        assert!(tag_key("a*b", "Key").is_err());
        assert!(tag_value("", "Value").is_ok());
        assert!(tag_value("v!", "Value").is_err());
        assert!(tag_value(&"v".repeat(257), "Value").is_err());
    }

    #[test]
    fn whole_value_patterns() {
        let re = Regex::new(r"^[a-z]+-[0-9]$").expect("re");
        assert!(matches("us-1", "Region", (1, 14), &re, "[a-z]+-[0-9]").is_ok());
        assert!(bad(matches("us-12", "Region", (1, 14), &re, "[a-z]+-[0-9]")).contains("pattern: [a-z]+-[0-9]"));
        assert!(bad(matches("", "Region", (1, 14), &re, "[a-z]+-[0-9]")).contains("length between 1 and 14"));
        for ok in ["s3://bucket", "s3://bucket/prefix/x", "arn:aws:sns:us-west-2:123456789012:topic", "x:y"] {
            assert!(destination_uri(ok, "Uri").is_ok(), "{ok}");
        }
        for no in ["", "bucket", "s3://", "s3://b/*", "s-3://b", &format!("s3://{}", "b".repeat(251))] {
            assert!(destination_uri(no, "Uri").is_err(), "{no}");
        }
    }

    #[test]
    fn ranges_enums_counts_arns() {
        assert_eq!(range(60, "MessageTtlSeconds", 5, 120).expect("ok"), 60);
        assert!(bad(range(4, "MessageTtlSeconds", 5, 120)).contains("between 5 and 120"));
        assert!(bad(range(-1, "DataRetentionInHours", 0, i64::MAX)).contains("greater than or equal to 0"));
        assert_eq!(one_of("WSS", "Protocols", &["WSS", "HTTPS"]).expect("ok"), "WSS");
        assert!(bad(one_of("wss", "Protocols", &["WSS", "HTTPS"])).contains("enum value set: [WSS, HTTPS]"));
        assert!(count(0, "Tags", 1, 50).is_err());
        assert!(count(51, "Tags", 0, 50).is_err());
        assert!(count(50, "Tags", 1, 50).is_ok());
        assert!(resource_arn("arn:aws:kinesisvideo:us-west-2:1:channel/a/1", "ChannelARN").is_ok());
        assert!(bad(resource_arn("not-an-arn", "ChannelARN")).contains("pattern"));
        assert!(bad(resource_arn("", "ChannelARN")).contains("length"));
    }
}
