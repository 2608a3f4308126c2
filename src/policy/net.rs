//! Network egress rules: which hosts and addresses sandboxed code may reach through the
//! egress proxy, and the guard that keeps tool arguments from pointing downstream tools
//! at internal services (SSRF). Everything here is pure except DNS, which goes through the
//! [`Resolve`] trait ([`SystemResolver`] in production, fakes in tests).
//!
//! # Addresses
//! [`refusal_reason`] refuses every special-purpose range of the IANA IPv4 and IPv6
//! special-purpose address registries (RFC 6890 and successors), globally reachable or
//! not: loopback, private, CGNAT, link-local, cloud metadata addresses, documentation,
//! benchmarking, multicast, broadcast, reserved, AS112, AMT, 6to4 relay, discard, ORCHID,
//! SRv6, ... IPv6 outside the global unicast range `2000::/3` is refused as reserved.
//! Addresses that embed an IPv4 address are judged by it: IPv4-mapped `::ffff:a.b.c.d`,
//! NAT64 `64:ff9b::a.b.c.d` and 6to4 `2002:aabb:ccdd::/48`. IPv4-compatible `::a.b.c.d`,
//! local-use NAT64 `64:ff9b:1::/48` and Teredo `2001::/32` are refused outright.
//!
//! # Spellings of IP addresses
//! [`parse_ip_literal`] reads every spelling that a WHATWG URL parser or `inet_aton`
//! accepts: `2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`, `0x7f000001`, trailing dot,
//! `[::1]`, `[::ffff:127.0.0.1]`, percent-encoding (`%31%32%37.0.0.1`), full-width
//! digits, zone ids (`[fe80::1%25eth0]` is `fe80::1`: the zone is dropped, the address
//! judged), and text after whitespace (`inet_aton` ignores it). Anything it reads as an
//! address is judged as that address, never as a name.
//!
//! # Host names
//! Names are ASCII (use the `xn--` form for international names), lower-cased, one
//! trailing dot dropped, labels of `[a-z0-9_-]` of 1..=63 bytes, at most 253 bytes, and
//! the last label is not a number (`1.2.3.256` is a malformed address, not a name).
//! [`refused_name_reason`] refuses names that always point inside: `localhost` and
//! `*.localhost`, the `/etc/hosts` names `localhost.localdomain`, `ip6-localhost`,
//! `ip6-loopback`, `ip6-allnodes`, `ip6-allrouters`, `*.localdomain`, the metadata names
//! `metadata`, `metadata.google.internal`, `metadata.goog`, `instance-data` (and
//! `instance-data.ec2.internal`), the private-use TLD `.internal` (reserved by ICANN for
//! private networks, never public), mDNS `.local`, and `.arpa` (including `home.arpa`).
//! `.test`, `.example` and `.invalid` are not refused: they do not resolve publicly, and a
//! resolver that answers for them is judged by the addresses it returns.
//!
//! # Rules
//! [`HostRule`]: `example.com` (that name only), `*.example.com` (subdomains only, not the
//! apex; at least two labels after `*.`), an IP literal outside the refused ranges, each
//! with an optional `:port`. Without a port a rule allows ports 80 and 443 only. No
//! scheme, path, userinfo or non-ASCII. There is no "any host" rule.
//!
//! # Policy
//! [`NetPolicy`]: the call's `permissions.net` entries, each covered by some operator rule
//! (`egress.allowed_hosts`), plus the operator's `allow_cidrs`, which exempt addresses
//! inside them from [`refusal_reason`] (for tests reaching a loopback server). A request
//! is checked by name ([`NetPolicy::check_target`]) before any DNS and, after resolution,
//! every address is checked ([`NetPolicy::check_addr`]); one refused address refuses the
//! whole name.
//!
//! # Tool arguments
//! [`find_ssrf_targets`] and [`check_tool_arguments`]: see their documentation.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde_json::Value;

use super::shown::{escaped_cut, show_char};

/// Longest text [`parse_ip_literal`] looks at.
const MAX_LITERAL_LEN: usize = 1024;
/// Longest host name, in bytes (without a trailing dot).
pub const MAX_NAME_LEN: usize = 253;
/// Longest label of a host name, in bytes.
const MAX_LABEL_LEN: usize = 63;
/// Longest host rule, in bytes.
const MAX_RULE_LEN: usize = 300;
/// Most entries in `permissions.net`, `egress.allowed_hosts` or `allow_cidrs`.
pub const MAX_RULES: usize = 256;
/// How much of a hostile string a message shows.
const SHOWN_CHARS: usize = 80;

// ---------------------------------------------------------------------------------------
// Special-purpose address ranges
// ---------------------------------------------------------------------------------------

const CLOUD_METADATA: &str = "cloud metadata service";
const PRIVATE: &str = "private (RFC 1918)";
const DOCUMENTATION: &str = "documentation range";
const AS112: &str = "AS112 DNS service";

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

const fn v6(s: [u16; 8], len: u8) -> Ipv6Net {
    Ipv6Net::new_assert(
        Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
        len,
    )
}

/// Refused IPv4 ranges, checked in order: more specific entries come first so that their
/// reason is the one given.
static V4_REFUSED: &[(Ipv4Net, &str)] = &[
    // AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle, ...
    (v4(169, 254, 169, 254, 32), CLOUD_METADATA),
    // AWS ECS task metadata.
    (v4(169, 254, 170, 2, 32), CLOUD_METADATA),
    // Alibaba Cloud.
    (v4(100, 100, 100, 200, 32), CLOUD_METADATA),
    // Oracle Cloud (older instances).
    (v4(192, 0, 0, 192, 32), CLOUD_METADATA),
    (v4(0, 0, 0, 0, 32), "unspecified address"),
    (v4(0, 0, 0, 0, 8), "\"this network\" (0.0.0.0/8)"),
    (v4(10, 0, 0, 0, 8), PRIVATE),
    (
        v4(100, 64, 0, 0, 10),
        "shared address space (CGNAT, RFC 6598)",
    ),
    (v4(127, 0, 0, 0, 8), "loopback"),
    (v4(169, 254, 0, 0, 16), "link-local"),
    (v4(172, 16, 0, 0, 12), PRIVATE),
    (
        v4(192, 0, 0, 0, 24),
        "IETF protocol assignments (192.0.0.0/24)",
    ),
    (v4(192, 0, 2, 0, 24), DOCUMENTATION),
    (v4(192, 31, 196, 0, 24), AS112),
    (v4(192, 52, 193, 0, 24), "AMT relay anycast"),
    (v4(192, 88, 99, 0, 24), "deprecated 6to4 relay anycast"),
    (v4(192, 168, 0, 0, 16), PRIVATE),
    (v4(192, 175, 48, 0, 24), AS112),
    (v4(198, 18, 0, 0, 15), "benchmarking (RFC 2544)"),
    (v4(198, 51, 100, 0, 24), DOCUMENTATION),
    (v4(203, 0, 113, 0, 24), DOCUMENTATION),
    (v4(224, 0, 0, 0, 4), "multicast"),
    (v4(255, 255, 255, 255, 32), "broadcast"),
    (v4(240, 0, 0, 0, 4), "reserved (240.0.0.0/4)"),
];

/// Refused IPv6 ranges, checked in order before the embedded-IPv4 forms and the
/// `2000::/3` rule.
static V6_REFUSED: &[(Ipv6Net, &str)] = &[
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), "unspecified address"),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback"),
    // AWS instance metadata over IPv6.
    (
        v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128),
        CLOUD_METADATA,
    ),
    (
        v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        "discard-only (100::/64)",
    ),
    (
        v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64),
        "dummy prefix (100:0:0:1::/64)",
    ),
    (
        v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        "local-use NAT64 (64:ff9b:1::/48)",
    ),
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32), "Teredo (2001::/32)"),
    (
        v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48),
        "benchmarking (2001:2::/48)",
    ),
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
        "IETF protocol assignments (2001::/23)",
    ),
    (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), DOCUMENTATION),
    (v6([0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0], 48), AS112),
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), DOCUMENTATION),
    (
        v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16),
        "segment routing (SRv6) SIDs (5f00::/16)",
    ),
    (
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        "unique local (fc00::/7)",
    ),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), "link-local"),
    (
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "deprecated site-local (fec0::/10)",
    ),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "multicast"),
];

/// The only IPv6 range with public unicast addresses today.
const GLOBAL_UNICAST: Ipv6Net = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

/// Why `ip` must never be reached from the sandbox, or `None` for an ordinary public
/// address. See the module documentation for the ranges.
pub fn refusal_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => v4_reason(ip),
        IpAddr::V6(ip) => v6_reason(ip),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    V4_REFUSED
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|&(_, reason)| reason)
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(&(_, reason)) = V6_REFUSED.iter().find(|(net, _)| net.contains(&ip)) {
        return Some(reason);
    }
    let s = ip.segments();
    let low_v4 = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    // IPv4-mapped ::ffff:a.b.c.d is the IPv4 host itself on a dual-stack socket.
    if s[..6] == [0, 0, 0, 0, 0, 0xffff] {
        return v4_reason(low_v4());
    }
    // NAT64 well-known prefix: a NAT64 gateway forwards to the embedded address.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_reason(low_v4());
    }
    // IPv4-compatible ::a.b.c.d (deprecated since RFC 4291).
    if s[..6] == [0; 6] {
        return Some("deprecated IPv4-compatible address (::/96)");
    }
    // 6to4: 2002:aabb:ccdd::/48 routes to a.b.c.d through a relay.
    if s[0] == 0x2002 {
        let embedded = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return v4_reason(embedded);
    }
    if !GLOBAL_UNICAST.contains(&ip) {
        return Some("reserved (outside the global unicast range 2000::/3)");
    }
    None
}

// ---------------------------------------------------------------------------------------
// IP literals
// ---------------------------------------------------------------------------------------

