//! The identifier patterns signaling checks (docs/kvs-wire.md §1.4 and "Signaling WebSocket API").

/// Longest ClientId / correlationId / Username.
pub const MAX_ID_LEN: usize = 256;
/// Longest channel ARN accepted by ConnectAs* and the signaling HTTPS API.
pub const MAX_ARN_LEN: usize = 1024;

fn is_id_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// 1–256 characters of `[a-zA-Z0-9_.-]` (ClientId, recipientClientId, TURN usernames).
pub fn is_client_id(s: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&s.len()) && s.bytes().all(is_id_char)
}

/// A ClientId a viewer may connect with: [`is_client_id`] and not starting with `AWS_`
/// (any case), which KVS reserves.
pub fn is_viewer_client_id(s: &str) -> bool {
    is_client_id(s) && !s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("AWS_"))
}

/// `correlationId`: same alphabet and length as a ClientId.
pub fn is_correlation_id(s: &str) -> bool {
    is_client_id(s)
}

/// The signaling channel ARN pattern of the signaling model:
/// `arn:aws:kinesisvideo:[a-z0-9-]+:[0-9]+:[a-z]+/[a-zA-Z0-9_.-]+/[0-9]+`, 1–1024 chars.
pub fn is_channel_arn(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_ARN_LEN {
        return false;
    }
    let Some(rest) = s.strip_prefix("arn:aws:kinesisvideo:") else { return false };
    let Some((region, rest)) = rest.split_once(':') else { return false };
    let Some((account, resource)) = rest.split_once(':') else { return false };
    let mut parts = resource.splitn(3, '/');
    let (Some(kind), Some(name), Some(version)) = (parts.next(), parts.next(), parts.next()) else { return false };
    let nonempty_all = |s: &str, f: fn(u8) -> bool| !s.is_empty() && s.bytes().all(f);
    nonempty_all(region, |b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && nonempty_all(account, |b| b.is_ascii_digit())
        && nonempty_all(kind, |b| b.is_ascii_lowercase())
        && nonempty_all(name, is_id_char)
        && nonempty_all(version, |b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids() {
        assert!(is_viewer_client_id("viewer-1_a.b"));
        assert!(!is_viewer_client_id(""));
        assert!(!is_viewer_client_id(&"a".repeat(257)));
        assert!(is_viewer_client_id(&"a".repeat(256)));
        assert!(!is_viewer_client_id("has space"));
        assert!(!is_viewer_client_id("AWS_x"));
        assert!(!is_viewer_client_id("aws_x"));
        assert!(is_viewer_client_id("AWS"));
        assert!(is_viewer_client_id("AWSx"));
        assert!(!is_viewer_client_id("é"));
    }

    #[test]
    fn channel_arns() {
        assert!(is_channel_arn("arn:aws:kinesisvideo:us-west-2:123456789012:channel/my-chan_1.x/1700000000000"));
        assert!(!is_channel_arn("arn:aws-cn:kinesisvideo:us-west-2:123456789012:channel/c/1"));
        assert!(!is_channel_arn("arn:aws:kinesisvideo:us-west-2:12345678901a:channel/c/1"));
        assert!(!is_channel_arn("arn:aws:kinesisvideo:us-west-2:123456789012:Channel/c/1"));
        assert!(!is_channel_arn("arn:aws:kinesisvideo:us-west-2:123456789012:channel/c/1x"));
        assert!(!is_channel_arn("arn:aws:kinesisvideo:us-west-2:123456789012:channel/c"));
        assert!(!is_channel_arn("arn:aws:kinesisvideo:us-west-2:123456789012:channel/c/1/2"));
        assert!(!is_channel_arn("arn:aws:kinesisvideo::123456789012:channel/c/1"));
        assert!(!is_channel_arn(""));
        let long = format!("arn:aws:kinesisvideo:us-west-2:123456789012:channel/{}/1", "n".repeat(1000));
        assert!(!is_channel_arn(&long));
    }
}
