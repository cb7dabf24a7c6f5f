//! `log-encoder` and `log-req-encoder`: uWSGI's log encoder chains (`core/logging.c`:
//! `uwsgi_setup_log_encoders`, `uwsgi_log_func_do`, `uwsgi_log_encoder_parse_vars` and
//! the `uwsgi_log_encoder_*` functions), as pure functions: [`parse`] reads one value,
//! [`encode`] runs a chain over one message. The clock is injected ([`Clock`]), so the
//! rules are table tests.
//!
//! # The rules, as uWSGI's
//!
//! - A value is `NAME[:ID][ ARGS]`: up to the first space the encoder's name (and, after
//!   a `:`, the id of the logger it is for); after the space its arguments.
//! - The encoders of a chain run in the order given, each on what the one before made,
//!   once per message. A message is one log line as it was written, **with its
//!   newline**.
//! - `prefix ARGS` / `suffix ARGS`: ARGS before / after the message, as written (no
//!   `${...}`). `suffix` comes after the message's newline.
//! - `nl`: a newline after the message.
//! - `format TEMPLATE` / `json TEMPLATE`: the template, with `${msg}` (the message
//!   without its final newline), `${msgnl}` (the message as it is), `${unix}`,
//!   `${millis}`, `${micros}` (now, since the epoch) and `${strftime:FMT}` (now, local
//!   time; nothing when the result takes 64 bytes or more). `json` escapes what `msg`,
//!   `msgnl` and `strftime` give for a JSON string. Another `${name}` gives nothing.
//!   The template's output has **no newline** (unless the template ends with
//!   `${msgnl}`): that is why uWSGI configs follow it with `log-encoder = nl`, and a
//!   config without it writes its lines back to back, in uWSGI and here.
//! - `:ID`: the encoder is used only for the logger named ID (`logger = ID file:...`),
//!   which only `log-route` writes to. rsgi has neither named loggers nor `log-route`,
//!   so such an encoder is never used, exactly as in uWSGI when no logger has that name;
//!   [`parse`] returns a note saying so.
//!
//! # Where rsgi differs (on purpose)
//!
//! - `json` writes the other control characters (below 0x20) as `\u00XX`; uWSGI escapes
//!   only tab, newline, carriage return, `"` and `\`, and writes the others raw, which
//!   is not JSON (a NUL ends its string early).
//! - A `$` not followed by `{`, and an unclosed `${name`, are literal text. uWSGI's
//!   scanner loses or garbles the text around them (it counts the `$` into a piece it
//!   never started).
//! - `gzip` and `compress` (binary frames for a log master to ship) and plugin encoders
//!   (`msgpack`, ...) are refused with what to use instead.

use std::io::Write as _;

/// One encoder of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoder {
    /// What it does.
    pub op: Op,
    /// `NAME:ID`: the logger it is for. rsgi has no named loggers: such an encoder is
    /// never used (see the module doc).
    pub logger_id: Option<String>,
}

/// What an encoder does to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `prefix ARGS`.
    Prefix(String),
    /// `suffix ARGS`.
    Suffix(String),
    /// `nl`.
    Nl,
    /// `format TEMPLATE`.
    Format(Vec<Piece>),
    /// `json TEMPLATE`: values JSON-escaped.
    Json(Vec<Piece>),
}

/// One piece of a `format`/`json` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// `${msg}`: the message without its final newline.
    Msg,
    /// `${msgnl}`: the message as it is.
    MsgNl,
    /// `${unix}`: seconds since the epoch.
    Unix,
    /// `${millis}`: milliseconds since the epoch.
    Millis,
    /// `${micros}`: microseconds since the epoch.
    Micros,
    /// `${strftime:FMT}`: now in local time, formatted.
    Strftime(String),
}

/// What the encoders need to know about now.
pub trait Clock {
    /// Seconds since the epoch.
    fn unix(&self) -> i64;
    /// Milliseconds since the epoch.
    fn millis(&self) -> i64;
    /// Microseconds since the epoch.
    fn micros(&self) -> i64;
    /// Append now, in local time, formatted by strftime `format` (nothing on failure).
    fn strftime(&self, format: &str, out: &mut Vec<u8>);
}

/// uWSGI formats `${strftime:...}` into a 64-byte buffer: a result that does not fit
/// (with its NUL) gives nothing.
const STRFTIME_MAX: usize = 63;

/// The encoders rsgi has, for error messages.
const SUPPORTED: &str = "prefix, suffix, nl, format or json";

