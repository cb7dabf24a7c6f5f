//! uWSGI's XML config form (`-x app.xml`, `--xml app.xml`), read by a small hand parser.
//!
//! ```xml
//! <?xml version="1.0"?>
//! <uwsgi>
//!   <socket>127.0.0.1:8077</socket>   <!-- one entry per element, in order -->
//!   <master/>                          <!-- empty element: given without a value (true) -->
//!   <env>GREETING=a &amp; b</env>
//! </uwsgi>
//! ```
//!
//! - The root element is `<uwsgi>` (or `<rsgi>`). With `app.xml:name` the config is the
//!   `<uwsgi id="name">` element: the root itself or one of its children.
//! - Each child element of the config element is one [`Entry`] (repeated elements give
//!   several, in order); its text, trimmed, is the value and goes through the same
//!   placeholders as ini values. Its line is the line of its start tag. Attributes of option
//!   elements are ignored.
//! - Understood: the `<?xml ...?>` prolog and other processing instructions, `<!-- -->`
//!   comments, `<!DOCTYPE ...>` (skipped), `<![CDATA[...]]>`, the five predefined entities
//!   and `&#NN;`/`&#xHH;` character references.
//! - Errors (mismatched tags, an unknown entity, an element nested inside an option, text
//!   outside an option) name `file:line`.
//!
//! It is not a general XML parser: no namespaces, no DTD entities.
//!
//! Why by hand rather than a crate (roxmltree, quick-xml): errors must name `file:line`
//! of the element, values go through the same placeholder expansion as ini lines, and
//! uWSGI's XML is a flat list of option elements; a DOM crate would add a dependency and
//! a byte-offset-to-line mapping for ~300 lines that only need this subset, and its
//! tolerance for DTD entities (billion laughs) would have to be turned off anyway.

use std::path::Path;

use crate::error::ConfigError;
use crate::expand::Placeholders;
use crate::ini::{define, resolve_all, Entry, Visitor};

/// Parse XML config text. `path` names the file in entries and errors and is the base of
/// the magic variables; `id` selects `<uwsgi id="...">`.
pub fn parse_str(
    text: &str,
    path: &Path,
    id: Option<&str>,
    ph: &mut Placeholders<'_>,
) -> Result<Vec<Entry>, ConfigError> {
    let mut entries = Vec::new();
    parse_with(text, path, path, id, ph, &mut |e, ph| {
        define(ph, &e.key, &e.value).map_err(|msg| ConfigError::line(&e.file, e.line, msg))?;
        entries.push(e);
        Ok(())
    })?;
    resolve_all(entries, ph)
}

/// Read and parse an XML config file; see [`crate::ini::read`] for how `path` is used.
pub fn read(
    path: &Path,
    id: Option<&str>,
    ph: &mut Placeholders<'_>,
) -> Result<Vec<Entry>, ConfigError> {
    let mut entries = Vec::new();
    visit_file(path, id, ph, &mut |e, ph| {
        define(ph, &e.key, &e.value).map_err(|msg| ConfigError::line(&e.file, e.line, msg))?;
        entries.push(e);
        Ok(())
    })?;
    resolve_all(entries, ph)
}

/// [`read`], handing each entry to `visit` as it is read.
pub(crate) fn visit_file<'e>(
    path: &Path,
    id: Option<&str>,
    ph: &mut Placeholders<'e>,
    visit: Visitor<'_, 'e>,
) -> Result<(), ConfigError> {
    let text = ph.read_file(path)?;
    let real = ph.real_path(path);
    parse_with(&text, path, &real, id, ph, visit)
}

fn parse_with<'e>(
    text: &str,
    shown: &Path,
    real: &Path,
    id: Option<&str>,
    ph: &mut Placeholders<'e>,
    visit: Visitor<'_, 'e>,
) -> Result<(), ConfigError> {
    ph.enter_file(real, shown, id);
    let result = parse_tree(text, shown, id, ph, visit);
    ph.leave_file();
    result
}

