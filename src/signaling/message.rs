//! The signaling wire format, sans-IO: client → service messages (parsed from one text
//! frame) and service → client events (serialized to one text frame). docs/kvs-wire.md §3.3–§3.4.
//!
//! Parsing is deliberately lenient where real clients differ (key casing, `""` as "no
//! recipient", unknown keys such as the C SDK's `IceServerList`) and strict where KVS
//! documents a constraint (actions, id patterns, payload size and alphabet).

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::validate::{is_client_id, is_correlation_id};

/// What a signaling message carries (the client's `action`, the service's `messageType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MessageKind {
    /// `SDP_OFFER`.
    SdpOffer,
    /// `SDP_ANSWER`.
    SdpAnswer,
    /// `ICE_CANDIDATE`.
    IceCandidate,
}

impl MessageKind {
    /// The wire name (`SDP_OFFER`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SdpOffer => "SDP_OFFER",
            Self::SdpAnswer => "SDP_ANSWER",
            Self::IceCandidate => "ICE_CANDIDATE",
        }
    }

    /// Parse a wire name; exact, upper-case (as every client sends it).
    pub fn from_wire(s: &str) -> Option<Self> {
        match s {
            "SDP_OFFER" => Some(Self::SdpOffer),
            "SDP_ANSWER" => Some(Self::SdpAnswer),
            "ICE_CANDIDATE" => Some(Self::IceCandidate),
            _ => None,
        }
    }

    /// Offers and answers (5 TPS quota, replace each other while pending) vs candidates.
    pub fn is_sdp(self) -> bool {
        matches!(self, Self::SdpOffer | Self::SdpAnswer)
    }

    /// The KVS operation name used for metrics (`SendSdpOffer`, `SendSdpAnswer`, `SendCandidate`).
    pub fn operation(self) -> &'static str {
        match self {
            Self::SdpOffer => "SendSdpOffer",
            Self::SdpAnswer => "SendSdpAnswer",
            Self::IceCandidate => "SendCandidate",
        }
    }
}

/// One signaling message as routed between peers: its kind and its `messagePayload`
/// exactly as the sender wrote it (base64 of UTF-8 JSON, relayed byte for byte).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalingMessage {
    /// Offer, answer or candidate.
    pub kind: MessageKind,
    /// The base64 `messagePayload`.
    pub payload: String,
}

impl SignalingMessage {
    /// Build from the payload's raw bytes (e.g. `{"type":"offer","sdp":"…"}`), base64-encoding them.
    pub fn from_payload_bytes(kind: MessageKind, payload: &[u8]) -> Self {
        Self { kind, payload: base64::engine::general_purpose::STANDARD.encode(payload) }
    }

    /// The decoded payload bytes (normally UTF-8 JSON).
    pub fn payload_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        lenient_base64().decode(&self.payload)
    }
}

/// A parsed client → service message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage {
    /// The action and payload.
    pub message: SignalingMessage,
    /// `recipientClientId`; `None` when absent, `null` or `""`.
    pub recipient: Option<String>,
    /// `correlationId`; when present, failures are answered with `STATUS_RESPONSE`.
    pub correlation_id: Option<String>,
}

/// Limits the parser enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLimits {
    /// Longest accepted `messagePayload`, in bytes of base64 text.
    pub max_payload_bytes: usize,
}

/// Why a client message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("message is not a JSON object")]
    NotAnObject,
    #[error("member {0} must be a string")]
    NotAString(&'static str),
    #[error("member {0} is given twice with different values")]
    Conflicting(&'static str),
    #[error("action is required")]
    MissingAction,
    #[error("unsupported action {0:?}; expected SDP_OFFER, SDP_ANSWER or ICE_CANDIDATE")]
    UnknownAction(String),
    #[error("messagePayload is required")]
    MissingPayload,
    #[error("messagePayload is longer than {max} bytes")]
    PayloadTooLarge { max: usize },
    #[error("messagePayload must be base64")]
    PayloadNotBase64,
    #[error("recipientClientId must be 1-256 characters of [a-zA-Z0-9_.-]")]
    BadRecipient,
    #[error("correlationId must be 1-256 characters of [a-zA-Z0-9_.-]")]
    BadCorrelationId,
}

/// A refused message, with the correlation id to answer to (when one could be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseFailure {
    /// The sender's `correlationId`, if it was a usable string.
    pub correlation_id: Option<String>,
    /// What was wrong.
    pub error: MessageError,
}

