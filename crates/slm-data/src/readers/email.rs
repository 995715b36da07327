//! Raw RFC 822 / MIME email: [`parse_email`] turns one message into an [`Example`], and
//! [`EmailReader`] reads one `.eml` file (a folder of them is
//! [`TextDirReader::emails`](super::TextDirReader::emails)).
//!
//! MIME decoding (multipart, quoted-printable, base64, RFC 2047 encoded words, charsets) is
//! the `mail-parser` crate's, which is fuzzed and never panics on bad input; what it cannot
//! turn into text is an [`EmailProblem`].

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use mail_parser::{Address, MessageParser, MessagePart, MimeHeaders, PartType};
use serde_json::Value;

use super::Reader;
use crate::error::{EmailProblem, Error, Result, io_error};
use crate::example::Example;
use crate::limits::MAX_EMAIL_BYTES;

/// Parses one raw message into an [`Example`] with id `id`.
///
/// - `input` is the body text: every text part of the message's text body in order, where a
///   `text/plain` alternative is preferred and a `text/html`-only part is converted to text
///   (tags, `<head>`, `<script>` and `<style>` removed, entities decoded).
///   Quoted-printable and base64 transfer encodings and the declared charset are decoded.
/// - `meta` holds `subject`, `from`, `to` and `date` (RFC 3339), `null` when the header is
///   missing, so every email has the same keys.
///
/// # Errors
/// [`Error::Email`] with [`EmailProblem::NotAMessage`] or [`EmailProblem::NoTextBody`];
/// `path` names the message.
pub fn parse_email(raw: &[u8], path: &Path, id: impl Into<String>) -> Result<Example> {
    let problem = |problem| Error::Email {
        path: path.to_path_buf(),
        problem,
    };
    let message = MessageParser::new()
        .parse(raw)
        .ok_or_else(|| problem(EmailProblem::NotAMessage))?;
    let mut texts = text_parts(message.text_bodies());
    if texts.is_empty() {
        // Some mailers' text parts end up as attachments (mail-parser files an undisposed
        // base64 text/plain inside multipart/mixed there); take any text part rather than
        // drop the message.
        texts = text_parts(message.parts.iter());
    }
    if texts.is_empty() {
        return Err(problem(EmailProblem::NoTextBody));
    }
    let text_or_null = |s: Option<&str>| s.map_or(Value::Null, |s| Value::String(s.to_string()));
    let date = message.date().map(|d| d.to_rfc3339());
    Ok(Example::new(id, texts.join("\n\n"))
        .with_meta("subject", text_or_null(message.subject()))
        .with_meta("from", text_or_null(address(message.from()).as_deref()))
        .with_meta("to", text_or_null(address(message.to()).as_deref()))
        .with_meta("date", text_or_null(date.as_deref())))
}

/// The non-blank text of each text or HTML part, HTML converted to text.
fn text_parts<'a>(parts: impl Iterator<Item = &'a MessagePart<'a>>) -> Vec<String> {
    let mut texts = Vec::new();
    for part in parts {
        let (raw, is_html) = match &part.body {
            PartType::Text(text) => (text.as_ref(), part.is_content_type("text", "html")),
            PartType::Html(html) => (html.as_ref(), true),
            _ => continue,
        };
        let repaired = part
            .is_encoding_problem
            .then(|| undecoded(part, raw))
            .flatten();
        let raw = repaired.as_deref().unwrap_or(raw);
        let text = if is_html {
            // mail-parser drops everything after a `<head>` that never closes (as in
            // SpamAssassin hard-ham-1/00029, whose `<HEAD>` sits inside `<body>`); the
            // forgiving stripper keeps that text.
            let text = mail_parser::decoders::html::html_to_text(raw);
            if text.trim().is_empty() {
                crate::stages::html::strip_html(raw)
            } else {
                text
            }
        } else {
            raw.to_string()
        };
        let text = text.trim();
        if !text.is_empty() {
            texts.push(text.to_string());
        }
    }
    texts
}

/// Decodes a part mail-parser left encoded (it does so when a multipart's closing boundary
/// never comes): its transfer encoding, then its charset.
fn undecoded(part: &MessagePart<'_>, raw: &str) -> Option<String> {
    let encoding = part.content_transfer_encoding()?;
    let bytes = if encoding.eq_ignore_ascii_case("base64") {
        mail_parser::decoders::base64::base64_decode(raw.trim().as_bytes())?
    } else if encoding.eq_ignore_ascii_case("quoted-printable") {
        mail_parser::decoders::quoted_printable::quoted_printable_decode(raw.as_bytes())?
    } else {
        return None;
    };
    let charset = part.content_type().and_then(|c| c.attribute("charset"));
    Some(
        match charset
            .and_then(|c| mail_parser::decoders::charsets::map::charset_decoder(c.as_bytes()))
        {
            Some(decode) => decode(&bytes),
            None => String::from_utf8_lossy(&bytes).into_owned(),
        },
    )
}

/// `Name <addr>` (or just one of them) for each address, comma-separated.
fn address(address: Option<&Address<'_>>) -> Option<String> {
    let list: Vec<String> = address?
        .iter()
        .filter_map(|a| match (a.name(), a.address()) {
            (Some(name), Some(addr)) => Some(format!("{name} <{addr}>")),
            (None, Some(addr)) => Some(addr.to_string()),
            (Some(name), None) => Some(name.to_string()),
            (None, None) => None,
        })
        .collect();
    (!list.is_empty()).then(|| list.join(", "))
}