fn parse_tree<'e>(
    text: &str,
    shown: &Path,
    id: Option<&str>,
    ph: &mut Placeholders<'e>,
    visit: Visitor<'_, 'e>,
) -> Result<(), ConfigError> {
    let root = Parser::new(text)
        .document()
        .map_err(|(line, msg)| ConfigError::line(shown, line, msg))?;
    let is_config = |e: &Element| e.name == "uwsgi" || e.name == "rsgi";
    let config = match id {
        None if is_config(&root) => &root,
        None => {
            return Err(ConfigError::line(
                shown,
                root.line,
                format!(
                    "the root element must be <uwsgi> or <rsgi>, found <{}>",
                    root.name
                ),
            ))
        }
        Some(id) => {
            let has_id = |e: &&Element| is_config(e) && e.attr("id") == Some(id);
            std::iter::once(&root)
                .chain(root.elements())
                .find(has_id)
                .ok_or_else(|| ConfigError::file(shown, format!("no <uwsgi id=\"{id}\">")))?
        }
    };
    for node in &config.children {
        let option = match node {
            Node::Text { text, line } => {
                if text.trim().is_empty() {
                    continue;
                }
                let blank = &text[..text.len() - text.trim_start().len()];
                return Err(ConfigError::line(
                    shown,
                    line + blank.matches('\n').count(),
                    format!("text outside an option element: '{}'", text.trim()),
                ));
            }
            Node::Element(e) => e,
        };
        if id.is_none() && is_config(option) && option.attr("id").is_some() {
            // `<uwsgi id="x">` blocks nested in the root are only read when asked for.
            continue;
        }
        let mut value = String::new();
        for child in &option.children {
            match child {
                Node::Text { text, .. } => value.push_str(text),
                Node::Element(inner) => {
                    return Err(ConfigError::line(
                        shown,
                        inner.line,
                        format!(
                            "unexpected element <{}> inside <{}>",
                            inner.name, option.name
                        ),
                    ))
                }
            }
        }
        let value = ph
            .read_value(value.trim())
            .map_err(|msg| ConfigError::line(shown, option.line, msg))?;
        let entry = Entry {
            key: option.name.clone(),
            value,
            line: option.line,
            file: shown.to_path_buf(),
        };
        visit(entry, ph)?;
    }
    Ok(())
}

/// A parsed element.
#[derive(Debug)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
    /// Line of the start tag.
    line: usize,
}

impl Element {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text { .. } => None,
        })
    }
}

#[derive(Debug)]
enum Node {
    Element(Element),
    /// Character data (entities decoded, CDATA included), with the line it starts on.
    Text {
        text: String,
        line: usize,
    },
}

/// A parse error: line and message.
type XmlError = (usize, String);

