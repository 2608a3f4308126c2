//! Reading one proxy request head: `CONNECT host:port` or an absolute-form request
//! (`GET http://host[:port]/path HTTP/1.1`), and rewriting the latter for the origin.
//! Hand-written and strict: one request line, header lines of visible ASCII, no obs-fold,
//! at most [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`]. Every input is hostile.

use crate::policy::net::{parse_port, shown};

/// Largest request head accepted, in bytes.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header lines accepted.
pub const MAX_HEADERS: usize = 100;

/// A parsed proxy request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `CONNECT host:port`: open a tunnel.
    Connect { host: String, port: u16 },
    /// An absolute-form request for `http://host:port`; `head` is the request rewritten in
    /// origin form, ready to send.
    Forward {
        host: String,
        port: u16,
        head: Vec<u8>,
    },
}

impl Request {
    /// The host (as written: any spelling, brackets kept for IPv6) and port to reach.
    pub fn target(&self) -> (&str, u16) {
        match self {
            Request::Connect { host, port } | Request::Forward { host, port, .. } => (host, *port),
        }
    }
}

/// Why a request head is not acceptable (answered with 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    #[error("the request head is not ASCII text")]
    NotText,
    #[error("malformed request line; expected `CONNECT host:port HTTP/1.1` or `GET http://host/path HTTP/1.1`")]
    RequestLine,
    #[error("unsupported HTTP version; use HTTP/1.1 or HTTP/1.0")]
    Version,
    #[error("CONNECT needs host:port, e.g. `CONNECT example.com:443 HTTP/1.1`")]
    ConnectTarget,
    #[error("this is a proxy: send absolute-form requests (`GET http://host/path`) or CONNECT")]
    OriginForm,
    #[error("only http:// URLs are forwarded; use CONNECT for https and other protocols")]
    Scheme,
    #[error("malformed URL authority: {0}")]
    Authority(&'static str),
    #[error("malformed header line")]
    Header,
    #[error("header lines continued on the next line (obs-fold) are not accepted")]
    ObsFold,
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
}

/// The length of the head at the start of `buf` (through the blank line), if complete.
/// Lines may end in CRLF or LF.
pub fn head_len(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(nl) = memchr::memchr(b'\n', &buf[at..]) {
        let line_end = at + nl;
        let line = &buf[at..line_end];
        if line.is_empty() || line == b"\r" {
            // The request line itself may not be blank: a head needs at least one line.
            if at > 0 {
                return Some(line_end + 1);
            }
        }
        at = line_end + 1;
    }
    None
}

/// Parses a complete head (as delimited by [`head_len`]).
pub fn parse(head: &[u8]) -> Result<Request, BadRequest> {
    let text = std::str::from_utf8(head).map_err(|_| BadRequest::NotText)?;
    if !text.is_ascii() {
        return Err(BadRequest::NotText);
    }
    let mut lines = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line));
    let request_line = lines.next().ok_or(BadRequest::RequestLine)?;
    let (method, target, version) = request_line_parts(request_line)?;
    let headers = header_lines(lines)?;
    if method == "CONNECT" {
        let (host, port) = split_authority(target, None).map_err(|_| BadRequest::ConnectTarget)?;
        return Ok(Request::Connect {
            host: host.to_owned(),
            port,
        });
    }
    if target.starts_with('/') || target == "*" {
        return Err(BadRequest::OriginForm);
    }
    let (scheme, rest) = target.split_once("://").ok_or(BadRequest::RequestLine)?;
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(BadRequest::Scheme);
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    if path.starts_with('#') || path.contains('#') {
        return Err(BadRequest::RequestLine);
    }
    let (host, port) = split_authority(authority, Some(80)).map_err(BadRequest::Authority)?;
    let path = match path {
        "" => "/".to_owned(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_owned(),
    };
    let head = rewrite(method, &path, version, authority, &headers);
    Ok(Request::Forward {
        host: host.to_owned(),
        port,
        head,
    })
}

fn request_line_parts(line: &str) -> Result<(&str, &str, &str), BadRequest> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BadRequest::RequestLine);
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(BadRequest::RequestLine);
    }
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(BadRequest::RequestLine);
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(BadRequest::Version);
    }
    Ok((method, target, version))
}

