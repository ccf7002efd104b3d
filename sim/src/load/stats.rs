//! Small statistics: percentiles over samples, Prometheus text scraping, HLS playlist and
//! GetMedia tag scanning, and ISO-8601 timestamps. All sans-IO.

use serde::Serialize;

/// p50/p95/p99 (and count, max) of a set of samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Number of samples.
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// The nearest-rank percentile `p` (0–100) of sorted samples; `None` when empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

impl Percentiles {
    /// Over `samples` (any order; NaNs dropped). `None` when there are none.
    pub fn of(samples: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        Some(Self {
            n: v.len(),
            p50: percentile(&v, 50.0)?,
            p95: percentile(&v, 95.0)?,
            p99: percentile(&v, 99.0)?,
            max: *v.last()?,
        })
    }
}

/// The sum over every series of the Prometheus metric `name` (any labels) in exposition text.
pub fn prometheus_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            // The exact name: next is a label set or whitespace, not a longer name.
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                return None;
            }
            let value = if rest.starts_with('{') { &rest[rest.find('}')? + 1..] } else { rest };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` (as `#EXT-X-PROGRAM-DATE-TIME` carries it) to ms since the epoch.
pub fn parse_iso8601_ms(s: &str) -> Option<i64> {
    let s = s.trim().strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next()??);
    let ms = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain("000".chars()).take(3).collect();
        digits.parse::<i64>().ok()?
    };
    Some(((days_from_civil(y, mo, da) * 24 + h) * 60 + mi) * 60_000 + se * 1000 + ms)
}

/// The end of the newest segment of an HLS media playlist: its `#EXT-X-PROGRAM-DATE-TIME`
/// plus its `#EXTINF` duration, in ms since the epoch.
pub fn newest_segment_end_ms(playlist: &str) -> Option<i64> {
    let mut pdt: Option<i64> = None;
    let mut end = None;
    for line in playlist.lines() {
        if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt = parse_iso8601_ms(v);
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            let secs: f64 = v.split(',').next()?.trim().parse().ok()?;
            end = pdt.map(|p| p + (secs * 1000.0).round() as i64);
        }
    }
    end
}

/// The first URI line (not a tag) of a playlist.
pub fn first_uri(playlist: &str) -> Option<&str> {
    playlist.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'))
}

/// `relative` resolved against the directory of `base` (`http://h/a/b.m3u8?x` + `c.m3u8?y`).
pub fn resolve(base: &str, relative: &str) -> String {
    if relative.contains("://") {
        return relative.to_string();
    }
    let path = base.split('?').next().unwrap_or(base);
    match path.rfind('/') {
        Some(i) => format!("{}{relative}", &path[..=i]),
        None => relative.to_string(),
    }
}

/// Incremental scanner of a GetMedia body for one SimpleTag's string values (e.g.
/// `AWS_KINESISVIDEO_FRAGMENT_NUMBER`): `TagName` (0x45A3) holding the name, then `TagString`
/// (0x4487) with the value.
#[derive(Debug)]
pub struct TagScanner {
    name: &'static [u8],
    buf: Vec<u8>,
}

impl TagScanner {
    /// A scanner for the tag `name`.
    pub fn new(name: &'static str) -> Self {
        Self { name: name.as_bytes(), buf: Vec::new() }
    }