/// Reads `path` whole (up to [`MAX_EMAIL_BYTES`]) and parses it as one email.
pub(crate) fn read_email_file(path: &Path, id: String) -> Result<Example> {
    let file = File::open(path).map_err(io_error(path))?;
    let bytes = file.metadata().map_err(io_error(path))?.len();
    if bytes > MAX_EMAIL_BYTES {
        return Err(Error::Email {
            path: path.to_path_buf(),
            problem: EmailProblem::TooLarge { bytes },
        });
    }
    let mut raw = Vec::with_capacity(bytes as usize);
    file.take(MAX_EMAIL_BYTES)
        .read_to_end(&mut raw)
        .map_err(io_error(path))?;
    parse_email(&raw, path, id)
}

/// Reads one `.eml` file as a one-example dataset, id = the file name.
#[derive(Debug)]
pub struct EmailReader {
    path: PathBuf,
    done: bool,
}

impl EmailReader {
    /// Prepares to read `path` (nothing is read until the first `next`).
    ///
    /// # Errors
    /// [`Error::Io`] when `path` is not a readable file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        std::fs::metadata(path).map_err(io_error(path))?;
        Ok(EmailReader {
            path: path.to_path_buf(),
            done: false,
        })
    }
}

impl Iterator for EmailReader {
    type Item = Result<Example>;

    fn next(&mut self) -> Option<Result<Example>> {
        if std::mem::replace(&mut self.done, true) {
            return None;
        }
        let id = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Some(read_email_file(&self.path, id))
    }
}

impl Reader for EmailReader {
    fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Example> {
        parse_email(raw.as_bytes(), Path::new("m.eml"), "m")
    }

    #[test]
    fn headers_go_to_meta() {
        let ex = parse(
            "From: Ann Lee <ann@example.com>\r\nTo: bob@example.com\r\nSubject: =?UTF-8?Q?Caf=C3=A9?= plans\r\nDate: Thu, 22 Aug 2002 12:36:23 +0100\r\n\r\nSee you at noon.\r\n",
        )
        .unwrap();
        assert_eq!(ex.input, "See you at noon.");
        assert_eq!(ex.meta["subject"], "Café plans");
        assert_eq!(ex.meta["from"], "Ann Lee <ann@example.com>");
        assert_eq!(ex.meta["to"], "bob@example.com");
        assert_eq!(ex.meta["date"], "2002-08-22T12:36:23+01:00");
    }

    #[test]
    fn quoted_printable_and_base64_are_decoded() {
        let qp = parse(
            "Subject: qp\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nna=C3=AFve soft=\nbreak\n",
        )
        .unwrap();
        assert_eq!(qp.input, "naïve softbreak");
        let b64 = parse(
            "Subject: b64\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\nSGVsbG8sIHfDtnJsZCE=\n",
        )
        .unwrap();
        assert_eq!(b64.input, "Hello, wörld!");
        assert_eq!(b64.meta["from"], Value::Null);
    }

    #[test]
    fn multipart_alternative_prefers_text_plain() {
        let raw = "Subject: alt\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"XX\"\n\n--XX\nContent-Type: text/plain\n\nplain version\n--XX\nContent-Type: text/html\n\n<p>html <b>version</b></p>\n--XX--\n";
        assert_eq!(parse(raw).unwrap().input, "plain version");
    }

    #[test]
    fn html_only_becomes_text() {
        let raw = "Subject: html\nContent-Type: text/html\n\n<html><head><title>T</title><style>p {color: red}</style></head><body><script>alert(1)</script><p>Win &amp; save&nbsp;now</p><br>Click</body></html>\n";
        let text = parse(raw).unwrap().input;
        assert!(text.contains("Win & save"), "{text:?}");
        assert!(text.contains("Click"), "{text:?}");
        for gone in ["alert", "color", "<p>", "&amp;"] {
            assert!(!text.contains(gone), "{gone} in {text:?}");
        }
    }

    #[test]
    fn an_unclosed_head_inside_the_body_keeps_the_text() {
        let raw = "Subject: news\nContent-Type: text/html; charset=ISO-8859-1\n\n<HTML><body bgcolor=\"#fff\"><HEAD>\n<TITLE>Announcements</TITLE>\n<p>Dear member: join <b>Rewards</b> today &amp; save</p></body></html>\n";
        let text = parse(raw).unwrap().input;
        assert!(text.contains("Dear member: join"), "{text:?}");
        assert!(
            text.contains("Rewards") && text.contains("& save"),
            "{text:?}"
        );
    }

    #[test]
    fn an_unterminated_multipart_still_yields_its_text() {
        // As in SpamAssassin spam-2/00739: the closing boundary never comes, and mail-parser
        // files the base64 text/plain part as an attachment.
        let raw = "Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain; charset=\"iso-8859-1\"\nContent-Transfer-Encoding: base64\n\nSGVsbG8sIGNhZuk=\n\n";
        assert_eq!(parse(raw).unwrap().input, "Hello, café");
    }

    #[test]
    fn broken_mime_is_a_typed_error_or_text_never_a_panic() {
        // Not an email at all.
        assert!(matches!(
            parse(""),
            Err(Error::Email {
                problem: EmailProblem::NotAMessage,
                ..
            })
        ));
        // Attachments only: no text.
        let raw = "Subject: pic\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\niVBORw0KGgo=\n--b--\n";
        let err = parse(raw).unwrap_err();
        assert!(matches!(
            err,
            Error::Email {
                problem: EmailProblem::NoTextBody,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "m.eml: email has no text: no text/plain or text/html part with words"
        );
        // A multipart whose boundary never comes, and base64 that is not base64: read as
        // well as possible.
        for raw in [
            "Subject: x\nContent-Type: multipart/mixed; boundary=nope\n\nhello there\n",
            "Subject: x\nContent-Transfer-Encoding: base64\n\n!!!not base64!!!\n",
            "Subject: x\nContent-Type: multipart/alternative\n\n--\n--\n",
        ] {
            let _ = parse(raw);
        }
    }
}
