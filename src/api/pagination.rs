//! `MaxResults` / `NextToken` for the List* operations.
//!
//! Tokens are opaque to clients: standard base64 (so they match the model's
//! `[a-zA-Z0-9+/=]*`, ≤ 1024) of a versioned cursor, the last name returned. Listings
//! are in name order, so a cursor stays valid when resources are added or deleted
//! between pages.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::error::{ApiError, ApiResult};

use super::validate;

/// Longest `NextToken` the model accepts.
pub const MAX_TOKEN_LEN: usize = 1024;

const CURSOR_PREFIX: &str = "reel1:";

/// The page size: `MaxResults` if given (checked against `1..=max`), else `default`.
pub fn page_size(max_results: Option<i64>, default: usize, max: usize) -> ApiResult<usize> {
    match max_results {
        None => Ok(default),
        Some(n) => {
            let max_i = i64::try_from(max).unwrap_or(i64::MAX);
            let n = validate::range(n, "MaxResults", 1, max_i)?;
            Ok(usize::try_from(n).unwrap_or(max))
        }
    }
}

/// The token that resumes a listing after `last_name`.
pub fn encode(last_name: &str) -> String {
    STANDARD.encode(format!("{CURSOR_PREFIX}{last_name}"))
}

/// The cursor in `token`: `None` for no token or an empty one (start from the top).
pub fn decode(token: Option<&str>) -> ApiResult<Option<String>> {
    let Some(token) = token.filter(|t| !t.is_empty()) else { return Ok(None) };
    if token.len() > MAX_TOKEN_LEN {
        return Err(validate::invalid(
            "(token)",
            "NextToken",
            &format!("Member must have length less than or equal to {MAX_TOKEN_LEN}"),
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')) {
        return Err(validate::invalid(
            token,
            "NextToken",
            "Member must satisfy regular expression pattern: [a-zA-Z0-9+/=]*",
        ));
    }
    let cursor = STANDARD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|s| s.strip_prefix(CURSOR_PREFIX).map(str::to_owned))
        .ok_or_else(|| ApiError::invalid_argument("The NextToken is not a token this server issued"))?;
    Ok(Some(cursor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_match_the_model_pattern() {
        for name in ["a", "cam-01", "x.y_z-9", &"n".repeat(256)] {
            let t = encode(name);
            assert!(t.len() <= MAX_TOKEN_LEN);
            assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)), "{t}");
            assert_eq!(decode(Some(&t)).expect("decodes").as_deref(), Some(name));
        }
    }

    #[test]
    fn absent_or_empty_token_starts_at_top() {
        assert_eq!(decode(None).expect("none"), None);
        assert_eq!(decode(Some("")).expect("empty"), None);
    }

    #[test]
    fn foreign_tokens_are_invalid_arguments() {
        for bad in ["!!!", "abc", "aGVsbG8=", &"A".repeat(1025)] {
            let e = decode(Some(bad)).expect_err(bad);
            assert_eq!(e.code, "InvalidArgumentException", "{bad}");
        }
    }

    #[test]
    fn page_size_bounds() {
        assert_eq!(page_size(None, 500, 10_000).expect("default"), 500);
        assert_eq!(page_size(Some(10), 500, 10_000).expect("given"), 10);
        assert_eq!(page_size(Some(10_000), 500, 10_000).expect("max"), 10_000);
        for bad in [0, -1, 10_001] {
            assert_eq!(page_size(Some(bad), 500, 10_000).expect_err("bound").code, "InvalidArgumentException");
        }
    }
}