/// The address `host` spells, in any form a URL parser or `inet_aton` accepts, or `None`
/// when it is not an IP literal. See the module documentation for the forms.
pub fn parse_ip_literal(host: &str) -> Option<IpAddr> {
    if host.is_empty() || host.len() > MAX_LITERAL_LEN {
        return None;
    }
    if let Some(ip) = parse_ascii_literal(host) {
        return Some(ip);
    }
    // `inet_aton` (and so some resolvers) stops at the first whitespace.
    if let Some((head, _)) = host.split_once(|c: char| c.is_ascii_whitespace()) {
        if let Some(ip) = parse_ascii_literal(head.trim_start()) {
            return Some(ip);
        }
    }
    // A WHATWG URL parser also maps Unicode (full-width digits, ideographic full stops)
    // before reading numbers.
    match url::Host::parse(host) {
        Ok(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Ok(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

fn parse_ascii_literal(host: &str) -> Option<IpAddr> {
    let decoded = percent_decode_fully(host)?;
    if decoded.is_empty() || !decoded.is_ascii() {
        return None;
    }
    let lower = decoded.to_ascii_lowercase();
    let text = lower.strip_suffix('.').unwrap_or(&lower);
    if let Some(inner) = text.strip_prefix('[') {
        let inner = inner.strip_suffix(']')?;
        return parse_v6(inner)
            .map(IpAddr::V6)
            .or_else(|| parse_v4(inner).map(IpAddr::V4));
    }
    if text.contains(':') {
        return parse_v6(text).map(IpAddr::V6);
    }
    parse_v4(text).map(IpAddr::V4)
}

/// An IPv6 address with an optional zone id (`%eth0`), which is dropped.
fn parse_v6(text: &str) -> Option<Ipv6Addr> {
    let addr = text.split_once('%').map_or(text, |(addr, _zone)| addr);
    addr.parse().ok()
}

/// The WHATWG IPv4 parser, which accepts what `inet_aton` accepts: one to four parts,
/// each decimal, octal (leading `0`) or hex (`0x`), the last filling the remaining bytes.
fn parse_v4(text: &str) -> Option<Ipv4Addr> {
    if text.is_empty() {
        return None;
    }
    let mut numbers = [0u64; 4];
    let mut count = 0;
    for part in text.split('.') {
        if count == 4 {
            return None;
        }
        numbers[count] = parse_v4_number(part)?;
        count += 1;
    }
    let (last, leading) = (numbers[count - 1], &numbers[..count - 1]);
    if leading.iter().any(|&n| n > 255) || last >= 1u64 << (8 * (5 - count)) {
        return None;
    }
    let value = leading
        .iter()
        .enumerate()
        .fold(last, |acc, (i, &n)| acc + (n << (8 * (3 - i))));
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

fn parse_v4_number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        // `0x` alone and runs of zeros are 0.
        return Some(0);
    }
    if significant.len() > 12 {
        return None;
    }
    u64::from_str_radix(significant, radix).ok()
}

/// Decodes `%XX` escapes until nothing changes (at most a few rounds: some servers decode
/// twice). `None` when the bytes are not UTF-8.
fn percent_decode_fully(text: &str) -> Option<String> {
    let mut current = text.to_owned();
    for _ in 0..3 {
        if !current.contains('%') {
            break;
        }
        let decoded = percent_decode_once(&current)?;
        if decoded == current {
            break;
        }
        current = decoded;
    }
    Some(current)
}

fn percent_decode_once(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                out.push(hi * 16 + lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).map(|d| d as u8)
}

// ---------------------------------------------------------------------------------------
// Host names
// ---------------------------------------------------------------------------------------

/// What is wrong with a host that is neither an IP literal nor a valid name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostFlaw {
    #[error("the host is empty")]
    Empty,
    #[error("the host is {len} bytes long, the limit is {MAX_NAME_LEN}")]
    TooLong { len: usize },
    #[error("non-ASCII host names are not supported; use the punycode (xn--) form")]
    NonAscii,
    #[error("character {} is not allowed in a host name", show_char(*ch))]
    BadChar { ch: char },
    #[error("the host name has an empty label (a leading dot or `..`)")]
    EmptyLabel,
    #[error("a label of the host name is longer than {MAX_LABEL_LEN} bytes")]
    LabelTooLong,
    #[error("the host ends in a number but is not a valid IP address")]
    MalformedAddress,
}

/// A host after normalisation: an address (in whatever spelling it came) or a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An IP literal.
    Addr(IpAddr),
    /// A lower-case ASCII DNS name without a trailing dot.
    Name(String),
}

/// Reads `host` as an IP literal (any spelling) or a host name (see the module
/// documentation for the rules on names).
pub fn normalize_host(host: &str) -> Result<Destination, HostFlaw> {
    if let Some(ip) = parse_ip_literal(host) {
        return Ok(Destination::Addr(ip));
    }
    normalize_name(host).map(Destination::Name)
}

fn normalize_name(host: &str) -> Result<String, HostFlaw> {
    if host.is_empty() {
        return Err(HostFlaw::Empty);
    }
    if !host.is_ascii() {
        return Err(HostFlaw::NonAscii);
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() {
        return Err(HostFlaw::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(HostFlaw::TooLong { len: name.len() });
    }
    if let Some(ch) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(HostFlaw::BadChar { ch });
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(HostFlaw::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(HostFlaw::LabelTooLong);
        }
    }
    if name.rsplit('.').next().is_some_and(is_numeric_label) {
        return Err(HostFlaw::MalformedAddress);
    }
    Ok(name.to_ascii_lowercase())
}

/// The WHATWG "ends in a number" test for one label: digits, or `0x` and hex digits.
fn is_numeric_label(label: &str) -> bool {
    if let Some(hex) = label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"))
    {
        return hex.chars().all(|c| c.is_ascii_hexdigit());
    }
    !label.is_empty() && label.chars().all(|c| c.is_ascii_digit())
}

/// Why the name `host` is always refused, whatever it resolves to, or `None`. The name is
/// compared case-insensitively and without a trailing dot.
pub fn refused_name_reason(host: &str) -> Option<&'static str> {
    let lower = host.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    let is_or_under = |domain: &str| {
        name == domain
            || name
                .strip_suffix(domain)
                .is_some_and(|rest| rest.ends_with('.'))
    };
    const METADATA_NAMES: &[&str] = &[
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    ];
    const HOSTS_FILE_NAMES: &[&str] = &[
        "localhost.localdomain",
        "ip6-localhost",
        "ip6-loopback",
        "ip6-allnodes",
        "ip6-allrouters",
    ];
    if is_or_under("localhost") {
        Some("localhost")
    } else if METADATA_NAMES.contains(&name) {
        Some(CLOUD_METADATA)
    } else if HOSTS_FILE_NAMES.contains(&name) {
        Some("local name from /etc/hosts")
    } else if is_or_under("localdomain") {
        Some("local domain (.localdomain)")
    } else if is_or_under("internal") {
        Some("private-use domain (.internal)")
    } else if is_or_under("local") {
        Some("multicast DNS domain (.local)")
    } else if is_or_under("home.arpa") {
        Some("home network domain (.home.arpa)")
    } else if is_or_under("arpa") {
        Some("infrastructure domain (.arpa)")
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------
// Host rules
// ---------------------------------------------------------------------------------------

/// The host part of a [`HostRule`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleHost {
    /// This name only.
    Exact(String),
    /// `*.example.com`: names under `example.com`, not `example.com` itself.
    Subdomains(String),
    /// This address only (compared after reading any spelling).
    Ip(IpAddr),
}

/// One `host[:port]` entry of `permissions.net` or `egress.allowed_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    host: RuleHost,
    /// `None`: ports 80 and 443.
    port: Option<u16>,
}

/// Why a text is not a host rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostRuleError {
    #[error("the rule is {len} bytes long, the limit is {MAX_RULE_LEN}")]
    TooLong { len: usize },
    #[error("it looks like a URL; give only the host, without a scheme")]
    Url,
    #[error("it has a path; give only host[:port]")]
    Path,
    #[error("it has user information (`@`); give only host[:port]")]
    Userinfo,
    #[error("the port must be a number from 1 to 65535")]
    BadPort,
    #[error("`*` is only allowed as the whole first label, as in `*.example.com`")]
    Wildcard,
    #[error("`*.{0}` would allow a whole top-level domain; give at least two labels after `*.`")]
    WildcardTooBroad(String),
    #[error("{0}")]
    Host(HostFlaw),
    #[error("the address is {0} and is always refused")]
    RefusedAddress(&'static str),
    #[error("the name is {0} and is always refused")]
    RefusedName(&'static str),
}

impl HostRule {
    /// Parses `example.com`, `*.example.com`, `203.0.113.7`-style public addresses,
    /// `[2001:db8::1]`, each with an optional `:port`. See the module documentation.
    pub fn parse(text: &str) -> Result<Self, HostRuleError> {
        Self::parse_with(text, &[])
    }

    /// [`HostRule::parse`], also accepting addresses inside `exempt` networks.
    fn parse_with(text: &str, exempt: &[IpNet]) -> Result<Self, HostRuleError> {
        if text.len() > MAX_RULE_LEN {
            return Err(HostRuleError::TooLong { len: text.len() });
        }
        if text.contains("://") {
            return Err(HostRuleError::Url);
        }
        if text.contains(['/', '\\', '?', '#']) {
            return Err(HostRuleError::Path);
        }
        if text.contains('@') {
            return Err(HostRuleError::Userinfo);
        }
        let (host, port) = split_host_port(text)?;
        Ok(Self {
            host: parse_rule_host(host, exempt)?,
            port,
        })
    }

    /// The host part.
    pub fn host(&self) -> &RuleHost {
        &self.host
    }

    /// The port, or `None` for "80 and 443".
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Whether this rule allows `host` (any spelling of an address, any case, a trailing
    /// dot) on `port`.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        normalize_host(host).is_ok_and(|dest| self.matches_dest(&dest, port))
    }

    fn matches_dest(&self, dest: &Destination, port: u16) -> bool {
        self.matches_port(port)
            && match (&self.host, dest) {
                (RuleHost::Exact(rule), Destination::Name(name)) => rule == name,
                (RuleHost::Subdomains(rule), Destination::Name(name)) => is_below(name, rule),
                (RuleHost::Ip(rule), Destination::Addr(ip)) => {
                    rule.to_canonical() == ip.to_canonical()
                }
                _ => false,
            }
    }

    fn matches_port(&self, port: u16) -> bool {
        match self.port {
            Some(p) => p == port,
            None => port == 80 || port == 443,
        }
    }

    /// Whether everything `other` allows, this rule allows too.
    fn covers(&self, other: &HostRule) -> bool {
        let ports = match (self.port, other.port) {
            (None, None) => true,
            (None, Some(p)) => p == 80 || p == 443,
            (Some(_), None) => false,
            (Some(a), Some(b)) => a == b,
        };
        ports
            && match (&self.host, &other.host) {
                (RuleHost::Exact(a), RuleHost::Exact(b)) => a == b,
                (RuleHost::Subdomains(a), RuleHost::Exact(b)) => is_below(b, a),
                (RuleHost::Subdomains(a), RuleHost::Subdomains(b)) => a == b || is_below(b, a),
                (RuleHost::Ip(a), RuleHost::Ip(b)) => a.to_canonical() == b.to_canonical(),
                _ => false,
            }
    }
}

impl fmt::Display for HostRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            RuleHost::Exact(name) => f.write_str(name)?,
            RuleHost::Subdomains(name) => write!(f, "*.{name}")?,
            RuleHost::Ip(IpAddr::V4(ip)) => write!(f, "{ip}")?,
            RuleHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// `name` is a proper subdomain of `domain`.
fn is_below(name: &str, domain: &str) -> bool {
    name.strip_suffix(domain)
        .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.'))
}

/// Splits `host[:port]` (`[v6]:port` for IPv6 with a port; a bare IPv6 address has no
/// port).
fn split_host_port(text: &str) -> Result<(&str, Option<u16>), HostRuleError> {
    let port = |text: &str| parse_port(text).ok_or(HostRuleError::BadPort);
    if text.starts_with('[') {
        let close = text
            .find(']')
            .ok_or(HostRuleError::Host(HostFlaw::BadChar { ch: '[' }))?;
        let (host, rest) = text.split_at(close + 1);
        return match rest {
            "" => Ok((host, None)),
            _ => Ok((
                host,
                Some(port(rest.strip_prefix(':').ok_or(HostRuleError::BadPort)?)?),
            )),
        };
    }
    match text.split_once(':') {
        Some((host, p)) if !p.contains(':') => Ok((host, Some(port(p)?))),
        _ => Ok((text, None)),
    }
}

/// A decimal port 1..=65535 (no sign, no spaces, at most five digits).
pub(crate) fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&p: &u16| p != 0)
}