/// Parse one text frame. Keys match case-insensitively (JS lowerCamel, C SDK PascalCase).
pub fn parse_client_message(text: &str, limits: MessageLimits) -> Result<ClientMessage, ParseFailure> {
    let fail = |correlation_id: Option<String>, error| ParseFailure { correlation_id, error };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text) else {
        return Err(fail(None, MessageError::NotAnObject));
    };
    let fields = match Fields::collect(&map) {
        Ok(f) => f,
        // A conflict or a wrong type may hide the correlation id; answer it when readable.
        Err(error) => return Err(fail(readable_correlation_id(&map), error)),
    };
    let correlation_id = match fields.correlation_id {
        Some(c) if is_correlation_id(c) => Some(c.to_string()),
        // Echo a malformed-but-short id so the sender can still match the failure.
        Some(c) if !c.is_empty() && c.len() <= 256 => {
            return Err(fail(Some(c.to_string()), MessageError::BadCorrelationId));
        }
        Some(_) => return Err(fail(None, MessageError::BadCorrelationId)),
        None => None,
    };
    let fail = |error| Err(fail(correlation_id.clone(), error));
    let kind = match fields.action {
        None => return fail(MessageError::MissingAction),
        Some(a) => match MessageKind::from_wire(a) {
            Some(k) => k,
            None => return fail(MessageError::UnknownAction(a.chars().take(64).collect())),
        },
    };
    let recipient = match fields.recipient {
        None | Some("") => None,
        Some(r) if is_client_id(r) => Some(r.to_string()),
        Some(_) => return fail(MessageError::BadRecipient),
    };
    let payload = match fields.payload {
        None | Some("") => return fail(MessageError::MissingPayload),
        Some(p) if p.len() > limits.max_payload_bytes => {
            return fail(MessageError::PayloadTooLarge { max: limits.max_payload_bytes });
        }
        Some(p) if lenient_base64().decode(p).map_or(true, |b| b.is_empty()) => {
            return fail(MessageError::PayloadNotBase64);
        }
        Some(p) => p.to_string(),
    };
    Ok(ClientMessage { message: SignalingMessage { kind, payload }, recipient, correlation_id })
}

/// The four members a client message may carry, found case-insensitively.
#[derive(Default)]
struct Fields<'a> {
    action: Option<&'a str>,
    recipient: Option<&'a str>,
    payload: Option<&'a str>,
    correlation_id: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn collect(map: &'a serde_json::Map<String, serde_json::Value>) -> Result<Self, MessageError> {
        let mut f = Fields::default();
        for (key, value) in map {
            let (slot, name) = match key.to_ascii_lowercase().as_str() {
                "action" => (&mut f.action, "action"),
                "recipientclientid" => (&mut f.recipient, "recipientClientId"),
                "messagepayload" => (&mut f.payload, "messagePayload"),
                "correlationid" => (&mut f.correlation_id, "correlationId"),
                // Unknown members (e.g. the C SDK's IceServerList) are ignored.
                _ => continue,
            };
            let value = match value {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s.as_str(),
                _ => return Err(MessageError::NotAString(name)),
            };
            match slot {
                Some(prev) if *prev != value => return Err(MessageError::Conflicting(name)),
                _ => *slot = Some(value),
            }
        }
        Ok(f)
    }
}

fn readable_correlation_id(map: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("correlationId"))
        .and_then(|(_, v)| v.as_str())
        .filter(|c| is_correlation_id(c))
        .map(str::to_string)
}