/// Header lines up to the blank line, each `name: value`.
fn header_lines<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> Result<Vec<(&'a str, &'a str)>, BadRequest> {
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            return Err(BadRequest::ObsFold);
        }
        if headers.len() == MAX_HEADERS {
            return Err(BadRequest::TooManyHeaders);
        }
        let (name, value) = line.split_once(':').ok_or(BadRequest::Header)?;
        let value = value.trim_matches([' ', '\t']);
        if name.is_empty()
            || !name.bytes().all(is_token_byte)
            || value.bytes().any(|b| b.is_ascii_control() && b != b'\t')
        {
            return Err(BadRequest::Header);
        }
        headers.push((name, value));
    }
    Ok(headers)
}

/// `host:port` (`[v6]:port`); without a port, `default` or an error.
fn split_authority(text: &str, default: Option<u16>) -> Result<(&str, u16), &'static str> {
    if text.contains('@') {
        return Err("user information (`@`) is not accepted");
    }
    let (host, port) = if text.starts_with('[') {
        let close = text.find(']').ok_or("unclosed `[`")?;
        let (host, rest) = text.split_at(close + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':').ok_or("junk after `]`")?)),
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err("the host is empty");
    }
    let port = match port {
        Some(port) => parse_port(port).ok_or("the port must be a number from 1 to 65535")?,
        None => default.ok_or("the port is missing")?,
    };
    Ok((host, port))
}

/// Hop-by-hop headers, which a proxy does not forward.
fn is_hop_by_hop(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("proxy-")
        || matches!(
            lower.as_str(),
            "connection" | "keep-alive" | "te" | "trailer" | "upgrade" | "host"
        )
}

