//! Lenient restJson1 request bodies.
//!
//! What official clients send and what we accept:
//! - an empty body (or only whitespace) means `{}` (JS v3 sends `{}` or nothing for
//!   all-optional inputs);
//! - members the operation does not know are ignored (newer clients may add some);
//! - an explicit `null` is the same as an absent member (the JS examples send
//!   `"StreamARN": null` when disabling storage);
//! - anything that is not a JSON object, or a member of the wrong JSON type, is a
//!   400 `SerializationException`, as AWS's restJson1 services answer.
//!
//! Missing required members are not a parsing matter: input structs hold them as
//! `Option` and [`super::validate::required`] turns `None` into `InvalidArgumentException`.

use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};

/// Parse `body` into the operation's input structure.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let text = if body.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { body };
    let value: serde_json::Value = serde_json::from_slice(text)
        .map_err(|e| ApiError::serialization(format!("Request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::serialization("Request body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| ApiError::serialization(format!("Invalid request body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Input {
        #[serde(rename = "Name")]
        name: Option<String>,
        #[serde(rename = "Count")]
        count: Option<i64>,
        #[serde(rename = "Items")]
        items: Option<Vec<String>>,
    }

    #[test]
    fn empty_body_is_empty_object() {
        let empty = Input { name: None, count: None, items: None };
        assert_eq!(parse::<Input>(b"").expect("empty"), empty);
        assert_eq!(parse::<Input>(b" \n").expect("blank"), empty);
        assert_eq!(parse::<Input>(b"{}").expect("{}"), empty);
    }

    #[test]
    fn unknown_members_ignored_and_null_is_absent() {
        let v: Input = parse(br#"{"Name":null,"Count":3,"Extra":{"x":[1]}}"#).expect("parse");
        assert_eq!(v, Input { name: None, count: Some(3), items: None });
    }

    #[test]
    fn wrong_types_are_serialization_errors() {
        for bad in
            [&br#"{"Name":5}"#[..], br#"{"Count":"3"}"#, br#"{"Items":"a"}"#, b"[1]", b"nope", br#"{"Count":1.5}"#]
        {
            let e = parse::<Input>(bad).expect_err("must fail");
            assert_eq!(e.code, "SerializationException", "{}", String::from_utf8_lossy(bad));
            assert_eq!(e.status, http::StatusCode::BAD_REQUEST);
        }
    }
}
