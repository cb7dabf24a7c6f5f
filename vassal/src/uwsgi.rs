//! The uwsgi packet codec: what nginx's `uwsgi_pass` sends us.
//!
//! A request starts with a packet head, followed on the same stream by the request body
//! (`CONTENT_LENGTH` bytes):
//!
//! ```text
//! u8 modifier1 | u16 LE datasize | u8 modifier2 | vars[datasize] | body...
//! vars := repeat { u16 LE key_len | key | u16 LE val_len | val }
//! ```
//!
//! Parsing is split in two, like mini-redis frames: [`check`] looks only at lengths and
//! says whether the buffer holds a whole head yet ([`Error::Incomplete`] is "read more",
//! not a failure) and rejects oversized heads as soon as the 4-byte header is in; then
//! [`parse_vars`] walks the complete head and hands out the keys and values as
//! zero-copy [`Bytes`] slices of it. Both are pure: no I/O, no clock.
//!
//! [`encode`] builds packets, for tests and the bench/test clients.

use bytes::Bytes;

/// Length of the fixed packet header (modifier1, datasize, modifier2).
pub const HEADER_LEN: usize = 4;

/// The fixed 4-byte header of a uwsgi packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Selects the request handler; 0 is WSGI (nginx's default), 30 is WSGI with
    /// `SCRIPT_NAME` stripped from `PATH_INFO`.
    pub modifier1: u8,
    /// Length of the vars block that follows the header.
    pub datasize: u16,
    /// Sub-selector of `modifier1`; 0 for WSGI requests.
    pub modifier2: u8,
}

impl Header {
    /// Decodes the header from the first [`HEADER_LEN`] bytes.
    fn from_bytes(b: [u8; HEADER_LEN]) -> Header {
        Header {
            modifier1: b[0],
            datasize: u16::from_le_bytes([b[1], b[2]]),
            modifier2: b[3],
        }
    }
}

/// Why a packet head cannot be used (yet).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// More bytes are needed; not a failure.
    #[error("incomplete uwsgi packet")]
    Incomplete,
    /// The vars block is larger than `buffer-size`.
    #[error("uwsgi vars block of {size} bytes is larger than buffer-size {limit}")]
    TooLarge {
        /// The packet's datasize.
        size: usize,
        /// The configured buffer-size.
        limit: usize,
    },
    /// An inconsistent packet: a key or value length running past the vars block, etc.
    #[error("malformed uwsgi packet: {0}")]
    Malformed(&'static str),
}

/// Checks whether `buf` starts with a complete packet head (header + vars).
///
/// Returns the header and the head's total length (`HEADER_LEN + datasize`); the body, if
/// any, starts right after it. [`Error::Incomplete`] means not enough bytes yet;
/// [`Error::TooLarge`] comes as soon as the 4-byte header shows `datasize > limit`
/// (`limit` is `buffer-size`), so an oversized head is never buffered.
pub fn check(buf: &[u8], limit: usize) -> Result<(Header, usize), Error> {
    let Some(&[m1, lo, hi, m2]) = buf.first_chunk::<HEADER_LEN>() else {
        return Err(Error::Incomplete);
    };
    let header = Header::from_bytes([m1, lo, hi, m2]);
    let size = usize::from(header.datasize);
    if size > limit {
        return Err(Error::TooLarge { size, limit });
    }
    let total = HEADER_LEN + size;
    if buf.len() < total {
        return Err(Error::Incomplete);
    }
    Ok((header, total))
}

/// Parses the vars of a complete head (as returned by [`check`]), zero-copy: keys and
/// values are [`Bytes`] slices of `head`.
///
/// `head` must hold at least `HEADER_LEN + header.datasize` bytes; anything after the vars
/// block (the start of the body) is ignored. Any inconsistency (a truncated length, a key
/// or value running past the block) is [`Error::Malformed`]. Empty keys and values are
/// allowed, as in uWSGI; duplicate keys are returned as they come.
pub fn parse_vars(head: &Bytes, header: Header) -> Result<Vec<(Bytes, Bytes)>, Error> {
    let end = HEADER_LEN + usize::from(header.datasize);
    let Some(block) = head.get(HEADER_LEN..end) else {
        return Err(Error::Malformed("head shorter than datasize"));
    };
    // nginx sends ~15 uwsgi_params plus one var per header; a var costs at least 4
    // bytes, and a typical one 20-40, so this avoids regrowing in the common case
    // without over-allocating for tiny packets.
    let mut vars = Vec::with_capacity((block.len() / 24).clamp(4, 64));
    let mut pos = 0;
    while pos < block.len() {
        let (key, next) = field(block, pos, "key length truncated", "key runs past the vars")?;
        let (val, next) = field(
            block,
            next,
            "value length truncated",
            "value runs past the vars",
        )?;
        vars.push((
            head.slice(HEADER_LEN + key.0..HEADER_LEN + key.1),
            head.slice(HEADER_LEN + val.0..HEADER_LEN + val.1),
        ));
        pos = next;
    }
    Ok(vars)
}

