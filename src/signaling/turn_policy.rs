//! Sans-IO rules of the embedded TURN server that the `turn` crate has no hook for:
//! which peer addresses a relay may reach ([`PeerPolicy`], after coturn's
//! `denied-peer-ip` / `no-loopback-peers`), stateless nonces ([`NonceIssuer`]), and the
//! XOR-PEER-ADDRESS attributes of a request ([`xor_peer_addresses`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::RwLock;

use hmac::{KeyInit, Mac};
use ipnet::IpNet;
use stun::message::Message;

/// STUN magic cookie (RFC 5389 §6).
const MAGIC_COOKIE: u32 = 0x2112_A442;
/// XOR-PEER-ADDRESS attribute type (RFC 5766 §14.3).
const ATTR_XOR_PEER_ADDRESS: u16 = 0x0012;
/// Seconds per nonce window; a nonce is valid in its window and the next (10–20 min).
pub const NONCE_WINDOW_SECS: u64 = 600;

/// `10.0.0.0/8`, `fd00::/8`, or a bare address (a /32 or /128).
pub fn parse_cidr(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>().ok().or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it names.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether a relay to `ip` is refused unless allow-listed: loopback, unspecified and
/// `0.0.0.0/8`, link-local, RFC 1918, CGNAT `100.64.0.0/10`, IETF `192.0.0.0/24`,
/// documentation and benchmarking ranges, multicast, `240.0.0.0/4` and broadcast;
/// `::1`, `::`, `fe80::/10`, unique-local `fc00::/7`, multicast, documentation
/// `2001:db8::/32`, and NAT64 `64:ff9b::/96` of a denied IPv4 address.
pub fn denied_by_default(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => denied_v4(v4),
        IpAddr::V6(v6) => denied_v6(v6),
    }
}

fn denied_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || a == 0
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || ip.is_documentation()
        || (a == 198 && (b == 18 || b == 19))
        || ip.is_multicast()
        || a >= 240
}

fn denied_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let [hi, lo] = [s[6].to_be_bytes(), s[7].to_be_bytes()];
        return denied_v4(Ipv4Addr::new(hi[0], hi[1], lo[0], lo[1]));
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xfe00) == 0xfc00
        || ip.is_multicast()
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        // IPv4-compatible (deprecated) addresses ::a.b.c.d.
        || (s[0..6] == [0, 0, 0, 0, 0, 0])
}

/// Which peers a relay may reach.
#[derive(Debug, Default)]
pub struct PeerPolicy {
    /// Operator allow-list (`[limits.turn] allowed_peer_cidrs`): wins over every denial.
    allowed: Vec<IpNet>,
    /// The server's own addresses (denied like loopback).
    own: Vec<IpAddr>,
    /// Exact own sockets a relay may reach anyway: the media peer's host candidates, so a
    /// camera behind a strict NAT can reach reel's storage peer through the relay.
    exempt: RwLock<Vec<SocketAddr>>,
}

impl PeerPolicy {
    /// A policy allowing `allowed` and denying the default ranges and `own` addresses.
    pub fn new(allowed: Vec<IpNet>, own: Vec<IpAddr>) -> Self {
        Self { allowed, own: own.into_iter().map(canonical).collect(), exempt: RwLock::default() }
    }

    /// Let relays reach these exact sockets although their addresses are denied.
    pub fn exempt(&self, sockets: &[SocketAddr]) {
        let mut e = self.exempt.write().unwrap_or_else(|p| p.into_inner());
        e.extend(sockets.iter().map(|s| SocketAddr::new(canonical(s.ip()), s.port())));
    }

    /// Whether a relay may send to `peer`.
    pub fn permits(&self, peer: SocketAddr) -> bool {
        let ip = canonical(peer.ip());
        if self.allowed.iter().any(|net| net.contains(&ip)) {
            return true;
        }
        let exempt = self.exempt.read().unwrap_or_else(|p| p.into_inner());
        if exempt.contains(&SocketAddr::new(ip, peer.port())) {
            return true;
        }
        !(denied_by_default(ip) || self.own.contains(&ip))
    }
}

/// Issues and checks nonces without storing them: a nonce is its time window and an HMAC
/// of the window and the client's transport address, so unauthenticated requests cost no
/// memory however many arrive.
pub struct NonceIssuer {
    key: [u8; 32],
}

impl std::fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceIssuer")
    }
}

impl NonceIssuer {
    /// An issuer with a fresh random key (nonces do not survive a restart; clients retry
    /// after a 438 Stale Nonce).
    pub fn new() -> Self {
        Self { key: rand::random() }
    }

    fn mac(&self, window: u64, client: SocketAddr) -> String {
        // HMAC-SHA256 accepts keys of any length, so this cannot fail.
        let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key) else { return String::new() };
        mac.update(&window.to_be_bytes());
        mac.update(client.to_string().as_bytes());
        hex::encode(mac.finalize().into_bytes().get(..16).unwrap_or_default())
    }

    /// The nonce for `client` at `now_unix_secs`.
    pub fn issue(&self, client: SocketAddr, now_unix_secs: u64) -> String {
        let window = now_unix_secs / NONCE_WINDOW_SECS;
        format!("{window:x}-{}", self.mac(window, client))
    }

    /// Whether `nonce` was issued to `client` in this window or the previous one.
    pub fn check(&self, nonce: &str, client: SocketAddr, now_unix_secs: u64) -> bool {
        let Some((window, mac)) = nonce.split_once('-') else { return false };
        let Ok(window) = u64::from_str_radix(window, 16) else { return false };
        let current = now_unix_secs / NONCE_WINDOW_SECS;
        if window > current || current - window > 1 {
            return false;
        }
        let expected = self.mac(window, client);
        bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), mac.as_bytes()))
    }
}