/// Read one `log-encoder`/`log-req-encoder` value. Returns the encoder and notes worth
/// telling (an encoder for a named logger, which is never used; `${name}`s that are no
/// variable; arguments `nl` ignores). The error says what is wrong and what to use.
pub fn parse(value: &str) -> Result<(Encoder, Vec<String>), String> {
    let (head, args) = value.split_once(' ').unwrap_or((value, ""));
    let (name, logger_id) = match head.split_once(':') {
        Some((n, id)) => (n, Some(id.to_owned())),
        None => (head, None),
    };
    let mut notes = Vec::new();
    let op = match name {
        "prefix" => Op::Prefix(args.to_owned()),
        "suffix" => Op::Suffix(args.to_owned()),
        "nl" => {
            if !args.is_empty() {
                notes.push(format!(
                    "nl takes no arguments: '{args}' is ignored (as uWSGI)"
                ));
            }
            Op::Nl
        }
        "format" | "json" => {
            let (pieces, unknown) = template(args);
            for name in unknown {
                notes.push(format!(
                    "${{{name}}} is no encoder variable (msg, msgnl, unix, millis, micros, \
                     strftime:FMT): it writes nothing, as in uWSGI"
                ));
            }
            if name == "json" {
                Op::Json(pieces)
            } else {
                Op::Format(pieces)
            }
        }
        "" => return Err(format!("'{value}': no encoder named: use {SUPPORTED}")),
        "gzip" | "compress" => {
            return Err(format!(
                "the {name} encoder is not supported by rsgi: it turns each line into a \
                 binary frame for uWSGI's log master to ship; rsgi writes text lines \
                 (compress rotated files instead, or in your log shipper): use {SUPPORTED}"
            ))
        }
        "msgpack" => {
            return Err(format!(
                "the msgpack encoder (a uWSGI plugin) is not supported by rsgi: use json \
                 (or {SUPPORTED})"
            ))
        }
        other => {
            return Err(format!(
                "rsgi has no log encoder '{other}': use {SUPPORTED}"
            ))
        }
    };
    if let Some(id) = &logger_id {
        notes.push(format!(
            "':{id}' makes this encoder only for the logger named '{id}', which only \
             log-route writes to; rsgi has no named loggers, so it is never used (as in \
             uWSGI when no logger has that name)"
        ));
    }
    Ok((Encoder { op, logger_id }, notes))
}

/// Add the encoder `value` names to `chain` (the option table's setter); the note, if
/// any, becomes a notice.
pub fn add(chain: &mut Vec<Encoder>, value: &str) -> Result<Option<String>, String> {
    let (encoder, notes) = parse(value)?;
    chain.push(encoder);
    Ok((!notes.is_empty()).then(|| notes.join("; ")))
}

/// The encoders of `chain` that rsgi uses: those for no particular logger.
pub fn used(chain: &[Encoder]) -> Vec<Encoder> {
    chain
        .iter()
        .filter(|e| e.logger_id.is_none())
        .cloned()
        .collect()
}