fn parse_rule_host(host: &str, exempt: &[IpNet]) -> Result<RuleHost, HostRuleError> {
    if let Some(domain) = host.strip_prefix("*.") {
        if domain.contains('*') {
            return Err(HostRuleError::Wildcard);
        }
        let name = normalize_name(domain).map_err(HostRuleError::Host)?;
        if !name.contains('.') {
            return Err(HostRuleError::WildcardTooBroad(name));
        }
        if let Some(reason) = refused_name_reason(&name) {
            return Err(HostRuleError::RefusedName(reason));
        }
        return Ok(RuleHost::Subdomains(name));
    }
    if host.contains('*') {
        return Err(HostRuleError::Wildcard);
    }
    if let Some(ip) = parse_ip_literal(host) {
        if !is_exempt(ip, exempt) {
            if let Some(reason) = refusal_reason(ip) {
                return Err(HostRuleError::RefusedAddress(reason));
            }
        }
        return Ok(RuleHost::Ip(ip));
    }
    let name = normalize_name(host).map_err(HostRuleError::Host)?;
    if let Some(reason) = refused_name_reason(&name) {
        return Err(HostRuleError::RefusedName(reason));
    }
    Ok(RuleHost::Exact(name))
}

fn is_exempt(ip: IpAddr, exempt: &[IpNet]) -> bool {
    let canonical = ip.to_canonical();
    exempt
        .iter()
        .any(|net| net.contains(&ip) || net.contains(&canonical))
}

// ---------------------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------------------

/// Which list an entry came from, for messages.
const CALL_ORIGIN: &str = "permissions.net";
const OPERATOR_ORIGIN: &str = "egress.allowed_hosts";
const CIDR_ORIGIN: &str = "egress.allow_cidrs";

/// A `permissions.net`, `egress.allowed_hosts` or `egress.allow_cidrs` that cannot
/// become a [`NetPolicy`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetPolicyError {
    #[error("{origin} has {count} entries, the limit is {MAX_RULES}")]
    TooMany { origin: &'static str, count: usize },
    #[error("{origin}[{index}] \"{entry}\" is not a valid host rule: {error}; expected host[:port], e.g. api.example.com, *.example.com or api.example.com:8443 (no port means 80 and 443)")]
    Invalid {
        origin: &'static str,
        index: usize,
        entry: String,
        error: HostRuleError,
    },
    #[error("permissions.net entry \"{entry}\" is not allowed by the operator's egress policy; the operator must add it (or a rule covering it, such as *.example.com) to egress.allowed_hosts")]
    NotCovered { entry: String },
    #[error("{CIDR_ORIGIN}[{index}] \"{entry}\" is not a network such as 127.0.0.1/32 or ::1/128")]
    Cidr { index: usize, entry: String },
}

/// Why one request for egress is refused. Messages say what was refused and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The address is in a special-purpose range.
    #[error("egress to {target} refused: {reason}")]
    Address {
        target: String,
        reason: &'static str,
    },
    /// The name always points inside (localhost, metadata, `.internal`, ...).
    #[error("egress to {target} refused: {reason}")]
    Name {
        target: String,
        reason: &'static str,
    },
    /// The name resolves to at least one refused address.
    #[error("egress to {target} refused: {name} resolves to {addr}, {reason} (a name is refused whole when any of its addresses is)")]
    Resolved {
        target: String,
        name: String,
        addr: IpAddr,
        reason: &'static str,
    },
    /// No entry of `permissions.net` allows this host and port.
    #[error(
        "egress to {target} refused: not allowed by this execution's permissions.net ({allowed})"
    )]
    NotAllowed { target: String, allowed: String },
    /// Not an IP literal and not a valid host name.
    #[error("egress to {target} refused: {flaw}")]
    InvalidHost { target: String, flaw: HostFlaw },
    /// The execution's egress byte cap was reached.
    #[error("egress byte cap of {0} bytes reached")]
    ByteCap(u64),
    /// Tool arguments name a refused address or name.
    #[error("tool arguments refused: they point at {target}: {reason}")]
    Argument { target: String, reason: String },
    /// Tool arguments hold a `file:` URL.
    #[error(
        "tool arguments refused: {url} is a file URL; file URLs point at the server's own files"
    )]
    FileUrl { url: String },
    /// Tool arguments too large or too deeply nested to check.
    #[error("tool arguments refused: {0}")]
    Unscannable(String),
}

/// The network permissions of one execution: the call's rules, each covered by the
/// operator's, and the operator's exempt networks.
#[derive(Debug, Clone, Default)]
pub struct NetPolicy {
    rules: Vec<HostRule>,
    exempt: Vec<IpNet>,
}

impl NetPolicy {
    /// `call_hosts`: the call's `permissions.net`; `operator_hosts`: the operator's
    /// `egress.allowed_hosts`; `allow_cidrs`: operator-only networks exempt from the
    /// special-range refusals (for tests that reach a loopback server). Every call entry
    /// must be covered by some operator rule; the effective rules are the call's entries.
    pub fn new(
        call_hosts: &[String],
        operator_hosts: &[String],
        allow_cidrs: &[String],
    ) -> Result<Self, NetPolicyError> {
        let exempt = parse_cidrs(allow_cidrs)?;
        let operator = parse_rules(operator_hosts, OPERATOR_ORIGIN, &exempt)?;
        let rules = parse_rules(call_hosts, CALL_ORIGIN, &exempt)?;
        for (rule, entry) in rules.iter().zip(call_hosts) {
            if !operator.iter().any(|op| op.covers(rule)) {
                return Err(NetPolicyError::NotCovered {
                    entry: shown(entry),
                });
            }
        }
        Ok(Self { rules, exempt })
    }

    /// True when the execution may reach no host at all (then no egress proxy is needed).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The effective rules.
    pub fn rules(&self) -> &[HostRule] {
        &self.rules
    }

    /// Name-level check of `host:port`: see [`NetPolicy::check_target`].
    pub fn check_host(&self, host: &str, port: u16) -> Result<(), Refusal> {
        self.check_target(host, port).map(|_| ())
    }

    /// Checks `host:port` before any DNS: an IP literal (any spelling) must not be refused
    /// (unless exempt), a name must be valid and not always-refused, and some rule must
    /// allow it. Returns what to connect to: the address, or the name to resolve (whose
    /// addresses must then pass [`NetPolicy::check_addr`]).
    pub fn check_target(&self, host: &str, port: u16) -> Result<Destination, Refusal> {
        let dest = normalize_host(host).map_err(|flaw| Refusal::InvalidHost {
            target: format!("{}:{port}", shown(host)),
            flaw,
        })?;
        let target = match &dest {
            Destination::Addr(ip) => {
                self.check_socket_addr(SocketAddr::new(*ip, port))?;
                SocketAddr::new(*ip, port).to_string()
            }
            Destination::Name(name) => {
                let target = format!("{name}:{port}");
                if let Some(reason) = refused_name_reason(name) {
                    return Err(Refusal::Name { target, reason });
                }
                target
            }
        };
        if !self.rules.iter().any(|rule| rule.matches_dest(&dest, port)) {
            return Err(Refusal::NotAllowed {
                target,
                allowed: self.allowed_text(),
            });
        }
        Ok(dest)
    }

    /// Whether `ip` may be connected to: not in a refused range, or inside an exempt
    /// network.
    pub fn check_addr(&self, ip: IpAddr) -> Result<(), Refusal> {
        self.addr_reason(ip).map_or(Ok(()), |reason| {
            Err(Refusal::Address {
                target: ip.to_string(),
                reason,
            })
        })
    }

    /// [`NetPolicy::check_addr`] with the port in the message.
    pub fn check_socket_addr(&self, addr: SocketAddr) -> Result<(), Refusal> {
        self.addr_reason(addr.ip()).map_or(Ok(()), |reason| {
            Err(Refusal::Address {
                target: addr.to_string(),
                reason,
            })
        })
    }

    /// Checks every address `name` resolved to; one refused address refuses the name.
    pub fn check_resolved(&self, name: &str, port: u16, addrs: &[IpAddr]) -> Result<(), Refusal> {
        for &addr in addrs {
            if let Some(reason) = self.addr_reason(addr) {
                return Err(Refusal::Resolved {
                    target: format!("{}:{port}", shown(name)),
                    name: shown(name),
                    addr,
                    reason,
                });
            }
        }
        Ok(())
    }

    fn addr_reason(&self, ip: IpAddr) -> Option<&'static str> {
        if is_exempt(ip, &self.exempt) {
            None
        } else {
            refusal_reason(ip)
        }
    }

    fn allowed_text(&self) -> String {
        const SHOWN_RULES: usize = 10;
        if self.rules.is_empty() {
            return "it allows no hosts".to_owned();
        }
        let mut text = self
            .rules
            .iter()
            .take(SHOWN_RULES)
            .map(|rule| rule.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if self.rules.len() > SHOWN_RULES {
            text.push_str(&format!(" and {} more", self.rules.len() - SHOWN_RULES));
        }
        format!("allowed: {text}")
    }
}

fn parse_rules(
    entries: &[String],
    origin: &'static str,
    exempt: &[IpNet],
) -> Result<Vec<HostRule>, NetPolicyError> {
    if entries.len() > MAX_RULES {
        return Err(NetPolicyError::TooMany {
            origin,
            count: entries.len(),
        });
    }
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            HostRule::parse_with(entry, exempt).map_err(|error| NetPolicyError::Invalid {
                origin,
                index,
                entry: shown(entry),
                error,
            })
        })
        .collect()
}

/// `a.b.c.d/len`, `v6/len`, or a bare address (a single-address network).
fn parse_cidrs(entries: &[String]) -> Result<Vec<IpNet>, NetPolicyError> {
    if entries.len() > MAX_RULES {
        return Err(NetPolicyError::TooMany {
            origin: CIDR_ORIGIN,
            count: entries.len(),
        });
    }
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| NetPolicyError::Cidr {
                    index,
                    entry: shown(entry),
                })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Tool arguments
// ---------------------------------------------------------------------------------------

/// Deepest nesting of arguments scanned.
const MAX_SCAN_DEPTH: usize = 64;
/// Most strings (values and keys) scanned.
const MAX_SCAN_STRINGS: usize = 20_000;
/// Most bytes of strings scanned.
const MAX_SCAN_BYTES: usize = 8 * 1024 * 1024;
/// Most targets collected.
const MAX_TARGETS: usize = 2_000;
/// Most bytes looked at after the colon of one URL candidate.
const MAX_URL_SCAN: usize = 2048;
/// Most bytes looked at by all URL candidates of one scan together.
const MAX_URL_WORK: usize = 4 * 1024 * 1024;
/// Most distinct names resolved for one call.
pub const MAX_RESOLVED_NAMES: usize = 64;
/// Names resolved at once.
const RESOLVE_CONCURRENCY: usize = 8;