/// Reads one `u16 LE len | bytes` field at `pos` in `block`: returns the byte range of
/// the field's contents and the position after it.
fn field(
    block: &[u8],
    pos: usize,
    short_len: &'static str,
    short_data: &'static str,
) -> Result<((usize, usize), usize), Error> {
    let len = match block.get(pos..pos + 2) {
        Some(&[lo, hi]) => usize::from(u16::from_le_bytes([lo, hi])),
        _ => return Err(Error::Malformed(short_len)),
    };
    let start = pos + 2;
    let end = start + len;
    if end > block.len() {
        return Err(Error::Malformed(short_data));
    }
    Ok(((start, end), end))
}

/// Encodes a packet head: the 4-byte header and the vars (for tests and the
/// bench/test clients; the server only reads packets).
///
/// # Panics
///
/// If a key or value is longer than 65535 bytes or the vars block exceeds 65535 bytes,
/// which the format cannot express.
pub fn encode(modifier1: u8, modifier2: u8, vars: &[(&[u8], &[u8])]) -> Vec<u8> {
    let size: usize = vars.iter().map(|(k, v)| 4 + k.len() + v.len()).sum();
    let datasize = u16::try_from(size).expect("uwsgi vars block must fit in 65535 bytes");
    let mut out = Vec::with_capacity(HEADER_LEN + size);
    out.push(modifier1);
    out.extend_from_slice(&datasize.to_le_bytes());
    out.push(modifier2);
    for (k, v) in vars {
        for part in [k, v] {
            // Cannot fail once the block fits, but say so rather than truncate.
            let len = u16::try_from(part.len()).expect("uwsgi key/value must fit in 65535 bytes");
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// What nginx sends for `GET /hello?name=x` with `include uwsgi_params;`: the params
    /// in file order (empty CONTENT_TYPE/CONTENT_LENGTH included), then the headers.
    const NGINX_VARS: &[(&[u8], &[u8])] = &[
        (b"QUERY_STRING", b"name=x"),
        (b"REQUEST_METHOD", b"GET"),
        (b"CONTENT_TYPE", b""),
        (b"CONTENT_LENGTH", b""),
        (b"REQUEST_URI", b"/hello?name=x"),
        (b"PATH_INFO", b"/hello"),
        (b"DOCUMENT_ROOT", b"/usr/share/nginx/html"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REQUEST_SCHEME", b"http"),
        (b"REMOTE_ADDR", b"127.0.0.1"),
        (b"REMOTE_PORT", b"51234"),
        (b"SERVER_PORT", b"80"),
        (b"SERVER_NAME", b"localhost"),
        (b"HTTP_HOST", b"localhost"),
        (b"HTTP_USER_AGENT", b"curl/8.5.0"),
        (b"HTTP_ACCEPT", b"*/*"),
    ];

    /// A small packet written out by hand, byte by byte.
    const GOLDEN: &[u8] = &[
        0, 26, 0, 0, // modifier1 0, datasize 26, modifier2 0
        14, 0, b'R', b'E', b'Q', b'U', b'E', b'S', b'T', b'_', b'M', b'E', b'T', b'H', b'O', b'D',
        3, 0, b'G', b'E', b'T', //
        1, 0, b'X', //
        0, 0, // empty value
    ];

    fn nginx_packet() -> Vec<u8> {
        encode(0, 0, NGINX_VARS)
    }

    fn owned(vars: &[(Bytes, Bytes)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        vars.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
    }

    fn expected(vars: &[(&[u8], &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
        vars.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
    }

    #[test]
    fn golden_encode() {
        assert_eq!(
            encode(0, 0, &[(b"REQUEST_METHOD", b"GET"), (b"X", b"")]),
            GOLDEN
        );
    }

    #[test]
    fn golden_parse() {
        let (header, total) = check(GOLDEN, 4096).unwrap();
        assert_eq!(
            header,
            Header {
                modifier1: 0,
                datasize: 26,
                modifier2: 0
            }
        );
        assert_eq!(total, GOLDEN.len());
        let vars = parse_vars(&Bytes::from_static(GOLDEN), header).unwrap();
        assert_eq!(
            owned(&vars),
            expected(&[(b"REQUEST_METHOD", b"GET"), (b"X", b"")])
        );
    }

    #[test]
    fn nginx_packet_header_bytes() {
        let p = nginx_packet();
        let size = p.len() - HEADER_LEN;
        assert_eq!(p[0], 0);
        assert_eq!(u16::from_le_bytes([p[1], p[2]]) as usize, size);
        assert_eq!(p[3], 0);
        // First var: QUERY_STRING (len 12) = name=x (len 6).
        assert_eq!(&p[4..6], &[12, 0]);
        assert_eq!(&p[6..18], b"QUERY_STRING");
        assert_eq!(&p[18..20], &[6, 0]);
        assert_eq!(&p[20..26], b"name=x");
    }

    /// Every strict prefix is Incomplete; the whole head parses to the same vars whatever
    /// bytes of the body follow.
    #[test]
    fn every_split_offset() {
        let head = nginx_packet();
        let mut stream = head.clone();
        stream.extend_from_slice(b"body bytes");
        for cut in 0..head.len() {
            assert_eq!(
                check(&stream[..cut], 65535),
                Err(Error::Incomplete),
                "cut {cut}"
            );
        }
        for cut in head.len()..=stream.len() {
            let (header, total) = check(&stream[..cut], 65535).unwrap();
            assert_eq!(total, head.len(), "cut {cut}");
            let buf = Bytes::copy_from_slice(&stream[..cut]);
            let vars = parse_vars(&buf, header).unwrap();
            assert_eq!(owned(&vars), expected(NGINX_VARS), "cut {cut}");
        }
    }

    #[test]
    fn too_large() {
        let head = nginx_packet();
        let size = head.len() - HEADER_LEN;
        // Reported from the 4-byte header alone, before the vars arrive.
        assert_eq!(
            check(&head[..HEADER_LEN], size - 1),
            Err(Error::TooLarge {
                size,
                limit: size - 1
            })
        );
        assert_eq!(check(&head, size).map(|(_, t)| t), Ok(head.len()));
        assert_eq!(
            check(&[0, 0xff, 0xff, 0], 4096),
            Err(Error::TooLarge {
                size: 65535,
                limit: 4096
            })
        );
    }

    #[test]
    fn malformed() {
        #[rustfmt::skip]
        let cases: &[(&str, &[u8], &str)] = &[
            ("key length past end", &[0, 5, 0, 0, 9, 0, b'A', b'B', b'C'], "key runs past the vars"),
            ("value length past end", &[0, 7, 0, 0, 1, 0, b'A', 9, 0, b'x', b'y'], "value runs past the vars"),
            ("trailing single byte", &[0, 7, 0, 0, 1, 0, b'A', 1, 0, b'x', 7], "key length truncated"),
            ("key without value length", &[0, 3, 0, 0, 1, 0, b'A'], "value length truncated"),
            ("value length cut in half", &[0, 4, 0, 0, 1, 0, b'A', 1], "value length truncated"),
        ];
        for (name, packet, why) in cases {
            let (header, total) = check(packet, 4096).unwrap();
            assert_eq!(total, packet.len(), "{name}");
            let err = parse_vars(&Bytes::copy_from_slice(packet), header).unwrap_err();
            assert_eq!(err, Error::Malformed(why), "{name}");
        }
    }

    #[test]
    fn head_shorter_than_header_says() {
        let header = Header {
            modifier1: 0,
            datasize: 10,
            modifier2: 0,
        };
        let err = parse_vars(&Bytes::from_static(&[0, 10, 0, 0, 1]), header).unwrap_err();
        assert_eq!(err, Error::Malformed("head shorter than datasize"));
    }

    #[test]
    fn empty_vars() {
        let p = encode(0, 0, &[]);
        assert_eq!(p, [0, 0, 0, 0]);
        let (header, total) = check(&p, 0).unwrap();
        assert_eq!(total, HEADER_LEN);
        assert!(parse_vars(&Bytes::from(p), header).unwrap().is_empty());
    }

    #[test]
    fn modifiers_round_trip() {
        let p = encode(30, 7, &[(b"SCRIPT_NAME", b"/app")]);
        let (header, _) = check(&p, 4096).unwrap();
        assert_eq!((header.modifier1, header.modifier2), (30, 7));
    }

    #[test]
    fn round_trip_binary_and_large() {
        let big = vec![0xE9u8; 60_000];
        let cases: Vec<Vec<(&[u8], &[u8])>> = vec![
            vec![(b"", b"")],
            vec![(b"K", &[0, 1, 2, 0xff]), (b"K", b"dup")],
            vec![(b"BIG", &big)],
            NGINX_VARS.to_vec(),
        ];
        for vars in cases {
            let p = encode(0, 0, &vars);
            let (header, total) = check(&p, 65535).unwrap();
            assert_eq!(total, p.len());
            let parsed = parse_vars(&Bytes::from(p), header).unwrap();
            assert_eq!(owned(&parsed), expected(&vars));
        }
    }

    #[test]
    fn parsed_vars_share_the_buffer() {
        let buf = Bytes::from(nginx_packet());
        let (header, _) = check(&buf, 4096).unwrap();
        let vars = parse_vars(&buf, header).unwrap();
        let range = buf.as_ptr_range();
        for (k, v) in &vars {
            assert!(range.contains(&k.as_ptr()));
            assert!(v.is_empty() || range.contains(&v.as_ptr()));
        }
    }

    #[test]
    #[should_panic(expected = "65535")]
    fn encode_refuses_oversized() {
        let big = vec![b'x'; 70_000];
        encode(0, 0, &[(b"K", &big)]);
    }
}