impl Default for NonceIssuer {
    fn default() -> Self {
        Self::new()
    }
}

/// Every XOR-PEER-ADDRESS of a decoded message (the crate reads only the first), or
/// `None` if one is malformed.
pub fn xor_peer_addresses(m: &Message) -> Option<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for attr in m.attributes.0.iter().filter(|a| a.typ.0 == ATTR_XOR_PEER_ADDRESS) {
        out.push(decode_xor_address(&attr.value, &m.transaction_id.0)?);
    }
    Some(out)
}

/// One XOR-encoded transport address (RFC 5389 §15.2).
pub fn decode_xor_address(v: &[u8], transaction_id: &[u8; 12]) -> Option<SocketAddr> {
    let family = *v.get(1)?;
    let port = u16::from_be_bytes([*v.get(2)?, *v.get(3)?]) ^ (MAGIC_COOKIE >> 16) as u16;
    let cookie = MAGIC_COOKIE.to_be_bytes();
    match family {
        0x01 => {
            let raw: [u8; 4] = v.get(4..8)?.try_into().ok()?;
            let ip: [u8; 4] = std::array::from_fn(|i| raw[i] ^ cookie[i]);
            Some(SocketAddr::new(IpAddr::from(ip), port))
        }
        0x02 => {
            let raw: [u8; 16] = v.get(4..20)?.try_into().ok()?;
            let mut pad = [0u8; 16];
            pad[..4].copy_from_slice(&cookie);
            pad[4..].copy_from_slice(transaction_id);
            let ip: [u8; 16] = std::array::from_fn(|i| raw[i] ^ pad[i]);
            Some(SocketAddr::new(IpAddr::from(ip), port))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn default_denials_follow_coturn() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.9",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2001:db8::1",
        ] {
            assert!(denied_by_default(ip.parse().expect("ip")), "{ip} must be denied");
        }
        for ip in ["8.8.8.8", "100.63.255.255", "100.128.0.1", "172.32.0.1", "2606:4700::1111", "64:ff9b::808:808"] {
            assert!(!denied_by_default(ip.parse().expect("ip")), "{ip} must be allowed");
        }
    }

    #[test]
    fn allow_list_own_addresses_and_exemptions() {
        let p =
            PeerPolicy::new(vec![parse_cidr("10.1.0.0/16").expect("cidr")], vec!["203.0.113.7".parse().expect("ip")]);
        assert!(p.permits(sa("10.1.2.3:5000")), "allow-listed");
        assert!(!p.permits(sa("10.2.0.1:5000")), "RFC 1918 outside the allow-list");
        assert!(!p.permits(sa("203.0.113.7:443")), "own address");
        assert!(p.permits(sa("93.184.216.34:443")), "public");
        p.exempt(&[sa("203.0.113.7:40000")]);
        assert!(p.permits(sa("203.0.113.7:40000")), "exempt socket");
        assert!(!p.permits(sa("203.0.113.7:40001")), "only that port");
        let own_public = PeerPolicy::new(vec![], vec!["93.184.216.34".parse().expect("ip")]);
        assert!(!own_public.permits(sa("[::ffff:93.184.216.34]:1")), "mapped own address");
        assert_eq!(parse_cidr("127.0.0.1"), parse_cidr("127.0.0.1/32"));
        assert!(parse_cidr("10.0.0.0/33").is_none() && parse_cidr("nope").is_none());
    }

    #[test]
    fn nonces_are_bound_to_client_and_window() {
        let n = NonceIssuer::new();
        let client = sa("198.51.100.1:5000");
        let t = 1_700_000_000;
        let nonce = n.issue(client, t);
        assert!(n.check(&nonce, client, t));
        assert!(n.check(&nonce, client, t + NONCE_WINDOW_SECS), "valid in the next window");
        assert!(!n.check(&nonce, client, t + 2 * NONCE_WINDOW_SECS), "expired");
        assert!(!n.check(&nonce, sa("198.51.100.1:5001"), t), "another client");
        assert!(!n.check(&nonce, client, t - NONCE_WINDOW_SECS), "from the future");
        assert!(!NonceIssuer::new().check(&nonce, client, t), "another key");
        for bad in ["", "-", "zz-00", "1-", &nonce.replace('-', "")] {
            assert!(!n.check(bad, client, t), "{bad:?}");
        }
    }

    #[test]
    fn xor_addresses_decode() {
        use stun::message::{BINDING_REQUEST, Setter};
        use stun::xoraddr::XorMappedAddress;
        for addr in ["192.0.2.1:3478", "[2001:db8::7]:9"] {
            let addr = sa(addr);
            let mut m = Message::new();
            m.build(&[Box::new(stun::agent::TransactionId::new()), Box::new(BINDING_REQUEST)]).expect("build");
            let x = XorMappedAddress { ip: addr.ip(), port: addr.port() };
            x.add_to_as(&mut m, stun::attributes::AttrType(ATTR_XOR_PEER_ADDRESS)).expect("add");
            x.add_to_as(&mut m, stun::attributes::AttrType(ATTR_XOR_PEER_ADDRESS)).expect("add");
            let mut check = XorMappedAddress::default();
            check.get_from_as(&m, stun::attributes::AttrType(ATTR_XOR_PEER_ADDRESS)).expect("get");
            assert_eq!(xor_peer_addresses(&m), Some(vec![addr, addr]));
            let _ = x.add_to(&mut m);
        }
        assert_eq!(decode_xor_address(&[0, 1, 0, 0], &[0; 12]), None);
    }
}