/// A cursor over the text that knows its line.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Parser {
            text,
            pos: 0,
            line: 1,
        }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn err<T>(&self, msg: impl Into<String>) -> Result<T, XmlError> {
        Err((self.line, msg.into()))
    }

    /// Move forward `n` bytes, counting newlines.
    fn advance(&mut self, n: usize) {
        let skipped = &self.text[self.pos..self.pos + n];
        self.line += skipped.matches('\n').count();
        self.pos += n;
    }

    /// Skip up to and including `end`; error `what` if it never comes.
    fn skip_past(&mut self, end: &str, what: &str) -> Result<&'a str, XmlError> {
        match self.rest().find(end) {
            Some(i) => {
                let inner = &self.rest()[..i];
                self.advance(i + end.len());
                Ok(inner)
            }
            None => self.err(format!("unterminated {what}")),
        }
    }

    fn skip_blanks(&mut self) {
        let n = self.rest().len() - self.rest().trim_start().len();
        self.advance(n);
    }

    /// Skip blanks, comments, processing instructions and a doctype.
    fn skip_misc(&mut self) -> Result<(), XmlError> {
        loop {
            self.skip_blanks();
            let rest = self.rest();
            if rest.starts_with("<!--") {
                self.skip_past("-->", "comment")?;
            } else if rest.starts_with("<?") {
                self.skip_past("?>", "processing instruction")?;
            } else if rest.starts_with("<!DOCTYPE") {
                let internal = rest
                    .find('[')
                    .filter(|&b| rest.find('>').is_some_and(|g| b < g));
                if internal.is_some() {
                    self.skip_past("]>", "DOCTYPE")?;
                } else {
                    self.skip_past(">", "DOCTYPE")?;
                }
            } else {
                return Ok(());
            }
        }
    }

    fn document(mut self) -> Result<Element, XmlError> {
        self.skip_misc()?;
        if !self.rest().starts_with('<') {
            return if self.rest().is_empty() {
                self.err("no root element")
            } else {
                self.err("expected the root element, found text")
            };
        }
        let root = self.element()?;
        self.skip_misc()?;
        if !self.rest().is_empty() {
            return self.err("content after the root element");
        }
        Ok(root)
    }

    fn name(&mut self) -> Result<String, XmlError> {
        let len = self
            .rest()
            .find(|c: char| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
            .unwrap_or(self.rest().len());
        if len == 0 {
            return self.err("expected a name");
        }
        let name = self.rest()[..len].to_owned();
        self.advance(len);
        Ok(name)
    }

    /// Parse an element; the cursor is at its `<`.
    fn element(&mut self) -> Result<Element, XmlError> {
        let line = self.line;
        self.advance(1);
        let name = self.name()?;
        let mut attrs = Vec::new();
        loop {
            self.skip_blanks();
            let rest = self.rest();
            if rest.starts_with("/>") {
                self.advance(2);
                return Ok(Element {
                    name,
                    attrs,
                    children: Vec::new(),
                    line,
                });
            }
            if rest.starts_with('>') {
                self.advance(1);
                break;
            }
            let attr = self.name()?;
            self.skip_blanks();
            if !self.rest().starts_with('=') {
                return self.err(format!("attribute '{attr}' of <{name}> without a value"));
            }
            self.advance(1);
            self.skip_blanks();
            let quote = match self.rest().chars().next() {
                Some(q @ ('"' | '\'')) => q,
                _ => return self.err(format!("attribute '{attr}' of <{name}>: value not quoted")),
            };
            self.advance(1);
            let attr_line = self.line;
            let raw = self.skip_past(&quote.to_string(), "attribute value")?;
            let value = decode(raw).map_err(|m| (attr_line, m))?;
            attrs.push((attr, value));
        }
        let children = self.content(&name)?;
        Ok(Element {
            name,
            attrs,
            children,
            line,
        })
    }

    /// Parse content up to and including `</name>`.
    fn content(&mut self, name: &str) -> Result<Vec<Node>, XmlError> {
        let mut children = Vec::new();
        loop {
            let rest = self.rest();
            if rest.is_empty() {
                return self.err(format!("<{name}> is never closed"));
            }
            if let Some(after) = rest.strip_prefix("</") {
                let len = after.find('>').unwrap_or(after.len());
                let closing = after[..len].trim();
                if closing != name {
                    return self.err(format!("</{closing}> closes <{name}>"));
                }
                self.skip_past(">", "end tag")?;
                return Ok(children);
            }
            if rest.starts_with("<!--") {
                self.skip_past("-->", "comment")?;
            } else if rest.starts_with("<![CDATA[") {
                let line = self.line;
                self.advance("<![CDATA[".len());
                let data = self.skip_past("]]>", "CDATA section")?;
                push_text(&mut children, data, line);
            } else if rest.starts_with("<?") {
                self.skip_past("?>", "processing instruction")?;
            } else if rest.starts_with('<') {
                children.push(Node::Element(self.element()?));
            } else {
                let line = self.line;
                let len = rest.find('<').unwrap_or(rest.len());
                let text = decode(&rest[..len]).map_err(|m| (line, m))?;
                self.advance(len);
                push_text(&mut children, &text, line);
            }
        }
    }
}

/// Append text, merging with a text node just before (text + CDATA + text is one value).
fn push_text(children: &mut Vec<Node>, text: &str, line: usize) {
    if let Some(Node::Text { text: prev, .. }) = children.last_mut() {
        prev.push_str(text);
    } else {
        children.push(Node::Text {
            text: text.to_owned(),
            line,
        });
    }
}