/// Split a `format`/`json` template into pieces; also returns the `${name}`s that are no
/// variable (dropped).
fn template(args: &str) -> (Vec<Piece>, Vec<String>) {
    let mut pieces = Vec::new();
    let mut unknown = Vec::new();
    let mut text = String::new();
    let mut rest = args;
    while let Some(at) = rest.find("${") {
        let Some(len) = rest[at + 2..].find('}') else {
            break;
        };
        text.push_str(&rest[..at]);
        let name = &rest[at + 2..at + 2 + len];
        rest = &rest[at + 2 + len + 1..];
        let piece = match name {
            "msg" => Piece::Msg,
            "msgnl" => Piece::MsgNl,
            "unix" => Piece::Unix,
            "millis" => Piece::Millis,
            "micros" => Piece::Micros,
            _ => match name.strip_prefix("strftime:") {
                Some(format) => Piece::Strftime(format.to_owned()),
                None => {
                    unknown.push(name.to_owned());
                    continue;
                }
            },
        };
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(piece);
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    (pieces, unknown)
}

/// Run `chain` (what [`used`] kept: it is chosen once, not per message) over one
/// message, in order; append the result to `out`. With no encoder the message goes out
/// as it is.
pub fn encode(chain: &[Encoder], msg: &[u8], clock: &dyn Clock, out: &mut Vec<u8>) {
    let mut current = msg.to_vec();
    for encoder in chain {
        let mut next = Vec::with_capacity(current.len() + 64);
        match &encoder.op {
            Op::Prefix(p) => {
                next.extend_from_slice(p.as_bytes());
                next.extend_from_slice(&current);
            }
            Op::Suffix(s) => {
                next.extend_from_slice(&current);
                next.extend_from_slice(s.as_bytes());
            }
            Op::Nl => {
                next.extend_from_slice(&current);
                next.push(b'\n');
            }
            Op::Format(pieces) => render(pieces, &current, clock, false, &mut next),
            Op::Json(pieces) => render(pieces, &current, clock, true, &mut next),
        }
        current = next;
    }
    out.extend_from_slice(&current);
}

/// One `format`/`json` template over `msg`.
fn render(pieces: &[Piece], msg: &[u8], clock: &dyn Clock, json: bool, out: &mut Vec<u8>) {
    let push = |out: &mut Vec<u8>, bytes: &[u8]| {
        if json {
            push_json(out, bytes);
        } else {
            out.extend_from_slice(bytes);
        }
    };
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
            Piece::Msg => push(out, msg.strip_suffix(b"\n").unwrap_or(msg)),
            Piece::MsgNl => push(out, msg),
            // Writing into a Vec cannot fail.
            Piece::Unix => {
                let _ = write!(out, "{}", clock.unix());
            }
            Piece::Millis => {
                let _ = write!(out, "{}", clock.millis());
            }
            Piece::Micros => {
                let _ = write!(out, "{}", clock.micros());
            }
            Piece::Strftime(format) => {
                let mut date = Vec::new();
                clock.strftime(format, &mut date);
                if date.len() <= STRFTIME_MAX {
                    push(out, &date);
                }
            }
        }
    }
}