/// The request in origin form: request line with the path, `Host` from the URL, the
/// client's end-to-end headers (not `Proxy-*`, not hop-by-hop, not those the client's
/// `Connection` names), and `Connection: close`.
fn rewrite(
    method: &str,
    path: &str,
    version: &str,
    authority: &str,
    headers: &[(&str, &str)],
) -> Vec<u8> {
    let named_by_connection: Vec<String> = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, value)| value.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty())
        .collect();
    let mut head = format!("{method} {path} {version}\r\nHost: {authority}\r\n");
    for (name, value) in headers {
        if is_hop_by_hop(name) || named_by_connection.contains(&name.to_ascii_lowercase()) {
            continue;
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    head.into_bytes()
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A one-line reason for the client, safe to put in a response body.
pub fn one_line(text: &str) -> String {
    text.lines().map(shown_line).collect::<Vec<_>>().join(" ")
}

fn shown_line(line: &str) -> String {
    if line.chars().all(|c| !c.is_control()) {
        line.to_owned()
    } else {
        shown(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(head: &str) -> Result<Request, BadRequest> {
        parse(head.as_bytes())
    }

    fn forwarded(head: &str) -> (String, u16, String) {
        match parse_str(head).expect("valid request") {
            Request::Forward { host, port, head } => {
                (host, port, String::from_utf8(head).expect("ASCII"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn head_len_finds_the_blank_line_with_crlf_or_lf() {
        assert_eq!(head_len(b"CONNECT a:1 HTTP/1.1\r\n\r\nrest"), Some(24));
        assert_eq!(head_len(b"CONNECT a:1 HTTP/1.1\n\nrest"), Some(22));
        assert_eq!(head_len(b"CONNECT a:1 HTTP/1.1\r\nX: y\r\n\r\n"), Some(30));
        assert_eq!(head_len(b"CONNECT a:1 HTTP/1.1\r\nX: y\r\n"), None);
        assert_eq!(head_len(b""), None);
        assert_eq!(head_len(b"\r\n\r\n"), Some(4));
        assert_eq!(head_len(b"no newline at all"), None);
    }

    #[test]
    fn parses_connect() {
        assert_eq!(
            parse_str("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
            Ok(Request::Connect {
                host: "example.com".into(),
                port: 443
            })
        );
        assert_eq!(
            parse_str("CONNECT [::1]:8443 HTTP/1.1\r\n\r\n"),
            Ok(Request::Connect {
                host: "[::1]".into(),
                port: 8443
            })
        );
        // Odd spellings are passed through as written; the policy reads them.
        assert_eq!(
            parse_str("CONNECT 0x7f.1:80 HTTP/1.0\n\n")
                .unwrap()
                .target(),
            ("0x7f.1", 80)
        );
    }

    #[test]
    fn refuses_bad_connect_targets() {
        for head in [
            "CONNECT example.com HTTP/1.1\r\n\r\n",
            "CONNECT example.com: HTTP/1.1\r\n\r\n",
            "CONNECT example.com:0 HTTP/1.1\r\n\r\n",
            "CONNECT example.com:65536 HTTP/1.1\r\n\r\n",
            "CONNECT example.com:+443 HTTP/1.1\r\n\r\n",
            "CONNECT example.com:4430000 HTTP/1.1\r\n\r\n",
            "CONNECT :443 HTTP/1.1\r\n\r\n",
            "CONNECT user@example.com:443 HTTP/1.1\r\n\r\n",
            "CONNECT [::1 HTTP/1.1\r\n\r\n",
            "CONNECT [::1]x:443 HTTP/1.1\r\n\r\n",
            "CONNECT [::1] HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse_str(head), Err(BadRequest::ConnectTarget), "{head:?}");
        }
    }

    #[test]
    fn forward_rewrites_to_origin_form_and_strips_proxy_headers() {
        let (host, port, head) = forwarded(
            "GET http://Example.com:8080/a/b?c=1 HTTP/1.1\r\n\
             Host: evil.example\r\n\
             Proxy-Authorization: Basic eDp5\r\n\
             Proxy-Connection: keep-alive\r\n\
             Connection: keep-alive, X-Secret\r\n\
             X-Secret: 1\r\n\
             Keep-Alive: 5\r\n\
             Upgrade: websocket\r\n\
             Accept: */*\r\n\
             Content-Length: 3\r\n\r\n",
        );
        assert_eq!((host.as_str(), port), ("Example.com", 8080));
        assert_eq!(
            head,
            "GET /a/b?c=1 HTTP/1.1\r\nHost: Example.com:8080\r\nAccept: */*\r\n\
             Content-Length: 3\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn forward_defaults_port_80_and_path_slash() {
        let (host, port, head) = forwarded("GET http://example.com HTTP/1.0\n\n");
        assert_eq!((host.as_str(), port), ("example.com", 80));
        assert!(
            head.starts_with("GET / HTTP/1.0\r\nHost: example.com\r\n"),
            "{head}"
        );
        let (_, _, head) = forwarded("HEAD HTTP://example.com?x=1 HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HEAD /?x=1 HTTP/1.1\r\n"), "{head}");
        let (host, port, _) = forwarded("GET http://[::1]:81/ HTTP/1.1\r\n\r\n");
        assert_eq!((host.as_str(), port), ("[::1]", 81));
    }

    #[test]
    fn refuses_origin_form_and_other_schemes() {
        assert_eq!(
            parse_str("GET / HTTP/1.1\r\n\r\n"),
            Err(BadRequest::OriginForm)
        );
        assert_eq!(
            parse_str("OPTIONS * HTTP/1.1\r\n\r\n"),
            Err(BadRequest::OriginForm)
        );
        for scheme in ["https", "ftp", "file", "gopher", "ws"] {
            let head = format!("GET {scheme}://example.com/ HTTP/1.1\r\n\r\n");
            assert_eq!(parse_str(&head), Err(BadRequest::Scheme), "{head:?}");
        }
        assert_eq!(
            parse_str("GET example.com/ HTTP/1.1\r\n\r\n"),
            Err(BadRequest::RequestLine)
        );
    }

    #[test]
    fn refuses_bad_authorities() {
        for (head, why) in [
            (
                "GET http://user:pw@example.com/ HTTP/1.1\r\n\r\n",
                "user information",
            ),
            (
                "GET http://example.com@127.0.0.1/ HTTP/1.1\r\n\r\n",
                "user information",
            ),
            ("GET http:///path HTTP/1.1\r\n\r\n", "empty"),
            ("GET http://example.com:99999/ HTTP/1.1\r\n\r\n", "port"),
            ("GET http://example.com:-1/ HTTP/1.1\r\n\r\n", "port"),
            ("GET http://[::1/ HTTP/1.1\r\n\r\n", "unclosed"),
        ] {
            match parse_str(head) {
                Err(BadRequest::Authority(msg)) => assert!(msg.contains(why), "{head:?}: {msg}"),
                other => panic!("{head:?}: {other:?}"),
            }
        }
        assert_eq!(
            parse_str("GET http://example.com/#frag HTTP/1.1\r\n\r\n"),
            Err(BadRequest::RequestLine)
        );
    }

    #[test]
    fn refuses_malformed_request_lines() {
        for head in [
            "\r\n\r\n",
            "GARBAGE\r\n\r\n",
            "GET\r\n\r\n",
            "GET http://a/ HTTP/1.1 extra\r\n\r\n",
            "GET  http://a/ HTTP/1.1\r\n\r\n",
            "G(T http://a/ HTTP/1.1\r\n\r\n",
            "GET http://a/\x7f HTTP/1.1\r\n\r\n",
            " GET http://a/ HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse_str(head), Err(BadRequest::RequestLine), "{head:?}");
        }
        for head in [
            "GET http://a/ HTTP/2\r\n\r\n",
            "GET http://a/ HTTP/1.1x\r\n\r\n",
            "GET http://a/ http/1.1\r\n\r\n",
        ] {
            assert_eq!(parse_str(head), Err(BadRequest::Version), "{head:?}");
        }
        assert_eq!(
            parse(b"GET http://a/ HTTP/1.1\r\n\xff\r\n\r\n"),
            Err(BadRequest::NotText)
        );
        assert_eq!(
            parse("GET http://\u{430}/ HTTP/1.1\r\n\r\n".as_bytes()),
            Err(BadRequest::NotText)
        );
    }

    #[test]
    fn refuses_malformed_headers() {
        for (head, err) in [
            (
                "GET http://a/ HTTP/1.1\r\nNoColon\r\n\r\n",
                BadRequest::Header,
            ),
            ("GET http://a/ HTTP/1.1\r\n: v\r\n\r\n", BadRequest::Header),
            (
                "GET http://a/ HTTP/1.1\r\nBad Name: v\r\n\r\n",
                BadRequest::Header,
            ),
            (
                "GET http://a/ HTTP/1.1\r\nX: a\rb\r\n\r\n",
                BadRequest::Header,
            ),
            (
                "GET http://a/ HTTP/1.1\r\nX: a\0b\r\n\r\n",
                BadRequest::Header,
            ),
            (
                "GET http://a/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
                BadRequest::ObsFold,
            ),
            (
                "GET http://a/ HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n",
                BadRequest::ObsFold,
            ),
        ] {
            assert_eq!(parse_str(head), Err(err), "{head:?}");
        }
        let many = format!("GET http://a/ HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(101));
        assert_eq!(parse_str(&many), Err(BadRequest::TooManyHeaders));
        let ok = format!("GET http://a/ HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(100));
        assert!(parse_str(&ok).is_ok());
    }

    #[test]
    fn injected_headers_cannot_smuggle_lines() {
        // A bare CR inside a value would end the line for some origins.
        assert_eq!(
            parse_str("GET http://a/ HTTP/1.1\r\nX: a\rHost: b\r\n\r\n"),
            Err(BadRequest::Header)
        );
        // The request target cannot carry CR or LF: it ends at the first space.
        assert_eq!(
            parse_str("GET http://a/\rX HTTP/1.1\r\n\r\n"),
            Err(BadRequest::RequestLine)
        );
    }

    #[test]
    fn one_line_escapes_control_characters() {
        assert_eq!(one_line("a\nb"), "a b");
        assert_eq!(one_line("a\rb"), "a\\rb");
        assert_eq!(one_line("a\u{1b}[31m"), "a\\u{1b}[31m");
    }
}
