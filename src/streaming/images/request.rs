//! GetImages input, sans-IO: the model's constraints and KVS's documented limits, the
//! sampling timestamps of one page, and the page token.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::api::validate;
use crate::error::{ApiError, ApiResult};
use crate::streaming::session::seconds_to_ms;

/// Longest `StartTimestamp`..`EndTimestamp` range (KVS: 300 s).
pub const MAX_RANGE_MS: u64 = 300_000;
/// Shortest `SamplingInterval` (KVS: 200 ms).
pub const MIN_SAMPLING_INTERVAL_MS: u64 = 200;
/// `SamplingInterval` when the request gives none (KVS's historical minimum and default).
pub const DEFAULT_SAMPLING_INTERVAL_MS: u64 = 3_000;
/// Most images in one response: a larger `MaxResults` still gives pages of 25 (KVS).
pub const MAX_PAGE: usize = 25;
/// JPEG quality when `FormatConfig` gives none (KVS: 80).
pub const DEFAULT_JPEG_QUALITY: u8 = 80;

/// `GetImages` input.
#[derive(Debug, Default, Deserialize)]
pub struct Input {
    #[serde(rename = "StreamName")]
    pub(super) stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    pub(super) stream_arn: Option<String>,
    #[serde(rename = "ImageSelectorType")]
    selector: Option<String>,
    #[serde(rename = "StartTimestamp")]
    start: Option<f64>,
    #[serde(rename = "EndTimestamp")]
    end: Option<f64>,
    #[serde(rename = "SamplingInterval")]
    interval: Option<i64>,
    #[serde(rename = "Format")]
    format: Option<String>,
    #[serde(rename = "FormatConfig")]
    format_config: Option<BTreeMap<String, String>>,
    #[serde(rename = "WidthPixels")]
    width: Option<i64>,
    #[serde(rename = "HeightPixels")]
    height: Option<i64>,
    #[serde(rename = "MaxResults")]
    max_results: Option<i64>,
    #[serde(rename = "NextToken")]
    next_token: Option<String>,
}

/// The image encoding asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JPEG at this quality (1–100).
    Jpeg(u8),
    /// PNG (lossless).
    Png,
}

/// The image size asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// The picture's own size.
    Original,
    /// This width, the height keeping the picture's aspect ratio.
    Width(u32),
    /// This height, the width keeping the picture's aspect ratio.
    Height(u32),
    /// Exactly this size (the picture is stretched to it).
    Exact(u32, u32),
}

impl Size {
    /// The output size of a `width` x `height` picture (at least 1 x 1).
    pub fn of(self, width: u32, height: u32) -> (u32, u32) {
        let keep = |num: u32, den: u32, target: u32| -> u32 {
            let scaled = (u64::from(target) * u64::from(num) + u64::from(den) / 2) / u64::from(den.max(1));
            u32::try_from(scaled).unwrap_or(u32::MAX).max(1)
        };
        match self {
            Size::Original => (width.max(1), height.max(1)),
            Size::Width(w) => (w, keep(height, width, w)),
            Size::Height(h) => (keep(width, height, h), h),
            Size::Exact(w, h) => (w, h),
        }
    }
}

/// A validated GetImages request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Producer timestamps (`PRODUCER_TIMESTAMP`) or server timestamps.
    pub producer: bool,
    /// First sampling timestamp, ms since the Unix epoch.
    pub start_ms: u64,
    /// Last possible sampling timestamp (inclusive).
    pub end_ms: u64,
    /// Sampling interval in ms.
    pub interval_ms: u64,
    /// Encoding.
    pub format: Format,
    /// Output size.
    pub size: Size,
    /// Images in this page at most.
    pub page: usize,
    /// Index of this page's first sampling timestamp.
    pub first: u64,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::invalid_argument(message)
}

fn pixels(v: Option<i64>, member: &str, max: i64) -> ApiResult<Option<u32>> {
    v.map(|n| validate::range(n, member, 1, max).map(|n| u32::try_from(n).unwrap_or(1))).transpose()
}