/// Decode entity and character references.
fn decode(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp + 1..];
        let Some(semi) = tail.find(';') else {
            return Err("'&' without ';' (write &amp;)".to_owned());
        };
        let entity = &tail[..semi];
        let ch = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .map(|hex| u32::from_str_radix(hex, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse::<u32>))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => out.push(c),
            None => return Err(format!("unknown entity &{entity};")),
        }
        rest = &tail[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str, id: Option<&str>) -> Result<Vec<(String, String, usize)>, String> {
        let mut ph = Placeholders::new(&no_env, &crate::system::testing::FIXED);
        parse_str(text, Path::new("/srv/app/app.xml"), id, &mut ph)
            .map(|es| es.into_iter().map(|e| (e.key, e.value, e.line)).collect())
            .map_err(|e| e.to_string())
    }

    macro_rules! case {
        ($text:expr $(, $id:expr)? => [$(($k:expr, $v:expr, $l:expr)),* $(,)?]) => {{
            let id: Option<&str> = None $(.or(Some($id)))?;
            assert_eq!(
                parse($text, id),
                Ok(vec![$(($k.to_string(), $v.to_string(), $l)),*]),
                "input {:?}", $text
            )
        }};
        ($text:expr $(, $id:expr)? => err $msg:expr) => {{
            let id: Option<&str> = None $(.or(Some($id)))?;
            assert_eq!(parse($text, id), Err($msg.to_string()), "input {:?}", $text)
        }};
    }

    #[test]
    fn basic_forms() {
        case!("<uwsgi><socket>:80</socket></uwsgi>" => [("socket", ":80", 1)]);
        case!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- top -->\n<uwsgi>\n  <master/>\n  <master />\n  <vacuum></vacuum>\n  <!-- <socket>:1</socket> -->\n  <socket>\n    :2\n  </socket>\n</uwsgi>\n<!-- end -->\n" => [
            ("master", "", 4), ("master", "", 5), ("vacuum", "", 6), ("socket", ":2", 8),
        ]);
        case!("<rsgi><processes>4</processes><processes>8</processes></rsgi>" =>
            [("processes", "4", 1), ("processes", "8", 1)]);
        case!("<!DOCTYPE uwsgi>\n<uwsgi><x>1</x></uwsgi>" => [("x", "1", 2)]);
        case!("<uwsgi><socket opt=\"ignored\">:3</socket></uwsgi>" => [("socket", ":3", 1)]);
    }

    #[test]
    fn entities_and_cdata() {
        case!("<uwsgi><env>A=a &amp; b &lt;c&gt; &quot;d&quot; &apos;e&apos;</env></uwsgi>" =>
            [("env", "A=a & b <c> \"d\" 'e'", 1)]);
        case!("<uwsgi><env>A=&#65;&#x42;&#x43;</env></uwsgi>" => [("env", "A=ABC", 1)]);
        case!("<uwsgi><env>A=<![CDATA[<&>]]>!</env></uwsgi>" => [("env", "A=<&>!", 1)]);
        case!("<uwsgi><env>A=&nbsp;</env></uwsgi>" => err "/srv/app/app.xml:1: unknown entity &nbsp;");
        case!("<uwsgi><env>A & B</env></uwsgi>" => err "/srv/app/app.xml:1: '&' without ';' (write &amp;)");
    }

    #[test]
    fn placeholders_apply() {
        case!("<uwsgi>\n<base>/srv</base>\n<chdir>%(base)/x</chdir>\n<socket>%d%n.sock</socket>\n</uwsgi>" => [
            ("base", "/srv", 2), ("chdir", "/srv/x", 3), ("socket", "/srv/app/app.sock", 4),
        ]);
    }

    #[test]
    fn ids() {
        let text = "<config>\n<uwsgi id=\"a\"><socket>:1</socket></uwsgi>\n<uwsgi id='b'><socket>:2</socket></uwsgi>\n</config>";
        case!(text, "a" => [("socket", ":1", 2)]);
        case!(text, "b" => [("socket", ":2", 3)]);
        case!(text, "c" => err "/srv/app/app.xml: no <uwsgi id=\"c\">");
        case!(text => err "/srv/app/app.xml:1: the root element must be <uwsgi> or <rsgi>, found <config>");
        case!("<uwsgi id=\"x\"><a>1</a></uwsgi>", "x" => [("a", "1", 1)]);
        // Nested id blocks are skipped when no id is asked for.
        case!("<uwsgi><a>1</a><uwsgi id=\"p\"><a>2</a></uwsgi></uwsgi>" => [("a", "1", 1)]);
        case!("<uwsgi><a>1</a><uwsgi id=\"p\"><a>2</a></uwsgi></uwsgi>", "p" => [("a", "2", 1)]);
    }

    #[test]
    fn errors() {
        case!("" => err "/srv/app/app.xml:1: no root element");
        case!("hello" => err "/srv/app/app.xml:1: expected the root element, found text");
        case!("<uwsgi>\n<socket>:1</sock>\n</uwsgi>" => err "/srv/app/app.xml:2: </sock> closes <socket>");
        case!("<uwsgi>\n<socket>:1" => err "/srv/app/app.xml:2: <socket> is never closed");
        case!("<uwsgi>\n<a><b>1</b></a>\n</uwsgi>" => err "/srv/app/app.xml:2: unexpected element <b> inside <a>");
        case!("<uwsgi>\nstray\n<a>1</a></uwsgi>" => err "/srv/app/app.xml:2: text outside an option element: 'stray'");
        case!("<uwsgi></uwsgi><x/>" => err "/srv/app/app.xml:1: content after the root element");
        case!("<uwsgi>\n<!-- open\n</uwsgi>" => err "/srv/app/app.xml:2: unterminated comment");
        case!("<uwsgi><a x=1>1</a></uwsgi>" => err "/srv/app/app.xml:1: attribute 'x' of <a>: value not quoted");
        case!("<uwsgi>\n\n<chdir>%(x)</chdir><x>%(chdir)</x></uwsgi>" =>
            err "/srv/app/app.xml:3: %(x) refers to itself: x -> chdir -> x");
    }
}
