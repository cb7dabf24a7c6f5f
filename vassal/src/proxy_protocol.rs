//! The PROXY protocol header (HAProxy's spec, versions 1 and 2) that a load balancer
//! puts before the HTTP request to say who the client is: `enable-proxy-protocol` /
//! `http-enable-proxy-protocol`. Pure: [`parse`] reads a header from the first bytes
//! of a connection.
//!
//! As in uWSGI (`core/protocol.c` `proxy1_parse`), the header is optional: a
//! connection that does not start with one is served as it is, with the peer's own
//! address. Unlike uWSGI, which reads only version 1 and skips a malformed line,
//! rsgi reads version 2 too, and a header that starts like one but is malformed closes
//! the connection (its client may not be trusted to have said who it is).
//!
//! - v1: `PROXY TCP4 SRC DST SPORT DPORT\r\n` (or `TCP6`), at most 107 bytes;
//!   `PROXY UNKNOWN ...\r\n` keeps the peer's address.
//! - v2: the 12-byte signature, version/command, family, a 16-bit length, then the
//!   addresses; `LOCAL` and families other than TCP/UDP over IPv4/IPv6 keep the peer's
//!   address; TLVs after the addresses are skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The v2 signature.
const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included.
const V1_MAX: usize = 107;

/// What the first bytes of a connection hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// No PROXY header: serve the bytes as they are.
    Absent,
    /// The start of a header: read more.
    Incomplete,
    /// A header of `len` bytes; the client's address and port, if it gave one.
    Header {
        /// Bytes to skip.
        len: usize,
        /// The source address and port.
        source: Option<(IpAddr, u16)>,
    },
    /// A malformed header: close the connection.
    Invalid(&'static str),
}

/// Read a PROXY header from the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let v1 = b"PROXY ";
    if buf.len() < v1.len() {
        if v1.starts_with(buf) || V2_SIG.starts_with(buf) {
            return Parsed::Incomplete;
        }
        return Parsed::Absent;
    }
    if buf.starts_with(v1) {
        return parse_v1(buf);
    }
    if buf.len() < V2_SIG.len() {
        return if V2_SIG.starts_with(buf) {
            Parsed::Incomplete
        } else {
            Parsed::Absent
        };
    }
    if buf.starts_with(V2_SIG) {
        return parse_v2(buf);
    }
    Parsed::Absent
}

fn parse_v1(buf: &[u8]) -> Parsed {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Parsed::Invalid("PROXY v1 line too long")
        } else {
            Parsed::Incomplete
        };
    };
    let len = end + 2;
    if len > V1_MAX {
        return Parsed::Invalid("PROXY v1 line too long");
    }
    let Ok(line) = std::str::from_utf8(&buf[..end]) else {
        return Parsed::Invalid("PROXY v1 line is not text");
    };
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Parsed::Header { len, source: None },
        ["PROXY", family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let v6 = *family == "TCP6";
            let addr = |s: &str| -> Option<IpAddr> {
                if v6 {
                    s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
                } else {
                    s.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
                }
            };
            // Ports are decimal without a sign or leading zeros (beyond "0").
            let port = |s: &str| -> Option<u16> {
                if s.is_empty() || (s.len() > 1 && s.starts_with('0')) {
                    return None;
                }
                if !s.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                s.parse().ok()
            };
            match (addr(src), addr(dst), port(sport), port(dport)) {
                (Some(src), Some(_), Some(sport), Some(_)) => Parsed::Header {
                    len,
                    source: Some((src, sport)),
                },
                _ => Parsed::Invalid("PROXY v1 addresses or ports are malformed"),
            }
        }
        _ => Parsed::Invalid("PROXY v1 line is malformed"),
    }
}