/// Validates `input` (everything but the stream, which the caller resolves).
pub fn parse(input: &Input) -> ApiResult<Request> {
    let selector = validate::required(input.selector.as_deref(), "ImageSelectorType")?;
    let producer =
        validate::one_of(selector, "ImageSelectorType", validate::IMAGE_SELECTOR_TYPES)? == "PRODUCER_TIMESTAMP";
    let start_ms = seconds_to_ms(validate::required(input.start, "StartTimestamp")?, "StartTimestamp")?;
    let end_ms = seconds_to_ms(validate::required(input.end, "EndTimestamp")?, "EndTimestamp")?;
    if end_ms < start_ms {
        return Err(invalid("EndTimestamp must not be before StartTimestamp"));
    }
    if end_ms - start_ms > MAX_RANGE_MS {
        return Err(invalid("The range between StartTimestamp and EndTimestamp must not exceed 300 seconds"));
    }
    let interval_ms = match input.interval {
        None => DEFAULT_SAMPLING_INTERVAL_MS,
        Some(n) if n >= MIN_SAMPLING_INTERVAL_MS as i64 => n.unsigned_abs(),
        Some(n) => {
            return Err(invalid(format!(
                "SamplingInterval {n} must be at least {MIN_SAMPLING_INTERVAL_MS} milliseconds"
            )));
        }
    };
    let quality = match input.format_config.clone() {
        None => DEFAULT_JPEG_QUALITY,
        Some(map) => validate::jpeg_quality(map, "FormatConfig")?.1,
    };
    let format = validate::required(input.format.as_deref(), "Format")?;
    let format = match validate::one_of(format, "Format", validate::IMAGE_FORMATS)? {
        "JPEG" => Format::Jpeg(quality),
        _ => Format::Png,
    };
    let width = pixels(input.width, "WidthPixels", validate::MAX_WIDTH_PIXELS)?;
    let size = match (width, pixels(input.height, "HeightPixels", validate::MAX_HEIGHT_PIXELS)?) {
        (None, None) => Size::Original,
        (Some(w), None) => Size::Width(w),
        (None, Some(h)) => Size::Height(h),
        (Some(w), Some(h)) => Size::Exact(w, h),
    };
    let page = match input.max_results {
        None => MAX_PAGE,
        Some(n) if (1..=100).contains(&n) => usize::try_from(n).unwrap_or(MAX_PAGE).min(MAX_PAGE),
        Some(n) => return Err(invalid(format!("MaxResults {n} must be between 1 and 100"))),
    };
    let mut request = Request { producer, start_ms, end_ms, interval_ms, format, size, page, first: 0 };
    if let Some(token) = &input.next_token {
        request.first = request.index_in(token)?;
    }
    Ok(request)
}

impl Request {
    /// How many sampling timestamps the whole range has: start, start + interval, … up to
    /// end (just the start when the range is shorter than the interval).
    pub fn count(&self) -> u64 {
        (self.end_ms - self.start_ms) / self.interval_ms.max(1) + 1
    }

    /// This page's sampling timestamps, and the token of the next page if any follow.
    pub fn page_timestamps(&self) -> (Vec<u64>, Option<String>) {
        let last = self.count().min(self.first.saturating_add(self.page as u64));
        let stamps = (self.first..last).map(|i| self.start_ms + i * self.interval_ms).collect();
        let next = (last < self.count()).then(|| self.token(last));
        (stamps, next)
    }

    /// The token naming sampling timestamp `index` of this request's range.
    fn token(&self, index: u64) -> String {
        STANDARD.encode(format!("{index}/{}/{}/{}", self.start_ms, self.end_ms, self.interval_ms))
    }

