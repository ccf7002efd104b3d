//! A PutMedia request's headers, checked (sans-IO). PutMedia has no JSON input: the stream,
//! the timecode type, the producer start time and whether acknowledgements are wanted come
//! as `x-amzn-*` headers (docs/kvs-wire.md §6).

use http::HeaderMap;

use crate::error::ApiError;

/// `x-amzn-stream-name`.
pub const STREAM_NAME: &str = "x-amzn-stream-name";
/// `x-amzn-stream-arn`.
pub const STREAM_ARN: &str = "x-amzn-stream-arn";
/// `x-amzn-fragment-timecode-type`.
pub const TIMECODE_TYPE: &str = "x-amzn-fragment-timecode-type";
/// `x-amzn-producer-start-timestamp`.
pub const START_TIMESTAMP: &str = "x-amzn-producer-start-timestamp";
/// `x-amzn-fragment-acknowledgment-required`.
pub const ACKS_REQUIRED: &str = "x-amzn-fragment-acknowledgment-required";

/// How cluster timecodes relate to producer time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimecodeType {
    /// Cluster timecodes are producer times (epoch, in timecode-scale units).
    Absolute,
    /// Cluster timecodes count from the producer start timestamp.
    Relative,
}

/// What a PutMedia request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutMediaRequest {
    /// `x-amzn-stream-name`, when the stream is named.
    pub stream_name: Option<String>,
    /// `x-amzn-stream-arn`, when the stream is given by ARN.
    pub stream_arn: Option<String>,
    /// `x-amzn-fragment-timecode-type`.
    pub timecode_type: TimecodeType,
    /// `x-amzn-producer-start-timestamp` in ms since the epoch, when sent.
    pub start_ms: Option<u64>,
    /// Whether acknowledgements are sent (default yes: the Java producer omits the header
    /// and reads them).
    pub acks: bool,
}

impl PutMediaRequest {
    /// Reads and checks the headers.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let name = header(headers, STREAM_NAME)?;
        let arn = header(headers, STREAM_ARN)?;
        if name.is_some() == arn.is_some() {
            return Err(ApiError::invalid_argument(format!(
                "Exactly one of the headers {STREAM_NAME} and {STREAM_ARN} must be given"
            )));
        }
        let timecode_type = match header(headers, TIMECODE_TYPE)?.as_deref() {
            Some("ABSOLUTE") => TimecodeType::Absolute,
            Some("RELATIVE") => TimecodeType::Relative,
            Some(other) => {
                return Err(ApiError::invalid_argument(format!(
                    "{TIMECODE_TYPE} '{other}' is not one of ABSOLUTE, RELATIVE"
                )));
            }
            None => return Err(ApiError::invalid_argument(format!("The header {TIMECODE_TYPE} is required"))),
        };
        let start_ms = match header(headers, START_TIMESTAMP)? {
            None => None,
            Some(v) => Some(start_timestamp_ms(&v).ok_or_else(|| {
                ApiError::invalid_argument(format!(
                    "{START_TIMESTAMP} '{v}' is not a timestamp: seconds since the epoch (e.g. 1700000000.123), an HTTP date or ISO 8601"
                ))
            })?),
        };
        let acks = match header(headers, ACKS_REQUIRED)?.as_deref() {
            None | Some("1") | Some("true") => true,
            Some("0") | Some("false") => false,
            Some(other) => {
                return Err(ApiError::invalid_argument(format!("{ACKS_REQUIRED} '{other}' is not 1 or 0")));
            }
        };
        if let Some(name) = &name {
            crate::api::validate::name(name, "StreamName")?;
        }
        Ok(Self { stream_name: name, stream_arn: arn, timecode_type, start_ms, acks })
    }
}

/// One header's value, if present once; a repeated or non-text header is refused.
fn header(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::invalid_argument(format!("The header {name} is given more than once")));
    }
    let text = first.to_str().map_err(|_| ApiError::invalid_argument(format!("The header {name} is not text")))?;
    Ok(Some(text.trim().to_owned()))
}

/// Parses the start timestamp into ms since the epoch. Epoch seconds `<seconds>.<fraction>`
/// as the producer SDKs send it: the C producer writes the milliseconds without zero padding
/// (`%llu.%llu` of s and ms, so 5 ms is `.5`) and the Java producer always writes three
/// digits, so a fraction of up to three digits is a count of ms, a longer one a decimal
/// fraction. Also the timestamp forms AWS SDKs put in headers: an HTTP date
/// (`Tue, 14 Nov 2023 22:13:20 GMT`, their default) or ISO 8601 / RFC 3339.
pub fn start_timestamp_ms(v: &str) -> Option<u64> {
    epoch_seconds_ms(v).or_else(|| {
        let t = chrono::DateTime::parse_from_rfc2822(v).or_else(|_| chrono::DateTime::parse_from_rfc3339(v)).ok()?;
        u64::try_from(t.timestamp_millis()).ok()
    })
}