    /// Feeds body bytes; returns the values completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut consumed = 0;
        while let Some(pos) = find(&self.buf[consumed..], self.name) {
            let after = consumed + pos + self.name.len();
            match parse_tag_string(&self.buf[after..]) {
                Some(Ok((value, used))) => {
                    out.push(value);
                    consumed = after + used;
                }
                Some(Err(())) => consumed = after,
                None => {
                    // Incomplete: keep from the name on.
                    consumed += pos;
                    self.buf.drain(..consumed);
                    return out;
                }
            }
        }
        // Keep only a tail that may hold the start of a name.
        let cut = consumed.max(self.buf.len().saturating_sub(self.name.len() - 1)).min(self.buf.len());
        self.buf.drain(..cut);
        out
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `44 87 <vint size> <value>` at the start of `b`: `None` if incomplete, `Err` if not a TagString.
fn parse_tag_string(b: &[u8]) -> Option<Result<(String, usize), ()>> {
    if b.len() < 3 {
        return None;
    }
    if b[0] != 0x44 || b[1] != 0x87 {
        return Some(Err(()));
    }
    let first = b[2];
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return Some(Err(()));
    }
    if b.len() < 2 + len {
        return None;
    }
    let mut size = u64::from(first & (0xFFu8 >> len));
    for &x in &b[3..2 + len] {
        size = size << 8 | u64::from(x);
    }
    let start = 2 + len;
    let end = start + size as usize;
    if b.len() < end {
        return None;
    }
    Some(Ok((String::from_utf8_lossy(&b[start..end]).into_owned(), end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&v).unwrap();
        assert_eq!((p.n, p.p50, p.p95, p.p99, p.max), (100, 50.0, 95.0, 99.0, 100.0));
        let one = Percentiles::of(&[7.0]).unwrap();
        assert_eq!((one.p50, one.p99), (7.0, 7.0));
        assert!(Percentiles::of(&[]).is_none());
        assert_eq!(Percentiles::of(&[3.0, f64::NAN, 1.0, 2.0]).unwrap().p50, 2.0);
    }

    #[test]
    fn sums_prometheus_series() {
        let text = "# TYPE reel_storage_session_packets_total counter\n\
            reel_storage_session_packets_total 1200\n\
            reel_storage_session_packets_total_other 5\n\
            reel_requests_total{operation=\"A\",outcome=\"ok\"} 3\n\
            reel_requests_total{operation=\"B\",outcome=\"ok\"} 4\n";
        assert_eq!(prometheus_sum(text, "reel_storage_session_packets_total"), 1200.0);
        assert_eq!(prometheus_sum(text, "reel_requests_total"), 7.0);
        assert_eq!(prometheus_sum(text, "missing"), 0.0);
    }

    #[test]
    fn iso8601_and_playlists() {
        assert_eq!(parse_iso8601_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_iso8601_ms("2023-11-14T22:13:20.123Z"), Some(1_700_000_000_123));
        assert_eq!(parse_iso8601_ms("2023-11-14T22:13:20.5Z"), Some(1_700_000_000_500));
        assert_eq!(parse_iso8601_ms("nope"), None);
        let pl = "#EXTM3U\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:18.000Z\n#EXTINF:2.000,\nf1\n\
                  #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z\n#EXTINF:2.033,\nf2\n";
        assert_eq!(newest_segment_end_ms(pl), Some(1_700_000_002_033));
        assert_eq!(first_uri("#EXTM3U\n#X\nmedia.m3u8?T=1\n"), Some("media.m3u8?T=1"));
        assert_eq!(resolve("http://h:1/hls/v1/master.m3u8?T=1", "media.m3u8?T=1"), "http://h:1/hls/v1/media.m3u8?T=1");
    }

    fn tag(name: &str, value: &str) -> Vec<u8> {
        let mut v = vec![0x45, 0xA3, 0x80 | name.len() as u8];
        v.extend_from_slice(name.as_bytes());
        v.extend_from_slice(&[0x44, 0x87, 0x80 | value.len() as u8]);
        v.extend_from_slice(value.as_bytes());
        v
    }

    #[test]
    fn tag_scanner_survives_any_split() {
        let mut body = vec![0x1A, 0x45, 0xDF, 0xA3];
        body.extend(tag("AWS_KINESISVIDEO_FRAGMENT_NUMBER", "91343852333181432392682062"));
        body.extend(tag("AWS_KINESISVIDEO_SERVER_TIMESTAMP", "1700000000.123"));
        body.extend([0x1F, 0x43, 0xB6, 0x75, 1, 2, 3]);
        body.extend(tag("AWS_KINESISVIDEO_FRAGMENT_NUMBER", "91343852333181432392682063"));
        for split in 1..body.len() {
            let mut s = TagScanner::new("AWS_KINESISVIDEO_FRAGMENT_NUMBER");
            let mut got = s.push(&body[..split]);
            got.extend(s.push(&body[split..]));
            assert_eq!(got, vec!["91343852333181432392682062", "91343852333181432392682063"], "split at {split}");
        }
    }
}