/// Standard alphabet; padding optional (clients pad, but nothing is gained by refusing).
fn lenient_base64() -> base64::engine::GeneralPurpose {
    base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    )
}

/// `messageType` of a service → client event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    /// A relayed offer.
    SdpOffer,
    /// A relayed answer.
    SdpAnswer,
    /// A relayed candidate.
    IceCandidate,
    /// The service will close this connection soon; reconnect.
    GoAway,
    /// Fetch new ICE server config and reconnect the relay.
    ReconnectIceServer,
    /// The failure of a message that carried a `correlationId`.
    StatusResponse,
}

impl From<MessageKind> for EventType {
    fn from(k: MessageKind) -> Self {
        match k {
            MessageKind::SdpOffer => Self::SdpOffer,
            MessageKind::SdpAnswer => Self::SdpAnswer,
            MessageKind::IceCandidate => Self::IceCandidate,
        }
    }
}

/// A service → client event. Field order is the wire order of docs/kvs-wire.md §3.4 (the C SDK
/// needs `statusResponse` before its nested keys); absent members are omitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEvent {
    /// The viewer a message came from; omitted for the master's and the storage peer's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_client_id: Option<String>,
    /// What the event is.
    pub message_type: EventType,
    /// The relayed base64 payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_payload: Option<String>,
    /// Only on `STATUS_RESPONSE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_response: Option<StatusResponse>,
}

/// Body of a `STATUS_RESPONSE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    /// The failed message's `correlationId`.
    pub correlation_id: String,
    /// KVS error name, e.g. `InvalidArgumentException`.
    pub error_type: String,
    /// HTTP-style status as a string (`"400"`); the C SDK parses the token's digits.
    pub status_code: String,
    /// Human-readable reason.
    pub description: String,
}

impl ServiceEvent {
    /// A relayed message, with the sending viewer's id when there is one.
    pub fn relay(sender_client_id: Option<String>, message: &SignalingMessage) -> Self {
        Self {
            sender_client_id,
            message_type: message.kind.into(),
            message_payload: Some(message.payload.clone()),
            status_response: None,
        }
    }

    /// `GO_AWAY` (no payload).
    pub fn go_away() -> Self {
        Self::bare(EventType::GoAway)
    }

    /// `RECONNECT_ICE_SERVER` (no payload).
    pub fn reconnect_ice_server() -> Self {
        Self::bare(EventType::ReconnectIceServer)
    }

    /// `STATUS_RESPONSE` for a failed message.
    pub fn status(correlation_id: String, error_type: &str, status_code: u16, description: String) -> Self {
        Self {
            sender_client_id: None,
            message_type: EventType::StatusResponse,
            message_payload: None,
            status_response: Some(StatusResponse {
                correlation_id,
                error_type: error_type.to_string(),
                status_code: status_code.to_string(),
                description,
            }),
        }
    }

    fn bare(message_type: EventType) -> Self {
        Self { sender_client_id: None, message_type, message_payload: None, status_response: None }
    }