fn epoch_seconds_ms(v: &str) -> Option<u64> {
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let ms = match frac.len() {
        0 => 0,
        1..=3 => frac.parse::<u64>().ok()?,
        _ => frac.get(..3)?.parse::<u64>().ok()?,
    };
    secs.checked_mul(1000)?.checked_add(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("value"));
        }
        h
    }

    #[test]
    fn the_c_and_java_producers_headers_parse() {
        let c = headers(&[
            (STREAM_NAME, "cam-1"),
            (TIMECODE_TYPE, "ABSOLUTE"),
            (START_TIMESTAMP, "1700000000.5"),
            (ACKS_REQUIRED, "1"),
        ]);
        let r = PutMediaRequest::from_headers(&c).expect("c");
        assert_eq!(r.stream_name.as_deref(), Some("cam-1"));
        assert_eq!(r.timecode_type, TimecodeType::Absolute);
        assert_eq!(r.start_ms, Some(1_700_000_000_005), "the C producer's unpadded ms");
        assert!(r.acks);
        let java = headers(&[
            (STREAM_ARN, "arn:aws:kinesisvideo:us-east-1:123456789012:stream/cam/1"),
            (TIMECODE_TYPE, "RELATIVE"),
            (START_TIMESTAMP, "1700000000.050"),
        ]);
        let r = PutMediaRequest::from_headers(&java).expect("java");
        assert_eq!(r.timecode_type, TimecodeType::Relative);
        assert_eq!(r.start_ms, Some(1_700_000_000_050));
        assert!(r.acks, "acks unless refused");
    }

    #[test]
    fn bad_headers_are_invalid_arguments() {
        let cases: &[&[(&'static str, &str)]] = &[
            &[(TIMECODE_TYPE, "ABSOLUTE")],
            &[
                (STREAM_NAME, "a"),
                (STREAM_ARN, "arn:aws:kinesisvideo:us-east-1:1:stream/a/1"),
                (TIMECODE_TYPE, "ABSOLUTE"),
            ],
            &[(STREAM_NAME, "a")],
            &[(STREAM_NAME, "a"), (TIMECODE_TYPE, "SOMETIMES")],
            &[(STREAM_NAME, "a"), (TIMECODE_TYPE, "ABSOLUTE"), (START_TIMESTAMP, "-1")],
            &[(STREAM_NAME, "a"), (TIMECODE_TYPE, "ABSOLUTE"), (START_TIMESTAMP, "12:00")],
            &[(STREAM_NAME, "a"), (TIMECODE_TYPE, "ABSOLUTE"), (ACKS_REQUIRED, "maybe")],
            &[(STREAM_NAME, "bad name!"), (TIMECODE_TYPE, "ABSOLUTE")],
            &[(STREAM_NAME, "a"), (STREAM_NAME, "b"), (TIMECODE_TYPE, "ABSOLUTE")],
        ];
        for case in cases {
            let e = PutMediaRequest::from_headers(&headers(case)).expect_err("refused");
            assert_eq!(e.code, "InvalidArgumentException", "{case:?}: {}", e.message);
        }
    }

    #[test]
    fn start_timestamps() {
        assert_eq!(start_timestamp_ms("1700000000"), Some(1_700_000_000_000));
        assert_eq!(start_timestamp_ms("1700000000.123"), Some(1_700_000_000_123));
        assert_eq!(start_timestamp_ms("1700000000.12"), Some(1_700_000_000_012));
        assert_eq!(start_timestamp_ms("1700000000.123456"), Some(1_700_000_000_123));
        assert_eq!(start_timestamp_ms(""), None);
        assert_eq!(start_timestamp_ms(".5"), None);
        assert_eq!(start_timestamp_ms("99999999999999999999"), None);
        assert_eq!(start_timestamp_ms("Tue, 14 Nov 2023 22:13:20 GMT"), Some(1_700_000_000_000));
        assert_eq!(start_timestamp_ms("2023-11-14T22:13:20.123Z"), Some(1_700_000_000_123));
        assert_eq!(start_timestamp_ms("1969-12-31T23:59:59Z"), None, "before the epoch");
        assert_eq!(start_timestamp_ms("yesterday"), None);
    }
}