    /// The index a token of this request names; a token of another request, or mangled, is
    /// refused.
    fn index_in(&self, token: &str) -> ApiResult<u64> {
        let bad = || invalid("NextToken is not a token of this request's range and interval");
        let text = STANDARD.decode(token).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(bad)?;
        let parts: Vec<u64> = text.split('/').map(str::parse).collect::<Result<_, _>>().map_err(|_| bad())?;
        match parts.as_slice() {
            [index, start, end, interval]
                if (*start, *end, *interval) == (self.start_ms, self.end_ms, self.interval_ms)
                    && *index < self.count() =>
            {
                Ok(*index)
            }
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: &str) -> Input {
        serde_json::from_str(json).expect("json")
    }

    const BASE: &str = r#""StreamName":"s","ImageSelectorType":"PRODUCER_TIMESTAMP","StartTimestamp":1000,"EndTimestamp":1010,"Format":"JPEG""#;

    #[test]
    fn defaults_and_sampling() {
        let r = parse(&input(&format!("{{{BASE}}}"))).expect("valid");
        assert_eq!((r.producer, r.start_ms, r.end_ms, r.interval_ms), (true, 1_000_000, 1_010_000, 3_000));
        assert_eq!((r.format, r.size, r.page, r.first), (Format::Jpeg(80), Size::Original, 25, 0));
        assert_eq!(r.count(), 4, "1000, 1003, 1006, 1009");
        let (stamps, next) = r.page_timestamps();
        assert_eq!(stamps, [1_000_000, 1_003_000, 1_006_000, 1_009_000]);
        assert_eq!(next, None);
        // A range shorter than the interval: the start only.
        let short = parse(&input(&format!("{{{BASE},\"SamplingInterval\":20000}}"))).expect("valid");
        assert_eq!(short.page_timestamps().0, [1_000_000]);
    }

    #[test]
    fn pages_are_25_at_most_and_tokens_continue_them() {
        let json = r#""StreamName":"s","ImageSelectorType":"SERVER_TIMESTAMP","StartTimestamp":0,"EndTimestamp":300,"SamplingInterval":200,"Format":"PNG","MaxResults":100"#;
        let first = parse(&input(&format!("{{{json}}}"))).expect("valid");
        assert_eq!((first.count(), first.page), (1501, 25));
        let (stamps, next) = first.page_timestamps();
        assert_eq!((stamps.len(), stamps[24]), (25, 4_800));
        let token = next.expect("more");
        assert!(regex::Regex::new(r"^[a-zA-Z0-9+/]+={0,2}$").expect("re").is_match(&token), "{token}");
        let second = parse(&input(&format!("{{{json},\"NextToken\":\"{token}\"}}"))).expect("valid");
        assert_eq!(second.page_timestamps().0[0], 5_000);
        // A token of another range is refused.
        let other = format!(r#"{{{BASE},"NextToken":"{token}"}}"#);
        assert_eq!(parse(&input(&other)).expect_err("foreign token").code, "InvalidArgumentException");
        let mangled = format!(r#"{{{BASE},"NextToken":"bm9wZQ=="}}"#);
        assert!(parse(&input(&mangled)).is_err());
    }

    #[test]
    fn sizes_keep_the_aspect_ratio_unless_both_are_given() {
        assert_eq!(Size::Original.of(640, 360), (640, 360));
        assert_eq!(Size::Width(320).of(640, 360), (320, 180));
        assert_eq!(Size::Height(90).of(640, 360), (160, 90));
        assert_eq!(Size::Exact(100, 100).of(640, 360), (100, 100));
        assert_eq!(Size::Height(1).of(4000, 10), (400, 1));
        assert_eq!(Size::Width(1).of(10, 4000), (1, 400));
    }

    #[test]
    fn invalid_inputs_are_invalid_arguments() {
        for extra in [
            r#","SamplingInterval":199"#,
            r#","WidthPixels":0"#,
            r#","WidthPixels":3841"#,
            r#","HeightPixels":2161"#,
            r#","MaxResults":0"#,
            r#","MaxResults":101"#,
            r#","FormatConfig":{"JPEGQuality":"0"}"#,
            r#","FormatConfig":{"JPEGQuality":"101"}"#,
            r#","FormatConfig":{"JPEGQuality":"high"}"#,
            r#","FormatConfig":{"Quality":"50"}"#,
            r#","FormatConfig":{}"#,
        ] {
            let e = parse(&input(&format!("{{{BASE}{extra}}}"))).expect_err(extra);
            assert_eq!(e.code, "InvalidArgumentException", "{extra}");
        }
        let q = parse(&input(&format!(r#"{{{BASE},"FormatConfig":{{"JPEGQuality":"55"}}}}"#))).expect("valid");
        assert_eq!(q.format, Format::Jpeg(55));
        for (json, why) in [
            (r#"{"StreamName":"s","StartTimestamp":1,"EndTimestamp":2,"Format":"PNG"}"#, "no selector"),
            (
                r#"{"StreamName":"s","ImageSelectorType":"X","StartTimestamp":1,"EndTimestamp":2,"Format":"PNG"}"#,
                "selector",
            ),
            (
                r#"{"StreamName":"s","ImageSelectorType":"SERVER_TIMESTAMP","EndTimestamp":2,"Format":"PNG"}"#,
                "no start",
            ),
            (
                r#"{"StreamName":"s","ImageSelectorType":"SERVER_TIMESTAMP","StartTimestamp":1,"EndTimestamp":2}"#,
                "no format",
            ),
            (
                r#"{"StreamName":"s","ImageSelectorType":"SERVER_TIMESTAMP","StartTimestamp":1,"EndTimestamp":2,"Format":"GIF"}"#,
                "format",
            ),
            (
                r#"{"StreamName":"s","ImageSelectorType":"SERVER_TIMESTAMP","StartTimestamp":3,"EndTimestamp":2,"Format":"PNG"}"#,
                "reversed",
            ),
            (
                r#"{"StreamName":"s","ImageSelectorType":"SERVER_TIMESTAMP","StartTimestamp":0,"EndTimestamp":300.001,"Format":"PNG"}"#,
                "over 300 s",
            ),
        ] {
            assert_eq!(parse(&input(json)).expect_err(why).code, "InvalidArgumentException", "{why}");
        }
    }
}