/// A network target found in tool arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The scheme of a URL, lower-case (`http`, `file`, ...); `None` for a bare
    /// `host[:port]` or address.
    pub scheme: Option<String>,
    /// The host as found (for URLs also as a WHATWG parser normalises it, as a separate
    /// target); may be any spelling of an address.
    pub host: String,
    /// The port given or the scheme's default.
    pub port: Option<u16>,
    /// The text it came from, escaped and cut to 80 characters, for messages.
    pub text: String,
}

/// Finds what in `args` could make a downstream tool open a connection:
/// - URLs anywhere in any string (values and object keys): any `scheme://authority`,
///   special schemes also with other slash forms (`http:\\h`, `http:/h`, `http:h`, as a
///   WHATWG parser reads them), each host taken both leniently (authority up to `/ \ ? #`,
///   userinfo cut at the last `@`, host ends at the first `:`) and as the `url` crate
///   (WHATWG) normalises it; `file:` URLs;
/// - bare `host:port` tokens (the host has a letter or a dot), `[v6]` / `[v6]:port`,
///   and dotted addresses of four numeric parts in any radix (`0177.0.0.1`);
/// - under keys that name a host (`host`, `hostname`, `url`, `uri`, `addr`, `address`,
///   `ip`, `server`, `endpoint`, `domain`, `proxy`, `href`, `base_url`, and keys ending in
///   those; case, `_` and `-` ignored), the whole first word of the string in any spelling
///   (`2130706433`, `::1`, `localhost`) and numbers (`{"ip": 2130706433}`).
///
/// Free text like `version 0.1.0`, `10.1`, `12:30` or `localhost` alone is not a target.
/// Nesting deeper than 64, more than 20 000 strings, 8 MiB of text, 2 000 targets, or a
/// URL whose authority runs past 2 KiB (its host could hide behind padded userinfo) stop
/// the scan; [`check_tool_arguments`] then refuses the arguments.
pub fn find_ssrf_targets(args: &Value) -> Vec<Target> {
    scan(args).targets
}

/// Refuses tool arguments that point at the server's own network: any target (see
/// [`find_ssrf_targets`]) that is a `file:` URL, a refused address in any spelling, a
/// refused name (`localhost`, metadata, `.internal`, ...), or a name that resolves to any
/// refused address. Names are resolved concurrently within `timeout` overall; a name that
/// fails to resolve in time is not refused by this guard (the tool could not reach it
/// either, unless DNS changes in between: this is a guard in depth, not a fence). More
/// than [`MAX_RESOLVED_NAMES`] distinct names, or arguments too large to scan, are refused.
pub async fn check_tool_arguments(
    args: &Value,
    resolver: &dyn Resolve,
    timeout: Duration,
) -> Result<(), Refusal> {
    let scan = scan(args);
    if scan.truncated {
        return Err(Refusal::Unscannable(format!(
            "they are too large or too deeply nested to check for network targets (limits: depth {MAX_SCAN_DEPTH}, {MAX_SCAN_STRINGS} strings, {MAX_SCAN_BYTES} bytes, {MAX_TARGETS} targets, URL authorities of {MAX_URL_SCAN} bytes)"
        )));
    }
    let mut names: Vec<(String, u16, String)> = Vec::new();
    let mut seen = BTreeSet::new();
    for target in &scan.targets {
        if target.scheme.as_deref() == Some("file") {
            return Err(Refusal::FileUrl {
                url: target.text.clone(),
            });
        }
        let refused = |reason: &str| Refusal::Argument {
            target: target.text.clone(),
            reason: reason.to_owned(),
        };
        match guard_host(&target.host) {
            Some(Destination::Addr(ip)) => {
                if let Some(reason) = refusal_reason(ip) {
                    return Err(refused(&format!("{ip} is {reason}")));
                }
            }
            Some(Destination::Name(name)) => {
                if let Some(reason) = refused_name_reason(&name) {
                    return Err(refused(&format!("{name} is {reason}")));
                }
                if seen.insert(name.clone()) {
                    names.push((name, target.port.unwrap_or(80), target.text.clone()));
                }
            }
            None => {}
        }
    }
    if names.len() > MAX_RESOLVED_NAMES {
        return Err(Refusal::Unscannable(format!(
            "they name {} distinct hosts, more than the {MAX_RESOLVED_NAMES} that are checked",
            names.len()
        )));
    }
    check_resolved_names(names, resolver, timeout).await
}

async fn check_resolved_names(
    names: Vec<(String, u16, String)>,
    resolver: &dyn Resolve,
    timeout: Duration,
) -> Result<(), Refusal> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut lookups = futures_util::stream::iter(names)
        .map(|(name, port, text)| async move {
            let result = resolver.resolve(&name, port).await;
            (name, text, result)
        })
        .buffer_unordered(RESOLVE_CONCURRENCY);
    loop {
        match tokio::time::timeout_at(deadline, lookups.next()).await {
            Ok(Some((name, text, Ok(addrs)))) => {
                if let Some((addr, reason)) = addrs
                    .iter()
                    .find_map(|&a| refusal_reason(a).map(|reason| (a, reason)))
                {
                    return Err(Refusal::Argument {
                        target: text,
                        reason: format!("{name} resolves to {addr}, {reason}"),
                    });
                }
            }
            // Fails to resolve: the tool cannot reach it either.
            Ok(Some((_, _, Err(_)))) => {}
            Ok(None) | Err(_) => return Ok(()),
        }
    }
}

/// The guard's reading of a host: an address in any spelling, or a name as a WHATWG
/// parser maps it (percent-decoding, IDNA: `ｌｏｃａｌｈｏｓｔ` is `localhost`). `None`
/// when it is neither (such a host cannot be reached).
fn guard_host(host: &str) -> Option<Destination> {
    if let Some(ip) = parse_ip_literal(host) {
        return Some(Destination::Addr(ip));
    }
    if host.is_ascii() && !host.contains('%') {
        return normalize_name(host).ok().map(Destination::Name);
    }
    match url::Host::parse(host) {
        Ok(url::Host::Domain(domain)) => normalize_name(&domain).ok().map(Destination::Name),
        Ok(url::Host::Ipv4(ip)) => Some(Destination::Addr(IpAddr::V4(ip))),
        Ok(url::Host::Ipv6(ip)) => Some(Destination::Addr(IpAddr::V6(ip))),
        Err(_) => None,
    }
}

#[derive(Debug, Default)]
struct Scan {
    targets: Vec<Target>,
    truncated: bool,
    strings: usize,
    bytes: usize,
    /// Bytes looked at by URL candidates.
    work: usize,
}

fn scan(args: &Value) -> Scan {
    let mut scan = Scan::default();
    scan.value(args, false, 0);
    let mut seen = BTreeSet::new();
    scan.targets
        .retain(|t| seen.insert((t.scheme.clone(), t.host.clone(), t.port)));
    scan
}

impl Scan {
    fn value(&mut self, value: &Value, hostish: bool, depth: usize) {
        if self.truncated {
            return;
        }
        if depth > MAX_SCAN_DEPTH {
            self.truncated = true;
            return;
        }
        match value {
            Value::String(text) => self.string(text, hostish),
            Value::Number(number) if hostish => {
                if let Some(n) = number.as_u64().filter(|&n| n <= u64::from(u32::MAX)) {
                    self.push(None, n.to_string(), None, &n.to_string());
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.value(item, hostish, depth + 1);
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    self.string(key, false);
                    self.value(item, is_host_key(key), depth + 1);
                }
            }
            _ => {}
        }
    }

    fn string(&mut self, text: &str, hostish: bool) {
        self.strings += 1;
        self.bytes += text.len();
        if self.strings > MAX_SCAN_STRINGS || self.bytes > MAX_SCAN_BYTES {
            self.truncated = true;
            return;
        }
        self.urls(text);
        self.tokens(text);
        if hostish {
            self.whole_value(text);
        }
    }

    fn push(&mut self, scheme: Option<String>, host: String, port: Option<u16>, text: &str) {
        if self.targets.len() >= MAX_TARGETS {
            self.truncated = true;
            return;
        }
        self.targets.push(Target {
            scheme,
            host,
            port,
            text: shown(text),
        });
    }

    /// Every `scheme:` in `text` that starts a URL. Each candidate looks at most
    /// [`MAX_URL_SCAN`] bytes past its colon, and all candidates together at most
    /// [`MAX_URL_WORK`] (hostile text like `http::http::...` would otherwise be quadratic).
    fn urls(&mut self, text: &str) {
        let bytes = text.as_bytes();
        for colon in memchr::memchr_iter(b':', bytes) {
            if self.truncated {
                return;
            }
            let Some(start) = scheme_start(bytes, colon) else {
                continue;
            };
            let scheme = text[start..colon].to_ascii_lowercase();
            let (end, cut) = url_end(text, colon + 1);
            self.work += end - colon;
            if self.work > MAX_URL_WORK {
                self.truncated = true;
                return;
            }
            let rest = &text[colon + 1..end];
            if scheme == "file" {
                if !rest.is_empty() {
                    self.push(Some(scheme), String::new(), None, &text[start..end]);
                }
                continue;
            }
            let authority_at = if is_special(&scheme) {
                rest.len() - rest.trim_start_matches(['/', '\\']).len()
            } else if rest.starts_with("//") {
                2
            } else {
                continue;
            };
            let authority = &rest[authority_at..];
            let authority = match authority.find(['/', '\\', '?', '#']) {
                Some(at) => &authority[..at],
                // The authority runs into the scan limit: its host could lie beyond.
                None if cut => {
                    self.truncated = true;
                    return;
                }
                None => authority,
            };
            // `scheme:` + slashes + authority: all a URL parser needs to find the host.
            let url_text = &text[start..colon + 1 + authority_at + authority.len()];
            let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
            let (host, port) = lenient_host_port(host_port);
            if host.is_empty() {
                continue;
            }
            let port = port.or_else(|| default_port(&scheme));
            let shown_text = &text[start..end];
            self.push(Some(scheme.clone()), host.to_owned(), port, shown_text);
            if let Ok(url) = url::Url::parse(url_text) {
                if let Some(host) = url.host_str() {
                    let port = url.port_or_known_default().or(port);
                    self.push(Some(scheme), host.to_owned(), port, shown_text);
                }
            }
        }
    }