    /// The text frame.
    pub fn to_json(&self) -> String {
        // Serializing plain strings and enums cannot fail; fall back to a GO_AWAY-free
        // empty object rather than panicking if that ever changes.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: MessageLimits = MessageLimits { max_payload_bytes: 10 * 1024 };

    fn parse(text: &str) -> Result<ClientMessage, ParseFailure> {
        parse_client_message(text, LIMITS)
    }

    #[test]
    fn js_lower_camel_keys() {
        let m = parse(r#"{"action":"SDP_OFFER","recipientClientId":"v1","messagePayload":"eyJ0eXBlIjoib2ZmZXIifQ==","correlationId":"c-1"}"#)
            .expect("valid");
        assert_eq!(m.message.kind, MessageKind::SdpOffer);
        assert_eq!(m.recipient.as_deref(), Some("v1"));
        assert_eq!(m.message.payload, "eyJ0eXBlIjoib2ZmZXIifQ==");
        assert_eq!(m.message.payload_bytes().expect("b64"), br#"{"type":"offer"}"#);
        assert_eq!(m.correlation_id.as_deref(), Some("c-1"));
    }

    #[test]
    fn c_sdk_pascal_keys_with_empty_recipient_and_ice_server_list() {
        let m = parse(
            r#"{"action":"ICE_CANDIDATE","RecipientClientId":"","MessagePayload":"e30=","CorrelationId":"1.2_3","IceServerList":[{"Ttl":1}]}"#,
        )
        .expect("valid");
        assert_eq!(m.message.kind, MessageKind::IceCandidate);
        assert_eq!(m.recipient, None);
        assert_eq!(m.correlation_id.as_deref(), Some("1.2_3"));
    }

    #[test]
    fn null_members_are_absent_and_unpadded_base64_is_accepted() {
        let m = parse(r#"{"action":"SDP_ANSWER","recipientClientId":null,"messagePayload":"e30"}"#).expect("valid");
        assert_eq!(m.recipient, None);
        assert_eq!(m.correlation_id, None);
        assert_eq!(m.message.payload_bytes().expect("b64"), b"{}");
    }

    #[test]
    fn refusals_carry_the_correlation_id() {
        let e = parse(r#"{"action":"SDP_PRANSWER","messagePayload":"e30=","correlationId":"abc"}"#)
            .expect_err("bad action");
        assert_eq!(e.correlation_id.as_deref(), Some("abc"));
        assert!(matches!(e.error, MessageError::UnknownAction(_)));
        let e = parse(r#"{"action":"SDP_OFFER","messagePayload":"not base64!","correlationId":"abc"}"#)
            .expect_err("bad b64");
        assert_eq!(e.error, MessageError::PayloadNotBase64);
        let e = parse(r#"{"action":"SDP_OFFER","correlationId":"abc"}"#).expect_err("no payload");
        assert_eq!(e.error, MessageError::MissingPayload);
        let e =
            parse(r#"{"action":"SDP_OFFER","messagePayload":"","correlationId":"abc"}"#).expect_err("empty payload");
        assert_eq!(e.error, MessageError::MissingPayload);
        let e =
            parse(r#"{"action":"SDP_OFFER","messagePayload":"e30=","recipientClientId":"a b","correlationId":"abc"}"#)
                .expect_err("bad recipient");
        assert_eq!(e.error, MessageError::BadRecipient);
        let e = parse(r#"{"action":7,"messagePayload":"e30=","correlationId":"abc"}"#).expect_err("number action");
        assert_eq!((e.error, e.correlation_id.as_deref()), (MessageError::NotAString("action"), Some("abc")));
        let e = parse(r#"{"action":"SDP_OFFER","messagePayload":"e30=","correlationId":"has space"}"#)
            .expect_err("bad cid");
        assert_eq!((e.error, e.correlation_id.as_deref()), (MessageError::BadCorrelationId, Some("has space")));
    }

    #[test]
    fn refusals_without_correlation_id() {
        assert_eq!(parse("not json").expect_err("x").correlation_id, None);
        assert_eq!(parse("[1]").expect_err("x").error, MessageError::NotAnObject);
        let e = parse(r#"{"action":"SDP_OFFER","messagePayload":"e30="}"#.replace("SDP_OFFER", "NOPE").as_str())
            .expect_err("x");
        assert_eq!(e.correlation_id, None);
        let long = "c".repeat(257);
        let e = parse(&format!(r#"{{"action":"SDP_OFFER","messagePayload":"e30=","correlationId":"{long}"}}"#))
            .expect_err("x");
        assert_eq!((e.error, e.correlation_id), (MessageError::BadCorrelationId, None));
    }

    #[test]
    fn conflicting_casings_are_refused_identical_ones_accepted() {
        let e = parse(r#"{"action":"SDP_OFFER","messagePayload":"e30=","MessagePayload":"e31=","correlationId":"k"}"#)
            .expect_err("x");
        assert_eq!((e.error, e.correlation_id.as_deref()), (MessageError::Conflicting("messagePayload"), Some("k")));
        assert!(parse(r#"{"action":"SDP_OFFER","messagePayload":"e30=","MessagePayload":"e30="}"#).is_ok());
    }

    #[test]
    fn payload_size_limit_is_on_the_base64_text() {
        let ok = base64::engine::general_purpose::STANDARD.encode(vec![b'a'; 7680]); // 10240 chars
        assert_eq!(ok.len(), 10 * 1024);
        assert!(parse(&format!(r#"{{"action":"SDP_OFFER","messagePayload":"{ok}"}}"#)).is_ok());
        let big = base64::engine::general_purpose::STANDARD.encode(vec![b'a'; 7683]);
        let e = parse(&format!(r#"{{"action":"SDP_OFFER","messagePayload":"{big}"}}"#)).expect_err("too big");
        assert_eq!(e.error, MessageError::PayloadTooLarge { max: 10 * 1024 });
    }

    #[test]
    fn events_serialize_in_wire_order() {
        let msg = SignalingMessage { kind: MessageKind::SdpOffer, payload: "e30=".into() };
        assert_eq!(
            ServiceEvent::relay(Some("viewer-1".into()), &msg).to_json(),
            r#"{"senderClientId":"viewer-1","messageType":"SDP_OFFER","messagePayload":"e30="}"#
        );
        assert_eq!(ServiceEvent::relay(None, &msg).to_json(), r#"{"messageType":"SDP_OFFER","messagePayload":"e30="}"#);
        assert_eq!(ServiceEvent::go_away().to_json(), r#"{"messageType":"GO_AWAY"}"#);
        assert_eq!(ServiceEvent::reconnect_ice_server().to_json(), r#"{"messageType":"RECONNECT_ICE_SERVER"}"#);
        assert_eq!(
            ServiceEvent::status("c1".into(), "InvalidArgumentException", 400, "bad".into()).to_json(),
            r#"{"messageType":"STATUS_RESPONSE","statusResponse":{"correlationId":"c1","errorType":"InvalidArgumentException","statusCode":"400","description":"bad"}}"#
        );
    }

    #[test]
    fn payload_round_trip() {
        let m = SignalingMessage::from_payload_bytes(MessageKind::SdpAnswer, br#"{"type":"answer","sdp":"v=0"}"#);
        assert_eq!(m.payload_bytes().expect("b64"), br#"{"type":"answer","sdp":"v=0"}"#);
    }

    proptest! {
        // The parser never panics and never accepts what breaks a documented constraint.
        #[test]
        fn parser_total_on_arbitrary_text(text in ".{0,400}") {
            let _ = parse(&text);
        }

        #[test]
        fn parser_total_on_json_shaped_input(
            keys in proptest::collection::vec("(?i)(action|recipientclientid|messagepayload|correlationid|x)", 0..6),
            vals in proptest::collection::vec(prop_oneof![
                Just(serde_json::Value::Null),
                any::<i64>().prop_map(serde_json::Value::from),
                "[A-Za-z0-9+/=_. -]{0,40}".prop_map(serde_json::Value::from),
                Just(serde_json::Value::from("SDP_OFFER")),
            ], 0..6),
        ) {
            let map: serde_json::Map<String, serde_json::Value> = keys.into_iter().zip(vals).collect();
            let text = serde_json::Value::Object(map).to_string();
            if let Ok(m) = parse(&text) {
                prop_assert!(!m.message.payload.is_empty() && m.message.payload.len() <= LIMITS.max_payload_bytes);
                prop_assert!(m.message.payload_bytes().is_ok());
                if let Some(r) = &m.recipient { prop_assert!(is_client_id(r)); }
                if let Some(c) = &m.correlation_id { prop_assert!(is_correlation_id(c)); }
            }
        }
    }
}