/// Append `bytes` escaped for a JSON string: uWSGI's five escapes (tab, newline,
/// carriage return, `"`, `\`), and `\u00XX` for the other control characters.
fn push_json(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        match b {
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A fixed clock: 1700000000.123456 s; strftime gives `[FORMAT]`, or 70 bytes for
    /// the format `long` (too long for uWSGI's buffer).
    struct Fixed;

    impl Clock for Fixed {
        fn unix(&self) -> i64 {
            1_700_000_000
        }
        fn millis(&self) -> i64 {
            1_700_000_000_123
        }
        fn micros(&self) -> i64 {
            1_700_000_000_123_456
        }
        fn strftime(&self, format: &str, out: &mut Vec<u8>) {
            if format == "long" {
                out.extend_from_slice(&[b'x'; 70]);
            } else {
                out.extend_from_slice(format!("[{format}]").as_bytes());
            }
        }
    }

    /// The chain rsgi runs for these values (as the vassal sets it up: [`used`]).
    fn chain(values: &[&str]) -> Vec<Encoder> {
        used(
            &values
                .iter()
                .map(|v| parse(v).unwrap().0)
                .collect::<Vec<_>>(),
        )
    }

    fn run(values: &[&str], msg: &str) -> String {
        let mut out = Vec::new();
        encode(&chain(values), msg.as_bytes(), &Fixed, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// (the chain, the message, what comes out): uWSGI's bytes.
    #[test]
    fn chains_write_uwsgis_bytes() {
        let rows: &[(&[&str], &str, &str)] = &[
            (&[], "plain\n", "plain\n"),
            (&["nl"], "line\n", "line\n\n"),
            (&["prefix >> "], "line\n", ">> line\n"),
            // the suffix comes after the newline, as in uWSGI
            (&["suffix <<"], "line\n", "line\n<<"),
            (&["prefix"], "line\n", "line\n"),
            // a template writes no newline of its own: hence `nl`
            (&["format [${msg}]"], "line\n", "[line]"),
            (&["format [${msg}]", "nl"], "line\n", "[line]\n"),
            (&["format ${msgnl}"], "line\n", "line\n"),
            (&["format ${msg}"], "no newline", "no newline"),
            (&["format ${msg}"], "", ""),
            // only the final newline goes
            (&["format <${msg}>"], "a\nb\n\n", "<a\nb\n>"),
            (&["format applogger ${msg}"], "hi\n", "applogger hi"),
            (
                &["format t=${unix} ms=${millis} us=${micros}"],
                "x\n",
                "t=1700000000 ms=1700000000123 us=1700000000123456",
            ),
            (&["format ${strftime:%d/%b}|"], "x\n", "[%d/%b]|"),
            // too long for uWSGI's 64-byte buffer: nothing
            (&["format <${strftime:long}>"], "x\n", "<>"),
            (&["format a${nope}b"], "x\n", "ab"),
            (&["format a${}b"], "x\n", "ab"),
            (&["format cost $5 ${msg}"], "x\n", "cost $5 x"),
            (&["format open ${msg"], "x\n", "open ${msg"),
            (&["format ${msg}${msg}"], "x\n", "xx"),
            // the corpus's configs
            (
                &[r#"json {"time":${unix}, "source":"uwsgi", "message":"${msg}"}"#],
                "say \"hi\"\tthere\n",
                r#"{"time":1700000000, "source":"uwsgi", "message":"say \"hi\"\tthere"}"#,
            ),
            (
                &[
                    r#"json {"timestamp": "${strftime:%d/%b/%Y:%H:%M:%S %z}", "message": "${msg}"}"#,
                    "nl",
                ],
                "C:\\path\r\n",
                "{\"timestamp\": \"[%d/%b/%Y:%H:%M:%S %z]\", \"message\": \"C:\\\\path\\r\"}\n",
            ),
            (
                &[
                    r#"format {"time":${unix}, "source":"uwsgi-req", ${msg}}"#,
                    "nl",
                ],
                "\"uri\":\"/x\", \"status\":200\n",
                "{\"time\":1700000000, \"source\":\"uwsgi-req\", \"uri\":\"/x\", \"status\":200}\n",
            ),
            // msgnl in json: the newline escaped
            (&["json ${msgnl}"], "a\n", "a\\n"),
            // other control characters: \u00XX (uWSGI: raw)
            (&["json ${msg}"], "a\u{1b}b\u{0}\n", "a\\u001bb\\u0000"),
            // strftime output is escaped in json, not in format
            (&["json ${strftime:\"}"], "x\n", "[\\\"]"),
            (&["format ${strftime:\"}"], "x\n", "[\"]"),
            // chained in order: each works on what the one before made
            (
                &["prefix A", "suffix Z", "format <${msg}>", "nl"],
                "m\n",
                "<Am\nZ>\n",
            ),
            // an encoder for a named logger is never used
            (&["json:default {\"m\":\"${msg}\"}", "nl"], "m\n", "m\n\n"),
        ];
        for (values, msg, want) in rows {
            assert_eq!(run(values, msg), *want, "{values:?} over {msg:?}");
        }
    }

    #[test]
    fn parse_reads_name_id_and_arguments() {
        let (e, notes) = parse("json:default {\"m\":\"${msg}\"}").unwrap();
        assert_eq!(e.logger_id.as_deref(), Some("default"));
        assert_eq!(
            e.op,
            Op::Json(vec![
                Piece::Text("{\"m\":\"".into()),
                Piece::Msg,
                Piece::Text("\"}".into())
            ])
        );
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("never used"), "{notes:?}");
        // the first space ends the name; a ':' after it belongs to the arguments
        let (e, notes) = parse("prefix a:b c").unwrap();
        assert_eq!((e.op, e.logger_id), (Op::Prefix("a:b c".into()), None));
        assert!(notes.is_empty());
        assert_eq!(parse("nl").unwrap().0.op, Op::Nl);
        assert!(parse("nl x").unwrap().1[0].contains("ignored"));
        let notes = parse("format ${nope} ${msg}").unwrap().1;
        assert!(
            notes[0].contains("${nope} is no encoder variable"),
            "{notes:?}"
        );
        assert_eq!(
            parse("format ${strftime:%s}").unwrap().0.op,
            Op::Format(vec![Piece::Strftime("%s".into())])
        );
    }

    #[test]
    fn unsupported_encoders_are_refused_with_a_reason() {
        let rows: &[(&str, &str)] = &[
            ("gzip", "binary frame"),
            ("compress", "binary frame"),
            ("gzip:default", "binary frame"),
            ("msgpack", "use json"),
            ("base64 x", "no log encoder 'base64'"),
            ("", "no encoder named"),
            (":x", "no encoder named"),
        ];
        for (value, want) in rows {
            let err = parse(value).unwrap_err();
            assert!(err.contains(want), "{value}: {err}");
            assert!(err.contains("prefix, suffix, nl, format or json"), "{err}");
        }
    }

    #[test]
    fn add_appends_and_used_skips_named_loggers() {
        let mut c = Vec::new();
        assert_eq!(add(&mut c, "nl"), Ok(None));
        assert!(add(&mut c, "format:x ${msg}").unwrap().is_some());
        assert!(add(&mut c, "gzip").is_err());
        assert_eq!(c.len(), 2);
        assert_eq!(used(&c), vec![c[0].clone()]);
    }
}