    /// Bare `host:port`, `[v6]`, `[v6]:port` and four-part dotted addresses.
    fn tokens(&mut self, text: &str) {
        for token in text.split(is_token_delimiter) {
            if self.truncated {
                return;
            }
            let token = token
                .trim_start_matches('(')
                .trim_end_matches(['.', ',', '!', '?', ':', ')']);
            if token.is_empty() || token.contains("://") {
                continue;
            }
            if token.starts_with('[') {
                if let Some((host, port)) = bracketed(token) {
                    if parse_ip_literal(host).is_some() {
                        self.push(None, host.to_owned(), port, token);
                    }
                }
                continue;
            }
            let host_port = token.split(['/', '?', '#']).next().unwrap_or(token);
            if let Some((host, port)) = host_port.split_once(':') {
                let plausible = !host.is_empty()
                    && host.contains(|c: char| c == '.' || c.is_ascii_alphabetic())
                    && host
                        .chars()
                        .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '%'));
                if let Some(port) = parse_port(port).filter(|_| plausible) {
                    self.push(None, host.to_owned(), Some(port), token);
                }
                continue;
            }
            let parts: Vec<&str> = token.split('.').collect();
            if parts.len() == 4 && parts.iter().all(|p| parse_v4_number(p).is_some()) {
                self.push(None, token.to_owned(), None, token);
            }
        }
    }

    /// The whole value under a key that names a host, in any spelling.
    fn whole_value(&mut self, text: &str) {
        let Some(first) = text.split_whitespace().next() else {
            return;
        };
        if first.contains("://") {
            return;
        }
        let first = first.split(['/', '?', '#']).next().unwrap_or(first);
        if first.is_empty() || first.contains('@') {
            return;
        }
        if parse_ip_literal(first).is_some() {
            self.push(None, first.to_owned(), None, first);
            return;
        }
        let (host, port) = if first.starts_with('[') {
            bracketed(first).unwrap_or((first, None))
        } else {
            match first.rsplit_once(':') {
                Some((host, port)) if parse_port(port).is_some() => (host, parse_port(port)),
                _ => (first, None),
            }
        };
        self.push(None, host.to_owned(), port, first);
    }
}

/// Where the scheme ending at `colon` starts: a run of `[A-Za-z0-9+.-]` beginning with a
/// letter, not preceded by another scheme character.
fn scheme_start(bytes: &[u8], colon: usize) -> Option<usize> {
    let is_scheme_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.');
    let mut start = colon;
    while start > 0 && is_scheme_char(bytes[start - 1]) {
        start -= 1;
    }
    // A scheme starts with a letter: skip leading digits and punctuation.
    while start < colon && !bytes[start].is_ascii_alphabetic() {
        start += 1;
    }
    (start < colon).then_some(start)
}

/// Where a URL whose scheme ends before `from` ends: whitespace, a control character, a
/// quote or an angle bracket, or [`MAX_URL_SCAN`] bytes on (at a character boundary;
/// then `true`: the URL was cut).
fn url_end(text: &str, from: usize) -> (usize, bool) {
    let bytes = text.as_bytes();
    let limit = bytes.len().min(from.saturating_add(MAX_URL_SCAN));
    let found = bytes[from..limit].iter().position(|&b| {
        b.is_ascii_whitespace()
            || b.is_ascii_control()
            || matches!(b, b'"' | b'\'' | b'<' | b'>' | b'`')
    });
    let (mut end, cut) = match found {
        Some(at) => (from + at, false),
        None => (limit, limit < bytes.len()),
    };
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (end, cut)
}

/// Schemes a WHATWG parser treats as special (slashes optional, `\` is `/`).
fn is_special(scheme: &str) -> bool {
    matches!(scheme, "http" | "https" | "ws" | "wss" | "ftp")
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        "ftp" => Some(21),
        "gopher" => Some(70),
        "dict" => Some(2628),
        _ => None,
    }
}

/// `host` and port of an authority without userinfo: `[v6]:port`, or up to the first `:`.
fn lenient_host_port(text: &str) -> (&str, Option<u16>) {
    if text.starts_with('[') {
        return bracketed(text).unwrap_or((text, None));
    }
    match text.split_once(':') {
        Some((host, port)) => {
            let digits = port
                .find(|c: char| !c.is_ascii_digit())
                .map_or(port, |at| &port[..at]);
            (host, parse_port(digits))
        }
        None => (text, None),
    }
}

/// `[v6]` or `[v6]:port`: the bracketed host (brackets kept) and the port.
fn bracketed(text: &str) -> Option<(&str, Option<u16>)> {
    let close = text.find(']')?;
    let (host, rest) = text.split_at(close + 1);
    match rest.strip_prefix(':') {
        Some(port) => Some((host, parse_port(port))),
        None => Some((host, None)),
    }
}

fn is_token_delimiter(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '<' | '>' | '`' | '(' | ')' | '{' | '}' | '|' | ',' | ';' | '='
        )
}