fn parse_v2(buf: &[u8]) -> Parsed {
    if buf.len() < 16 {
        return Parsed::Incomplete;
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Parsed::Invalid("PROXY v2 version is not 2");
    }
    let command = ver_cmd & 0x0f;
    if command > 1 {
        return Parsed::Invalid("PROXY v2 command is neither LOCAL nor PROXY");
    }
    let family = buf[13];
    let body = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body;
    if buf.len() < len {
        return Parsed::Incomplete;
    }
    let a = &buf[16..len];
    if command == 0 {
        // LOCAL: the proxy's own connection (a health check): keep the peer's address.
        return Parsed::Header { len, source: None };
    }
    let source = match family >> 4 {
        // AF_INET
        1 => {
            if a.len() < 12 {
                return Parsed::Invalid("PROXY v2 IPv4 addresses are cut short");
            }
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some((IpAddr::V4(ip), u16::from_be_bytes([a[8], a[9]])))
        }
        // AF_INET6
        2 => {
            if a.len() < 36 {
                return Parsed::Invalid("PROXY v2 IPv6 addresses are cut short");
            }
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            Some((
                IpAddr::V6(Ipv6Addr::from(octets)),
                u16::from_be_bytes([a[32], a[33]]),
            ))
        }
        // AF_UNSPEC, AF_UNIX: nothing to say about the client
        0 | 3 => None,
        _ => return Parsed::Invalid("PROXY v2 address family is unknown"),
    };
    Parsed::Header { len, source }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn v2(ver_cmd: u8, family: u8, addrs: &[u8]) -> Vec<u8> {
        let mut out = V2_SIG.to_vec();
        out.push(ver_cmd);
        out.push(family);
        out.extend_from_slice(&u16::try_from(addrs.len()).unwrap().to_be_bytes());
        out.extend_from_slice(addrs);
        out
    }

    #[test]
    fn parse_table() {
        let ip4 = |s: &str, p: u16| Some((IpAddr::V4(s.parse().unwrap()), p));
        let mut v4 = vec![203, 0, 113, 9, 10, 0, 0, 1];
        v4.extend_from_slice(&4321u16.to_be_bytes());
        v4.extend_from_slice(&80u16.to_be_bytes());
        let mut v6 = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0x10, 0xe1, 0, 80]);
        let mut v4_tlv = v4.clone();
        v4_tlv.extend_from_slice(&[0x04, 0, 1, 7]);
        let line = b"PROXY TCP4 203.0.113.9 10.0.0.1 4321 80\r\nGET / HTTP/1.1\r\n".to_vec();
        let cases: Vec<(Vec<u8>, Parsed)> = vec![
            (b"GET / HTTP/1.1\r\n".to_vec(), Parsed::Absent),
            (b"".to_vec(), Parsed::Incomplete),
            (b"PRO".to_vec(), Parsed::Incomplete),
            (b"PROXY TCP4 1.2".to_vec(), Parsed::Incomplete),
            (b"\r\n\r\n\0".to_vec(), Parsed::Incomplete),
            (b"\r\nGET".to_vec(), Parsed::Absent),
            (
                line,
                Parsed::Header {
                    len: 41,
                    source: ip4("203.0.113.9", 4321),
                },
            ),
            (
                b"PROXY TCP6 2001:db8::1 ::1 4321 443\r\n".to_vec(),
                Parsed::Header {
                    len: 37,
                    source: Some((IpAddr::V6("2001:db8::1".parse().unwrap()), 4321)),
                },
            ),
            (
                b"PROXY UNKNOWN\r\n".to_vec(),
                Parsed::Header {
                    len: 15,
                    source: None,
                },
            ),
            (
                b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n".to_vec(),
                Parsed::Header {
                    len: 35,
                    source: None,
                },
            ),
            (
                b"PROXY TCP4 999.0.0.1 10.0.0.1 1 2\r\n".to_vec(),
                Parsed::Invalid("PROXY v1 addresses or ports are malformed"),
            ),
            (
                b"PROXY TCP4 1.2.3.4 10.0.0.1 65536 2\r\n".to_vec(),
                Parsed::Invalid("PROXY v1 addresses or ports are malformed"),
            ),
            (
                b"PROXY TCP4 ::1 ::1 1 2\r\n".to_vec(),
                Parsed::Invalid("PROXY v1 addresses or ports are malformed"),
            ),
            (
                b"PROXY TCP4 1.2.3.4\r\n".to_vec(),
                Parsed::Invalid("PROXY v1 line is malformed"),
            ),
            (
                [b"PROXY ".as_slice(), &[b'x'; 120]].concat(),
                Parsed::Invalid("PROXY v1 line too long"),
            ),
            (
                v2(0x21, 0x11, &v4),
                Parsed::Header {
                    len: 28,
                    source: ip4("203.0.113.9", 4321),
                },
            ),
            (
                v2(0x21, 0x11, &v4_tlv),
                Parsed::Header {
                    len: 32,
                    source: ip4("203.0.113.9", 4321),
                },
            ),
            (
                v2(0x21, 0x21, &v6),
                Parsed::Header {
                    len: 52,
                    source: Some((IpAddr::V6("2001:db8::1".parse().unwrap()), 4321)),
                },
            ),
            (
                v2(0x20, 0x11, &v4),
                Parsed::Header {
                    len: 28,
                    source: None,
                },
            ),
            (
                v2(0x21, 0x00, &[]),
                Parsed::Header {
                    len: 16,
                    source: None,
                },
            ),
            (v2(0x21, 0x11, &v4)[..20].to_vec(), Parsed::Incomplete),
            (
                v2(0x11, 0x11, &v4),
                Parsed::Invalid("PROXY v2 version is not 2"),
            ),
            (
                v2(0x22, 0x11, &v4),
                Parsed::Invalid("PROXY v2 command is neither LOCAL nor PROXY"),
            ),
            (
                v2(0x21, 0x11, &v4[..6]),
                Parsed::Invalid("PROXY v2 IPv4 addresses are cut short"),
            ),
            (
                v2(0x21, 0x51, &v4),
                Parsed::Invalid("PROXY v2 address family is unknown"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(&input), want, "{:?}", String::from_utf8_lossy(&input));
        }
    }
}