/// Keys whose string values are host names or addresses.
fn is_host_key(key: &str) -> bool {
    let key: String = key
        .chars()
        .filter(|c| !matches!(c, '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect();
    const EXACT: &[&str] = &[
        "ip", "ips", "server", "proxy", "href", "hostport", "baseurl",
    ];
    const SUFFIXES: &[&str] = &[
        "host",
        "hosts",
        "hostname",
        "url",
        "urls",
        "uri",
        "uris",
        "addr",
        "address",
        "addresses",
        "endpoint",
        "endpoints",
        "domain",
        "ipaddr",
        "ipv4",
        "ipv6",
    ];
    EXACT.contains(&key.as_str()) || SUFFIXES.iter().any(|s| key.ends_with(s))
}

// ---------------------------------------------------------------------------------------
// DNS
// ---------------------------------------------------------------------------------------

/// Resolves host names; the system resolver in production, fakes in tests.
pub trait Resolve: Send + Sync {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>>;
}

/// The system resolver (`getaddrinfo` through `tokio::net::lookup_host`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host, port)).await?;
            Ok(addrs.map(|addr| addr.ip()).collect())
        })
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// `text` escaped (`\n`, `\u{430}`) and cut to [`SHOWN_CHARS`] characters, safe to show.
pub(crate) fn shown(text: &str) -> String {
    escaped_cut(text, SHOWN_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    // ---- refused ranges ----

    #[test]
    fn refuses_special_ipv4_ranges_with_reasons() {
        let cases = [
            ("0.0.0.0", "unspecified address"),
            ("0.1.2.3", "\"this network\" (0.0.0.0/8)"),
            ("10.0.0.1", PRIVATE),
            ("10.255.255.255", PRIVATE),
            ("100.64.0.1", "shared address space (CGNAT, RFC 6598)"),
            ("100.127.255.255", "shared address space (CGNAT, RFC 6598)"),
            ("100.100.100.200", CLOUD_METADATA),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("169.254.169.254", CLOUD_METADATA),
            ("169.254.170.2", CLOUD_METADATA),
            ("169.254.0.1", "link-local"),
            ("172.16.0.1", PRIVATE),
            ("172.31.255.255", PRIVATE),
            ("192.0.0.8", "IETF protocol assignments (192.0.0.0/24)"),
            ("192.0.0.192", CLOUD_METADATA),
            ("192.0.2.1", DOCUMENTATION),
            ("192.31.196.1", AS112),
            ("192.52.193.1", "AMT relay anycast"),
            ("192.88.99.1", "deprecated 6to4 relay anycast"),
            ("192.168.1.1", PRIVATE),
            ("192.175.48.6", AS112),
            ("198.18.0.1", "benchmarking (RFC 2544)"),
            ("198.19.255.255", "benchmarking (RFC 2544)"),
            ("198.51.100.7", DOCUMENTATION),
            ("203.0.113.9", DOCUMENTATION),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved (240.0.0.0/4)"),
            ("255.255.255.254", "reserved (240.0.0.0/4)"),
            ("255.255.255.255", "broadcast"),
        ];
        for (addr, reason) in cases {
            assert_eq!(refusal_reason(ip(addr)), Some(reason), "{addr}");
        }
    }

    #[test]
    fn allows_public_ipv4_next_to_refused_ranges() {
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.0.3.0",
            "192.88.98.255",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "93.184.216.34",
        ] {
            assert_eq!(refusal_reason(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn refuses_special_ipv6_ranges_with_reasons() {
        let cases = [
            ("::", "unspecified address"),
            ("::1", "loopback"),
            ("fd00:ec2::254", CLOUD_METADATA),
            ("fd00:ec2::253", "unique local (fc00::/7)"),
            ("fc00::1", "unique local (fc00::/7)"),
            ("fdff:ffff::1", "unique local (fc00::/7)"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "deprecated site-local (fec0::/10)"),
            ("ff02::1", "multicast"),
            ("ff0e::1", "multicast"),
            ("100::1", "discard-only (100::/64)"),
            ("100:0:0:1::1", "dummy prefix (100:0:0:1::/64)"),
            ("2001:db8::1", DOCUMENTATION),
            ("3fff::1", DOCUMENTATION),
            ("2001::1", "Teredo (2001::/32)"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo (2001::/32)"),
            ("2001:2::1", "benchmarking (2001:2::/48)"),
            ("2001:10::1", "IETF protocol assignments (2001::/23)"),
            ("2001:20::1", "IETF protocol assignments (2001::/23)"),
            ("2620:4f:8000::1", AS112),
            ("5f00::1", "segment routing (SRv6) SIDs (5f00::/16)"),
            ("64:ff9b:1::a00:1", "local-use NAT64 (64:ff9b:1::/48)"),
            ("64:ff9b:1::808:808", "local-use NAT64 (64:ff9b:1::/48)"),
            ("::7f00:1", "deprecated IPv4-compatible address (::/96)"),
            ("::808:808", "deprecated IPv4-compatible address (::/96)"),
            (
                "::ffff:0:7f00:1",
                "reserved (outside the global unicast range 2000::/3)",
            ),
            (
                "4000::1",
                "reserved (outside the global unicast range 2000::/3)",
            ),
            (
                "1::1",
                "reserved (outside the global unicast range 2000::/3)",
            ),
            (
                "e000::1",
                "reserved (outside the global unicast range 2000::/3)",
            ),
        ];
        for (addr, reason) in cases {
            assert_eq!(refusal_reason(ip(addr)), Some(reason), "{addr}");
        }
    }

    #[test]
    fn embedded_ipv4_is_judged_by_the_ipv4_address() {
        let cases = [
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:7f00:1", Some("loopback")),
            ("::ffff:169.254.169.254", Some(CLOUD_METADATA)),
            ("::ffff:10.1.2.3", Some(PRIVATE)),
            ("::ffff:0.0.0.0", Some("unspecified address")),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::127.0.0.1", Some("loopback")),
            ("64:ff9b::a9fe:a9fe", Some(CLOUD_METADATA)),
            ("64:ff9b::192.168.0.1", Some(PRIVATE)),
            ("64:ff9b::8.8.8.8", None),
            ("2002:7f00:1::1", Some("loopback")),
            ("2002:a9fe:a9fe::", Some(CLOUD_METADATA)),
            ("2002:c0a8:101::1", Some(PRIVATE)),
            ("2002:808:808::1", None),
        ];
        for (addr, reason) in cases {
            assert_eq!(refusal_reason(ip(addr)), reason, "{addr}");
        }
    }

    #[test]
    fn allows_public_ipv6() {
        for addr in [
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "2001:200::1",
            "2c0f::1",
        ] {
            assert_eq!(refusal_reason(ip(addr)), None, "{addr}");
        }
    }

    // ---- IP literal spellings ----

    #[test]
    fn reads_every_spelling_of_loopback() {
        let loopback = Some(ip("127.0.0.1"));
        for text in [
            "127.0.0.1",
            "2130706433",
            "0177.0.0.1",
            "0177.0000.0000.0001",
            "0x7f.0.0.1",
            "0X7F.0.0.1",
            "0x7f.1",
            "0x7f.0.1",
            "0x7f000001",
            "0x00000000007f000001",
            "017700000001",
            "127.1",
            "127.0.1",
            "127.0.0.1.",
            "0x7f.1.",
            "%31%32%37.0.0.1",
            "%3127.0.0.1",
            "%2531%2532%2537.0.0.1",
            "\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}",
            "127\u{3002}0\u{3002}0\u{3002}1",
            "127.0.0.1 trailing",
            "[127.0.0.1]",
        ] {
            assert_eq!(parse_ip_literal(text), loopback, "{text:?}");
        }
    }

    #[test]
    fn reads_ipv6_forms() {
        let cases = [
            ("[::1]", "::1"),
            ("::1", "::1"),
            ("[0:0:0:0:0:0:0:1]", "::1"),
            ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
            ("[::FFFF:7F00:1]", "::ffff:127.0.0.1"),
            ("[fe80::1%25eth0]", "fe80::1"),
            ("[fe80::1%eth0]", "fe80::1"),
            ("fe80::1%eth0", "fe80::1"),
            ("[::1%25lo]", "::1"),
            ("[::1].", "::1"),
            ("[%3a%3a1]", "::1"),
            ("[64:ff9b::7f00:1]", "64:ff9b::7f00:1"),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_ip_literal(text), Some(ip(expected)), "{text:?}");
        }
    }

    #[test]
    fn other_spellings_of_refused_addresses() {
        let cases = [
            ("0", "0.0.0.0"),
            ("0x0", "0.0.0.0"),
            ("0x", "0.0.0.0"),
            ("00", "0.0.0.0"),
            ("0.0", "0.0.0.0"),
            ("2852039166", "169.254.169.254"),
            ("0xa9fea9fe", "169.254.169.254"),
            ("0251.0376.0251.0376", "169.254.169.254"),
            ("169.254.43518", "169.254.169.254"),
            ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
            ("10.1", "10.0.0.1"),
            ("167772161", "10.0.0.1"),
            ("4294967295", "255.255.255.255"),
        ];
        for (text, expected) in cases {
            let parsed = parse_ip_literal(text);
            assert_eq!(parsed, Some(ip(expected)), "{text:?}");
            assert!(refusal_reason(ip(expected)).is_some(), "{text:?}");
        }
    }

    #[test]
    fn names_and_malformed_numbers_are_not_literals() {
        for text in [
            "",
            "example.com",
            "localhost",
            "1.2.3.4.5",
            "256.0.0.1",
            "1.256.0.1",
            "1.2.3.256",
            "1.2.65536",
            "1.16777216",
            "4294967296",
            "99999999999999999999999",
            "0x1ffffffff",
            "08.0.0.1",
            "0x7g.0.0.1",
            "1..2",
            ".1.2.3",
            "1.2.3.4..",
            "-1",
            "+1",
            "1e3",
            " 127.0.0.1",
            "[::1",
            "::1]",
            "[]",
            "[::ffff:127.1]",
            "[::ffff:0177.0.0.1]",
            "[:::1]",
            "%zz",
            "%ff%fe",
            "127.0.0.1x",
            "0x7f.1x",
        ] {
            assert_eq!(parse_ip_literal(text), None, "{text:?}");
        }
        assert_eq!(parse_ip_literal(&"1".repeat(2000)), None);
        assert_eq!(
            parse_ip_literal(&format!("0x{}", "0".repeat(900))),
            Some(ip("0.0.0.0"))
        );
    }

    // ---- names ----

    #[test]
    fn normalizes_names() {
        assert_eq!(
            normalize_host("Example.COM."),
            Ok(Destination::Name("example.com".into()))
        );
        assert_eq!(
            normalize_host("a_b-c.example"),
            Ok(Destination::Name("a_b-c.example".into()))
        );
        assert_eq!(
            normalize_host("xn--nxasmq6b.com"),
            Ok(Destination::Name("xn--nxasmq6b.com".into()))
        );
        assert_eq!(
            normalize_host("0x7f.1"),
            Ok(Destination::Addr(ip("127.0.0.1")))
        );
        assert_eq!(
            normalize_host(&format!("{}.com", "a".repeat(63))),
            Ok(Destination::Name(format!("{}.com", "a".repeat(63))))
        );
    }

    #[test]
    fn rejects_malformed_names() {
        let cases = [
            ("", HostFlaw::Empty),
            (".", HostFlaw::Empty),
            ("..", HostFlaw::EmptyLabel),
            (".example.com", HostFlaw::EmptyLabel),
            ("a..example.com", HostFlaw::EmptyLabel),
            ("example.com..", HostFlaw::EmptyLabel),
            ("ex ample.com", HostFlaw::BadChar { ch: ' ' }),
            ("example.com\0", HostFlaw::BadChar { ch: '\0' }),
            ("example.com\n", HostFlaw::BadChar { ch: '\n' }),
            ("exa%41mple.com", HostFlaw::BadChar { ch: '%' }),
            ("user@example.com", HostFlaw::BadChar { ch: '@' }),
            ("example.com:80", HostFlaw::BadChar { ch: ':' }),
            ("example.com/x", HostFlaw::BadChar { ch: '/' }),
            ("ex*ample.com", HostFlaw::BadChar { ch: '*' }),
            ("exa\u{0430}mple.com", HostFlaw::NonAscii),
            ("ｌｏｃａｌｈｏｓｔ", HostFlaw::NonAscii),
            ("example.com\u{200b}", HostFlaw::NonAscii),
            ("1.2.3.256", HostFlaw::MalformedAddress),
            ("example.123", HostFlaw::MalformedAddress),
            ("example.0x1f", HostFlaw::MalformedAddress),
            ("1.2.3.4.5", HostFlaw::MalformedAddress),
            ("08.0.0.1", HostFlaw::MalformedAddress),
        ];
        for (host, flaw) in cases {
            assert_eq!(normalize_host(host), Err(flaw), "{host:?}");
        }
        assert_eq!(
            normalize_host(&format!("{}.com", "a".repeat(64))),
            Err(HostFlaw::LabelTooLong)
        );
        let long = format!("{}com", "a.".repeat(130));
        assert_eq!(
            normalize_host(&long),
            Err(HostFlaw::TooLong { len: long.len() })
        );
        // The error says how to spell international names.
        assert!(HostFlaw::NonAscii.to_string().contains("xn--"));
    }

    #[test]
    fn refuses_inside_names() {
        let cases = [
            ("localhost", "localhost"),
            ("LOCALHOST.", "localhost"),
            ("a.b.localhost", "localhost"),
            ("localhost.localdomain", "local name from /etc/hosts"),
            ("ip6-localhost", "local name from /etc/hosts"),
            ("ip6-loopback", "local name from /etc/hosts"),
            ("db.localdomain", "local domain (.localdomain)"),
            ("metadata", CLOUD_METADATA),
            ("metadata.google.internal", CLOUD_METADATA),
            ("Metadata.Google.Internal.", CLOUD_METADATA),
            ("metadata.goog", CLOUD_METADATA),
            ("instance-data", CLOUD_METADATA),
            ("instance-data.ec2.internal", CLOUD_METADATA),
            ("internal", "private-use domain (.internal)"),
            ("db.corp.internal", "private-use domain (.internal)"),
            ("printer.local", "multicast DNS domain (.local)"),
            ("router.home.arpa", "home network domain (.home.arpa)"),
            ("1.0.0.127.in-addr.arpa", "infrastructure domain (.arpa)"),
        ];
        for (name, reason) in cases {
            assert_eq!(refused_name_reason(name), Some(reason), "{name}");
        }
        for name in [
            "example.com",
            "localhost.example.com",
            "notlocalhost",
            "mylocalhost.com",
            "metadata.example.com",
            "internal.example.com",
            "local.example.com",
            "arpa.example.com",
            "test.example",
            "xlocal",
        ] {
            assert_eq!(refused_name_reason(name), None, "{name}");
        }
    }

    // ---- rules ----

    fn rule(text: &str) -> HostRule {
        HostRule::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn rule_error(text: &str) -> HostRuleError {
        HostRule::parse(text).expect_err(&format!("{text:?} must be rejected"))
    }

    #[test]
    fn exact_rule_without_port_allows_80_and_443_only() {
        let r = rule("Example.com");
        assert_eq!(r.to_string(), "example.com");
        assert!(r.matches("example.com", 80));
        assert!(r.matches("example.com", 443));
        assert!(r.matches("EXAMPLE.com.", 443));
        for (host, port) in [
            ("example.com", 8080),
            ("example.com", 22),
            ("www.example.com", 443),
            ("example.com.evil.com", 443),
            ("evilexample.com", 443),
            ("example.co", 443),
            ("", 443),
            ("example.com\0", 443),
        ] {
            assert!(!r.matches(host, port), "{host:?}:{port}");
        }
    }

    #[test]
    fn rule_with_port_allows_that_port_only() {
        let r = rule("api.example.com:8443");
        assert_eq!(r.port(), Some(8443));
        assert!(r.matches("api.example.com", 8443));
        assert!(!r.matches("api.example.com", 443));
        assert!(!r.matches("api.example.com", 80));
    }

    #[test]
    fn wildcard_rule_matches_subdomains_not_the_apex() {
        let r = rule("*.example.com");
        assert_eq!(r.host(), &RuleHost::Subdomains("example.com".into()));
        assert!(r.matches("a.example.com", 443));
        assert!(r.matches("a.b.example.com", 80));
        for host in [
            "example.com",
            "aexample.com",
            "example.com.evil.org",
            ".example.com",
            "a..example.com",
        ] {
            assert!(!r.matches(host, 443), "{host}");
        }
    }

    #[test]
    fn ip_rules_match_any_spelling_of_their_address() {
        let r = rule("93.184.216.34:8080");
        assert!(r.matches("93.184.216.34", 8080));
        assert!(r.matches("0x5db8d822", 8080));
        assert!(r.matches("[::ffff:93.184.216.34]", 8080));
        assert!(!r.matches("93.184.216.35", 8080));
        assert!(!r.matches("93.184.216.34", 80));
        let r = rule("[2606:4700:4700::1111]:443");
        assert!(r.matches("[2606:4700:4700::1111]", 443));
        assert_eq!(r.to_string(), "[2606:4700:4700::1111]:443");
        assert_eq!(rule("2606:4700:4700::1111").port(), None);
    }

    #[test]
    fn rejects_malformed_rules() {
        let cases = [
            ("http://example.com", HostRuleError::Url),
            ("https://example.com:443", HostRuleError::Url),
            ("example.com/path", HostRuleError::Path),
            ("example.com?x", HostRuleError::Path),
            ("example.com#x", HostRuleError::Path),
            ("example.com\\x", HostRuleError::Path),
            ("user@example.com", HostRuleError::Userinfo),
            ("example.com:", HostRuleError::BadPort),
            ("example.com:0", HostRuleError::BadPort),
            ("example.com:65536", HostRuleError::BadPort),
            ("example.com:-1", HostRuleError::BadPort),
            ("example.com:+80", HostRuleError::BadPort),
            ("example.com: 80", HostRuleError::BadPort),
            ("example.com:80x", HostRuleError::BadPort),
            ("[::1", HostRuleError::Host(HostFlaw::BadChar { ch: '[' })),
            ("[2606:4700::1]443", HostRuleError::BadPort),
            ("*", HostRuleError::Wildcard),
            ("*example.com", HostRuleError::Wildcard),
            ("a.*.example.com", HostRuleError::Wildcard),
            ("*.*.example.com", HostRuleError::Wildcard),
            ("**.example.com", HostRuleError::Wildcard),
            ("*.com", HostRuleError::WildcardTooBroad("com".into())),
            ("*.", HostRuleError::Host(HostFlaw::Empty)),
            ("", HostRuleError::Host(HostFlaw::Empty)),
            (
                " example.com",
                HostRuleError::Host(HostFlaw::BadChar { ch: ' ' }),
            ),
            ("exämple.com", HostRuleError::Host(HostFlaw::NonAscii)),
            ("a:b:c", HostRuleError::Host(HostFlaw::BadChar { ch: ':' })),
            ("localhost", HostRuleError::RefusedName("localhost")),
            (
                "metadata.google.internal",
                HostRuleError::RefusedName(CLOUD_METADATA),
            ),
            (
                "*.corp.internal",
                HostRuleError::RefusedName("private-use domain (.internal)"),
            ),
            ("127.0.0.1", HostRuleError::RefusedAddress("loopback")),
            ("2130706433:80", HostRuleError::RefusedAddress("loopback")),
            ("[::1]:80", HostRuleError::RefusedAddress("loopback")),
            (
                "169.254.169.254",
                HostRuleError::RefusedAddress(CLOUD_METADATA),
            ),
            ("10.0.0.1:8080", HostRuleError::RefusedAddress(PRIVATE)),
        ];
        for (text, expected) in cases {
            assert_eq!(rule_error(text), expected, "{text:?}");
        }
        // Only `localhost` and names under it are refused, not names that contain it.
        assert!(HostRule::parse("*.localhost.example").is_ok());
        assert_eq!(
            rule_error(&"a".repeat(301)),
            HostRuleError::TooLong { len: 301 }
        );
    }

    // ---- policy ----

    fn policy(
        call: &[&str],
        operator: &[&str],
        cidrs: &[&str],
    ) -> Result<NetPolicy, NetPolicyError> {
        NetPolicy::new(&strings(call), &strings(operator), &strings(cidrs))
    }

    #[test]
    fn call_entries_must_be_covered_by_operator_rules() {
        assert!(policy(&["example.com"], &["example.com"], &[]).is_ok());
        assert!(policy(&["example.com:443"], &["example.com"], &[]).is_ok());
        assert!(policy(&["api.example.com"], &["*.example.com"], &[]).is_ok());
        assert!(policy(&["*.api.example.com"], &["*.example.com"], &[]).is_ok());
        assert!(policy(&["*.example.com"], &["*.example.com"], &[]).is_ok());
        assert!(policy(&["example.com:8443"], &["example.com:8443"], &[]).is_ok());
        assert!(policy(&["0x5db8d822"], &["93.184.216.34"], &[]).is_ok());
        assert!(policy(&[], &[], &[]).is_ok_and(|p| p.is_empty()));
        for (call, operator) in [
            ("example.com", &[][..]),
            ("example.com:8443", &["example.com"][..]),
            ("example.com", &["example.com:443"][..]),
            ("example.com", &["*.example.com"][..]),
            ("*.example.com", &["example.com"][..]),
            ("*.example.com", &["*.api.example.com"][..]),
            ("evil.com", &["example.com", "*.example.com"][..]),
            ("example.com.evil.com", &["example.com"][..]),
            ("93.184.216.34", &["example.com"][..]),
        ] {
            let err = policy(&[call], operator, &[]).expect_err(call);
            let msg = err.to_string();
            assert!(
                matches!(err, NetPolicyError::NotCovered { .. }),
                "{call}: {msg}"
            );
            assert!(msg.contains(&format!("\"{call}\"")), "{msg}");
            assert!(msg.contains("egress.allowed_hosts"), "{msg}");
        }
    }

    #[test]
    fn policy_errors_name_the_entry() {
        let err = policy(&["http://example.com/"], &["example.com"], &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("permissions.net[0] \"http://example.com/\""),
            "{msg}"
        );
        assert!(msg.contains("URL"), "{msg}");
        let err = policy(&[], &["ok.example", "bad\nhost"], &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("egress.allowed_hosts[1] \"bad\\nhost\""),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "{msg}");
        let err = policy(&[], &[], &["not a cidr"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "egress.allow_cidrs[0] \"not a cidr\" is not a network such as 127.0.0.1/32 or ::1/128"
        );
        let many: Vec<String> = (0..=MAX_RULES).map(|i| format!("h{i}.example")).collect();
        assert!(matches!(
            NetPolicy::new(&many, &many, &[]),
            Err(NetPolicyError::TooMany { count: 257, .. })
        ));
    }

    #[test]
    fn check_host_refuses_inside_targets_before_rules() {
        let p = policy(
            &["example.com", "*.example.org"],
            &["example.com", "*.example.org"],
            &[],
        )
        .unwrap();
        assert_eq!(p.check_host("example.com", 443), Ok(()));
        assert_eq!(p.check_host("a.example.org", 80), Ok(()));
        assert_eq!(
            p.check_host("169.254.169.254", 80).unwrap_err().to_string(),
            "egress to 169.254.169.254:80 refused: cloud metadata service"
        );
        assert_eq!(
            p.check_host("0x7f.1", 443).unwrap_err().to_string(),
            "egress to 127.0.0.1:443 refused: loopback"
        );
        assert_eq!(
            p.check_host("[::ffff:10.0.0.1]", 443)
                .unwrap_err()
                .to_string(),
            "egress to [::ffff:10.0.0.1]:443 refused: private (RFC 1918)"
        );
        assert_eq!(
            p.check_host("localhost", 443).unwrap_err().to_string(),
            "egress to localhost:443 refused: localhost"
        );
        assert_eq!(
            p.check_host("other.com", 443).unwrap_err().to_string(),
            "egress to other.com:443 refused: not allowed by this execution's permissions.net (allowed: example.com, *.example.org)"
        );
        assert_eq!(
            p.check_host("example.com", 22).unwrap_err().to_string(),
            "egress to example.com:22 refused: not allowed by this execution's permissions.net (allowed: example.com, *.example.org)"
        );
        let err = p.check_host("exa\nmple.com", 443).unwrap_err().to_string();
        assert_eq!(
            err,
            "egress to exa\\nmple.com:443 refused: character U+000A is not allowed in a host name"
        );
        let empty = NetPolicy::default();
        assert!(empty
            .check_host("example.com", 443)
            .unwrap_err()
            .to_string()
            .contains("it allows no hosts"));
    }

    #[test]
    fn check_target_says_what_to_connect_to() {
        let p = policy(
            &["Example.com", "93.184.216.34"],
            &["example.com", "93.184.216.34"],
            &[],
        )
        .unwrap();
        assert_eq!(
            p.check_target("EXAMPLE.com.", 80),
            Ok(Destination::Name("example.com".into()))
        );
        assert_eq!(
            p.check_target("1572395042", 443),
            Ok(Destination::Addr(ip("93.184.216.34")))
        );
    }

    #[test]
    fn allow_cidrs_exempt_addresses_but_not_names() {
        let p = policy(
            &["127.0.0.1:8080", "test.example:8080"],
            &["127.0.0.1:8080", "test.example:8080"],
            &["127.0.0.1/32"],
        )
        .unwrap();
        assert_eq!(p.check_host("127.0.0.1", 8080), Ok(()));
        assert_eq!(p.check_host("2130706433", 8080), Ok(()));
        assert_eq!(p.check_addr(ip("127.0.0.1")), Ok(()));
        assert_eq!(p.check_addr(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(
            p.check_resolved("test.example", 8080, &[ip("127.0.0.1")]),
            Ok(())
        );
        assert!(p.check_addr(ip("127.0.0.2")).is_err());
        assert!(p.check_host("127.0.0.1", 8081).is_err());
        assert!(p.check_host("localhost", 8080).is_err());
        assert!(p
            .check_resolved("test.example", 8080, &[ip("127.0.0.1"), ip("10.0.0.1")])
            .is_err());
        // Without the exemption the same rule is invalid.
        assert!(matches!(
            policy(&[], &["127.0.0.1:8080"], &[]),
            Err(NetPolicyError::Invalid {
                error: HostRuleError::RefusedAddress("loopback"),
                ..
            })
        ));
        // A bare address is a single-address network.
        assert!(policy(&[], &["[::1]:8080"], &["::1"]).is_ok());
    }

    #[test]
    fn check_resolved_refuses_the_whole_name() {
        let p = policy(&["mixed.example"], &["mixed.example"], &[]).unwrap();
        assert_eq!(
            p.check_resolved("mixed.example", 443, &[ip("93.184.216.34")]),
            Ok(())
        );
        let err = p
            .check_resolved(
                "mixed.example",
                443,
                &[ip("93.184.216.34"), ip("169.254.169.254")],
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "egress to mixed.example:443 refused: mixed.example resolves to 169.254.169.254, cloud metadata service (a name is refused whole when any of its addresses is)"
        );
        assert_eq!(
            p.check_addr(ip("fd00:ec2::254")).unwrap_err().to_string(),
            "egress to fd00:ec2::254 refused: cloud metadata service"
        );
        assert_eq!(
            p.check_socket_addr("[fe80::1]:443".parse().unwrap())
                .unwrap_err()
                .to_string(),
            "egress to [fe80::1]:443 refused: link-local"
        );
    }

    // ---- tool arguments ----

    struct Fake {
        table: HashMap<&'static str, Vec<IpAddr>>,
        calls: AtomicUsize,
        hang: bool,
    }

    impl Fake {
        fn new(entries: &[(&'static str, &[&str])]) -> Self {
            Self {
                table: entries
                    .iter()
                    .map(|(name, ips)| (*name, ips.iter().map(|a| ip(a)).collect()))
                    .collect(),
                calls: AtomicUsize::new(0),
                hang: false,
            }
        }
    }

    impl Resolve for Fake {
        fn resolve<'a>(
            &'a self,
            host: &'a str,
            _port: u16,
        ) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.hang {
                return Box::pin(std::future::pending());
            }
            let answer =
                self.table.get(host).cloned().ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such host")
                });
            Box::pin(async move { answer })
        }
    }

    fn default_fake() -> Fake {
        Fake::new(&[
            ("example.com", &["93.184.216.34"]),
            ("internal.corp.example", &["10.0.0.5"]),
            ("mixed.example", &["93.184.216.34", "169.254.169.254"]),
            ("v6.example", &["2606:4700:4700::1111"]),
            ("rebind.example", &["::ffff:127.0.0.1"]),
        ])
    }

    async fn check(args: Value) -> Result<(), Refusal> {
        check_tool_arguments(&args, &default_fake(), Duration::from_secs(2)).await
    }

    async fn refused(args: Value) -> String {
        match check(args.clone()).await {
            Err(refusal) => refusal.to_string(),
            Ok(()) => panic!("{args} must be refused"),
        }
    }

    fn hosts(args: Value) -> Vec<String> {
        find_ssrf_targets(&args)
            .into_iter()
            .map(|t| t.host)
            .collect()
    }

    #[tokio::test]
    async fn refuses_urls_to_refused_addresses_in_any_spelling() {
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:8080/admin",
            "https://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]:80/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://0x7f000001/",
            "http://127.1/",
            "http://127.0.0.1./",
            "http://%31%32%37.0.0.1/",
            "http://\u{ff11}\u{ff12}\u{ff17}.0.0.1/",
            "HTTP://127.0.0.1/",
            "http:\\\\127.0.0.1\\x",
            "http:/127.0.0.1/",
            "http:127.0.0.1/",
            "http://user:pw@127.0.0.1/",
            "http://example.com@127.0.0.1/",
            "http://example.com:80@127.0.0.1/",
            "http://127.0.0.1#@example.com/",
            "http://127.0.0.1?@example.com/",
            "http://10.0.0.1/",
            "http://192.168.1.1/",
            "http://[fe80::1%25eth0]/",
            "http://[fd00:ec2::254]/",
            "http://0.0.0.0:6379/",
            "http://0/",
            "ftp://10.0.0.1/",
            "gopher://127.0.0.1:6379/_SET",
            "dict://127.0.0.1:11211/stat",
            "redis://127.0.0.1:6379",
            "ws://[::1]:9000/",
            "ldap://169.254.169.254/",
            "see <http://127.0.0.1/> here",
            "text before http://169.254.169.254 and after",
            "(http://127.0.0.1:3000),",
            "http:\\/\\/127.0.0.1",
        ] {
            let msg = refused(json!({ "url": url })).await;
            assert!(
                msg.starts_with("tool arguments refused: they point at"),
                "{url}: {msg}"
            );
        }
    }

    #[tokio::test]
    async fn refuses_inside_names_and_names_resolving_inside() {
        for (args, why) in [
            (
                json!({"url": "http://localhost:8080/"}),
                "localhost is localhost",
            ),
            (
                json!({"url": "http://LOCALHOST./"}),
                "localhost is localhost",
            ),
            (json!({"url": "http://app.localhost/"}), "localhost"),
            (json!({"url": "http://%6c%6fcalhost/"}), "localhost"),
            (
                json!({"url": "http://\u{ff4c}\u{ff4f}\u{ff43}\u{ff41}\u{ff4c}\u{ff48}\u{ff4f}\u{ff53}\u{ff54}/"}),
                "localhost",
            ),
            (
                json!({"url": "http://metadata.google.internal/computeMetadata/v1/"}),
                CLOUD_METADATA,
            ),
            (
                json!({"url": "http://metadata/computeMetadata/v1/"}),
                CLOUD_METADATA,
            ),
            (json!({"url": "http://db.internal:5432/"}), ".internal"),
            (
                json!({"url": "http://internal.corp.example/"}),
                "internal.corp.example resolves to 10.0.0.5, private (RFC 1918)",
            ),
            (
                json!({"url": "https://mixed.example/"}),
                "mixed.example resolves to 169.254.169.254, cloud metadata service",
            ),
            (
                json!({"url": "https://rebind.example/"}),
                "rebind.example resolves to ::ffff:127.0.0.1, loopback",
            ),
        ] {
            let msg = refused(args.clone()).await;
            assert!(msg.contains(why), "{args}: {msg}");
        }
    }

    #[tokio::test]
    async fn refuses_file_urls_outright() {
        for text in [
            "file:///etc/passwd",
            "FILE:///etc/shadow",
            "file://localhost/etc/passwd",
            "file:/etc/passwd",
            "file:etc/passwd",
            "read file:///proc/self/environ please",
            "file:\\\\server\\share",
        ] {
            let msg = refused(json!({ "path": text })).await;
            assert!(
                msg.contains("file URLs point at the server's own files"),
                "{text}: {msg}"
            );
        }
        // A word ending in "file" is not the file scheme.
        assert_eq!(
            check(json!({"text": "profile: /home/user, file: x"})).await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn finds_targets_in_nested_values_keys_and_bare_forms() {
        for args in [
            json!({"a": {"b": [{"c": ["x", "http://127.0.0.1/"]}]}}),
            json!([[[["http://169.254.169.254/"]]]]),
            json!({"http://127.0.0.1/": true}),
            json!({"query": "connect to localhost:6379 now"}),
            json!({"query": "ssh [::1]:22"}),
            json!({"query": "try [::1] too"}),
            json!({"query": "ping 10.0.0.1"}),
            json!({"query": "ping 0177.0.0.1"}),
            json!({"query": "ping 0x7f.0.0.1."}),
            json!({"query": "use 127.1:80"}),
            json!({"query": "use localhost:8080/api"}),
            json!({"query": "host=169.254.169.254"}),
            json!({"host": "2130706433"}),
            json!({"host": "::1"}),
            json!({"hostname": "localhost"}),
            json!({"server_address": "10.1.2.3:5432"}),
            json!({"baseUrl": "127.0.0.1:8080"}),
            json!({"ip": 2130706433u64}),
            json!({"ipAddress": 167772161u64}),
            json!({"hosts": ["example.com", "metadata"]}),
            json!({"proxy": "[::1]:3128"}),
            json!({"domain": "instance-data"}),
            json!({"endpoint": "0x7f000001"}),
            json!({"target_host": "127.0.0.1 extra words"}),
        ] {
            assert!(check(args.clone()).await.is_err(), "{args} must be refused");
        }
    }

    #[tokio::test]
    async fn allows_public_targets_ordinary_text_and_unresolvable_names() {
        for args in [
            json!({"url": "https://example.com/x?y=1"}),
            json!({"url": "https://v6.example/"}),
            json!({"url": "http://93.184.216.34/"}),
            json!({"url": "http://[2606:4700:4700::1111]/"}),
            json!({"url": "https://does-not-resolve.example/"}),
            json!({"url": "http://example.com#@127.0.0.1"}),
            json!({"text": "version 0.1.0 costs 10.1 at 12:30, ratio 1.5:1"}),
            json!({"count": "100", "limit": 10, "zip": "10001", "price": "10.1"}),
            json!({"code": "std::io::Result<()>; a::b; x = y ? 1 : 2"}),
            json!({"target": 5, "port": 8080, "id": 2130706433u64}),
            json!({"text": "mailto:someone@example.com and urn:isbn:0451450523"}),
            json!({"text": "C:\\Users\\x and C:/temp"}),
            json!({"text": "the localhost name is fine in prose"}),
            json!({"text": "http: and https: alone"}),
            json!(null),
            json!(42),
            json!(""),
        ] {
            assert_eq!(check(args.clone()).await, Ok(()), "{args}");
        }
    }

    #[test]
    fn target_extraction_reads_both_views_of_a_url() {
        let targets = find_ssrf_targets(&json!({"u": "http://a.example:8080/x"}));
        assert_eq!(
            targets,
            [Target {
                scheme: Some("http".into()),
                host: "a.example".into(),
                port: Some(8080),
                text: "http://a.example:8080/x".into(),
            }]
        );
        // The lenient view keeps the spelling, the WHATWG view normalises it.
        assert_eq!(hosts(json!("http://0x7f.1/")), ["0x7f.1", "127.0.0.1"]);
        assert_eq!(hosts(json!("http://evil.com@127.0.0.1/")), ["127.0.0.1"]);
        assert_eq!(hosts(json!("gopher://h.example/")), ["h.example"]);
        assert_eq!(
            find_ssrf_targets(&json!("gopher://h.example/"))[0].port,
            Some(70)
        );
        assert!(hosts(json!("plain words only")).is_empty());
    }

    #[tokio::test]
    async fn unresolved_names_time_out_without_refusal() {
        let mut fake = default_fake();
        fake.hang = true;
        let started = std::time::Instant::now();
        let args = json!({"url": "https://slow.example/"});
        let result = check_tool_arguments(&args, &fake, Duration::from_millis(100)).await;
        assert_eq!(result, Ok(()));
        assert!(started.elapsed() < Duration::from_secs(2));
        // Literals are judged without DNS.
        let args = json!({"url": "http://127.0.0.1/"});
        assert!(
            check_tool_arguments(&args, &fake, Duration::from_millis(100))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn each_name_is_resolved_once() {
        let fake = default_fake();
        let args = json!([
            "https://example.com/a",
            "https://EXAMPLE.com/b",
            "example.com:443"
        ]);
        assert_eq!(
            check_tool_arguments(&args, &fake, Duration::from_secs(1)).await,
            Ok(())
        );
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn arguments_too_large_to_check_are_refused() {
        let mut deep = json!("x");
        for _ in 0..100 {
            deep = json!([deep]);
        }
        assert!(refused(deep).await.contains("too deeply nested"));
        let many: Vec<Value> = (0..=MAX_RESOLVED_NAMES)
            .map(|i| json!(format!("http://h{i}.example/")))
            .collect();
        assert!(refused(Value::Array(many)).await.contains("distinct hosts"));
        let strings: Vec<Value> = (0..=MAX_SCAN_STRINGS).map(|_| json!("a")).collect();
        assert!(refused(Value::Array(strings)).await.contains("too large"));
    }

    #[tokio::test]
    async fn a_padded_authority_cannot_hide_its_host() {
        let url = format!("http://{}@127.0.0.1/", "a".repeat(5000));
        assert!(refused(json!({ "url": url })).await.contains("too large"));
        let url = format!("http://{}@127.0.0.1/", "a".repeat(1500));
        assert!(refused(json!({ "url": url }))
            .await
            .contains("127.0.0.1 is loopback"));
    }

    #[tokio::test]
    async fn hostile_text_is_scanned_in_bounded_time() {
        for text in [
            "http::".repeat(200_000),
            "http:http:".repeat(100_000),
            "http:@".repeat(200_000),
            "a:".repeat(500_000),
            ":".repeat(1_000_000),
            "http:".to_owned() + &"/".repeat(1_000_000),
            "x://".repeat(250_000),
            "[".repeat(1_000_000),
            "1.".repeat(500_000),
            "\u{430}:".repeat(200_000),
            format!("http://{}/", "a".repeat(1_000_000)),
        ] {
            let started = std::time::Instant::now();
            let targets = find_ssrf_targets(&json!({ "text": text }));
            eprintln!(
                "{}: find {:?} ({} targets)",
                &text[..12],
                started.elapsed(),
                targets.len()
            );
            let _ = check(json!({ "text": text })).await;
            eprintln!("{}: total {:?}", &text[..12], started.elapsed());
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{}... took {:?}",
                &text[..12],
                started.elapsed()
            );
        }
    }

    #[tokio::test]
    async fn system_resolver_reads_literals_without_dns() {
        let addrs = SystemResolver.resolve("127.0.0.1", 80).await.unwrap();
        assert_eq!(addrs, [ip("127.0.0.1")]);
    }

    #[test]
    fn shown_escapes_and_cuts() {
        assert_eq!(shown("a\nb"), "a\\nb");
        assert_eq!(shown(&"x".repeat(100)), format!("{}...", "x".repeat(80)));
    }
}
