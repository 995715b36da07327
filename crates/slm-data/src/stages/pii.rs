//! [`PiiScrubber`]: replaces e-mail addresses, credit-card numbers (Luhn-checked), IP addresses
//! and phone numbers with placeholders.

use std::net::Ipv6Addr;
use std::sync::LazyLock;

use regex::{Captures, Regex};
use serde::{Deserialize, Serialize};

use crate::curate::{Stage, StageOutput, Verdict, filter_map_examples};
use crate::error::Result;
use crate::example::Example;

/// Placeholder for an e-mail address.
pub const EMAIL: &str = "<EMAIL>";
/// Placeholder for a phone number.
pub const PHONE: &str = "<PHONE>";
/// Placeholder for an IPv4 or IPv6 address.
pub const IP: &str = "<IP>";
/// Placeholder for a credit-card number.
pub const CREDIT_CARD: &str = "<CREDIT_CARD>";

static EMAIL_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}").unwrap()
});
// Digit groups joined by single spaces or dashes; the Luhn check decides.
static DIGITS_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[0-9](?:[ \-]?[0-9])*").unwrap());
static IPV4_RE: LazyLock<Regex> = LazyLock::new(|| {
    // ASCII word boundaries (`(?-u:\b)`): a Unicode `\b` keeps the regex crate off its fast
    // DFA on non-ASCII text, which made this pass several times slower.
    Regex::new(r"(?-u:\b)(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?-u:\b)").unwrap()
});
static IPV6_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}").unwrap());
// Phone numbers by shape: international (`+` and a country code), North American
// (`(555) 123-4567`, `555-123-4567`, `1 555 123 4567`) and national numbers with a trunk
// prefix (`020 7946 0958`, `(030) 1234 5678`). Bare digit runs are not phones by shape: years,
// version numbers, ids and ranges (`1997-2002`) look the same.
static PHONE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        \+[0-9]{1,3} (?:[\ .\-]?\([0-9]{1,4}\))? (?:[\ .\-]?[0-9]{1,4}){2,5}
      | (?:1[\ .\-])? (?:\([0-9]{3}\)\ ?|[0-9]{3}[\ .\-]) [0-9]{3}[\ .\-][0-9]{4}
      | (?:\(0[0-9]{1,4}\)|0[0-9]{1,4}) [\ .\-] [0-9]{3,4} (?:[\ .\-][0-9]{3,4}){0,2}",
    )
    .unwrap()
});
// After a phone keyword (`Tel:`, `Fax`, `call`, ...), any run of 7-15 digits with separators.
static PHONE_CONTEXT_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
        (?-u:\b)(?:tel|tél|telephone|phone|ph|fax|mobile|mob|cell|call|voice|telefon|whatsapp|sms)(?-u:\b)
        \.?\ ?(?:no\.?|number|\#)?\ ?[:.]?\s{0,3}
        (\+?\(?[0-9][0-9()\ .\-]{5,22}[0-9])",
    )
    .unwrap()
});
static YEARS_OR_DATE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:(?:19|20)[0-9]{2}\s?-\s?(?:19|20)[0-9]{2}|[0-9]{4}[-./][0-9]{1,2}[-./][0-9]{1,2})$",
    )
    .unwrap()
});

/// The byte ranges of phone numbers in `s`: [`PHONE_RE`]'s shapes with 8-15 digits, and
/// 7-15 digit runs after a phone keyword, never glued to a word, path, URL or longer number
/// (`mplayer-1.0-1`, `/2002/09/23`, `id 1234567ED4`), never a year range or a date.
fn phone_spans(s: &str) -> Vec<std::ops::Range<usize>> {
    let free = |range: &std::ops::Range<usize>| {
        let before = s[..range.start].chars().next_back();
        let after = &s[range.end..];
        let glued_before = before.is_some_and(|c| c.is_alphanumeric() || "_/.-=&?#+".contains(c));
        let mut rest = after.chars();
        let glued_after = match rest.next() {
            Some(c) if c.is_alphanumeric() || c == '_' || c == '/' => true,
            Some('-' | '.') => rest.next().is_some_and(|c| c.is_ascii_digit()),
            _ => false,
        };
        !glued_before && !glued_after
    };
    let digits = |range: &std::ops::Range<usize>| {
        s[range.clone()].bytes().filter(u8::is_ascii_digit).count()
    };
    let mut spans: Vec<std::ops::Range<usize>> = Vec::new();
    let mut at = 0;
    // A rejected match may hide a good one starting inside it (`78701 512-555-0143` first
    // matches as `1 512-555-0143`), so the search resumes one character on, not after it.
    while let Some(m) = PHONE_RE.find_at(s, at) {
        let r = m.range();
        if free(&r) && (8..=15).contains(&digits(&r)) {
            at = r.end;
            spans.push(r);
        } else {
            at = r.start + s[r.start..].chars().next().map_or(1, char::len_utf8);
        }
    }
    for caps in PHONE_CONTEXT_RE.captures_iter(s) {
        let m = caps.get(1).expect("the number group");
        let r = m.range();
        if free(&r) && (7..=15).contains(&digits(&r)) && !YEARS_OR_DATE_RE.is_match(m.as_str()) {
            spans.push(r);
        }
    }
    spans.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    let mut merged: Vec<std::ops::Range<usize>> = Vec::with_capacity(spans.len());
    for r in spans {
        match merged.last_mut() {
            Some(last) if r.start < last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

/// Which kinds of PII [`PiiScrubber`] replaces (all by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PiiConfig {
    /// E-mail addresses -> `<EMAIL>`.
    pub emails: bool,
    /// Luhn-valid 13-19 digit numbers -> `<CREDIT_CARD>`.
    pub credit_cards: bool,
    /// IPv4 and IPv6 addresses -> `<IP>`.
    pub ips: bool,
    /// Phone numbers -> `<PHONE>`: international (`+44 20 7946 0958`), North American
    /// (`(555) 123-4567`) and trunk-prefixed national numbers (`020 7946 0958`) by shape, and
    /// any 7-15 digit run after `Tel`, `Phone`, `Fax`, `Mobile`, `call`, ...; never years,
    /// year ranges, dates, versions, ids or digits inside URLs and words.
    pub phones: bool,
    /// Scrub targets too.
    pub targets: bool,
}

impl Default for PiiConfig {
    fn default() -> Self {
        PiiConfig {
            emails: true,
            credit_cards: true,
            ips: true,
            phones: true,
            targets: true,
        }
    }
}

/// Whether `digits` (ASCII digits only) passes the Luhn checksum.
pub fn luhn_valid(digits: &[u8]) -> bool {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn is_card(candidate: &str) -> bool {
    let digits: Vec<u8> = candidate.bytes().filter(u8::is_ascii_digit).collect();
    (13..=19).contains(&digits.len()) && luhn_valid(&digits)
}

/// The scrubbing stage; never drops, counts scrubbed examples as modified.
#[derive(Debug, Clone, Default)]
pub struct PiiScrubber {
    /// What to scrub.
    pub config: PiiConfig,
}

impl PiiScrubber {
    /// The stage with `config`.
    pub fn new(config: PiiConfig) -> Self {
        PiiScrubber { config }
    }

    /// Replaces every Luhn-valid 13-19 digit number (grouped by single spaces or dashes, or
    /// an unbroken run inside such a group) with `<CREDIT_CARD>`.
    fn cards(&self, s: &str) -> String {
        DIGITS_RE
            .replace_all(s, |m: &Captures| {
                let whole = &m[0];
                if is_card(whole) {
                    return CREDIT_CARD.to_string();
                }
                // A grouped run that fails as a whole may hold a card in one unbroken part.
                let mut out = String::with_capacity(whole.len());
                let mut rest = whole;
                while !rest.is_empty() {
                    let end = rest.find([' ', '-']).unwrap_or(rest.len());
                    let part = &rest[..end];
                    out.push_str(if is_card(part) { CREDIT_CARD } else { part });
                    out.push_str(&rest[end..(end + 1).min(rest.len())]);
                    rest = &rest[(end + 1).min(rest.len())..];
                }
                out
            })
            .into_owned()
    }

    /// `text` with PII replaced, in the order e-mails, credit cards, IPs, phones.
    pub fn scrub(&self, text: &str) -> String {
        let c = &self.config;
        let mut s = text.to_string();
        // Every kind but e-mail needs a digit (or, for IPv6, a hex digit and a colon); most
        // texts skip most passes.
        let has_digit = text.bytes().any(|b| b.is_ascii_digit());
        if c.emails && text.contains('@') {
            s = EMAIL_RE.replace_all(&s, EMAIL).into_owned();
        }
        if c.credit_cards && has_digit {
            s = self.cards(&s);
        }
        if c.ips && (has_digit || text.contains(':')) {
            s = IPV4_RE.replace_all(&s, IP).into_owned();
            s = IPV6_RE
                .replace_all(&s, |m: &Captures| {
                    let whole = m.get(0).expect("group 0 always exists");
                    let t = whole.as_str();
                    let standalone = !s[..whole.start()]
                        .ends_with(|c: char| c.is_alphanumeric() || c == ':')
                        && !s[whole.end()..].starts_with(|c: char| c.is_alphanumeric() || c == ':');
                    let groups = t.split(':').filter(|g| !g.is_empty()).count();
                    if standalone && groups >= 3 && t.parse::<Ipv6Addr>().is_ok() {
                        IP.to_string()
                    } else {
                        t.to_string()
                    }
                })
                .into_owned();
        }
        if c.phones && has_digit {
            let mut out = String::with_capacity(s.len());
            let mut at = 0;
            for span in phone_spans(&s) {
                out.push_str(&s[at..span.start]);
                out.push_str(PHONE);
                at = span.end;
            }
            out.push_str(&s[at..]);
            s = out;
        }
        if c.credit_cards && has_digit && (c.ips || c.phones) {
            // The later passes only remove digits, but make "no Luhn-valid run survives" local.
            s = self.cards(&s);
        }
        s
    }
}

impl Stage for PiiScrubber {
    fn name(&self) -> &str {
        "pii"
    }

    fn apply(&self, examples: Vec<Example>) -> Result<StageOutput> {
        Ok(filter_map_examples(self.name(), examples, |e| {
            let input = self.scrub(&e.input);
            let target = match (&e.target, self.config.targets) {
                (Some(t), true) => Some(self.scrub(t)),
                (t, _) => t.clone(),
            };
            Verdict::rewritten(e, input, target)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_each_kind() {
        let s = PiiScrubber::default();
        assert_eq!(
            s.scrub("mail jane.doe+x@mail.example.co.uk now"),
            "mail <EMAIL> now"
        );
        assert_eq!(
            s.scrub("card 4111 1111 1111 1111, exp 12/26"),
            "card <CREDIT_CARD>, exp 12/26"
        );
        assert_eq!(
            s.scrub("card 4111111111111112 is invalid"),
            "card 4111111111111112 is invalid"
        );
        assert_eq!(
            s.scrub("from 192.168.0.1 and fe80::1ff:fe23:4567:890a"),
            "from <IP> and <IP>"
        );
        assert_eq!(
            s.scrub("call +1 (555) 123-4567 or 020 7946 0958"),
            "call <PHONE> or <PHONE>"
        );
        assert_eq!(
            s.scrub("at 12:30:45 on 2024 we had 3 cats"),
            "at 12:30:45 on 2024 we had 3 cats"
        );
        assert_eq!(s.scrub("id x4111111111111111y"), "id x<CREDIT_CARD>y");
    }

    #[test]
    fn phones_by_shape_and_by_keyword_but_not_years_ids_or_urls() {
        let s = PiiScrubber::default();
        let cases = [
            // From SpamAssassin messages.
            (
                "Tel: 01 6188428\nFax: 01 6602244\nMobile: 086 6048101",
                "Tel: <PHONE>\nFax: <PHONE>\nMobile: <PHONE>",
            ),
            (
                "VOICE: +61-2-9876-5432 FAX: +61-2-9876-5433",
                "VOICE: <PHONE> FAX: <PHONE>",
            ),
            (
                "Austin, TX 78701 512-555-0143.",
                "Austin, TX 78701 <PHONE>.",
            ),
            ("dial (800) 555-0199 today", "dial <PHONE> today"),
            (
                "+44 20 7946 0958 or +33 1 23 45 67 89",
                "<PHONE> or <PHONE>",
            ),
            ("Phone: 1-800-555-0100", "Phone: <PHONE>"),
            // Not phones.
            ("Copyright 1997-2002 pudge.", "Copyright 1997-2002 pudge."),
            (
                "{4852-4852 -sequence mercury}",
                "{4852-4852 -sequence mercury}",
            ),
            (
                "sid=02/08/23/1234567 and /news/10862_1234567",
                "sid=02/08/23/1234567 and /news/10862_1234567",
            ),
            (
                "rpm --rebuild mplayer-0.90-0.rc4.1 now",
                "rpm --rebuild mplayer-0.90-0.rc4.1 now",
            ),
            (
                "ESMTP id 1234567ED4 from 1995 - 2002",
                "ESMTP id 1234567ED4 from 1995 - 2002",
            ),
            (
                "call us 2002-08-22 or in 1999-2001",
                "call us 2002-08-22 or in 1999-2001",
            ),
            (
                "XY: 1024 768 0 0 and ICQ: 123456789",
                "XY: 1024 768 0 0 and ICQ: 123456789",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(s.scrub(text), want, "{text}");
        }
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid(b"79927398713"));
        assert!(!luhn_valid(b"79927398710"));
        assert!(!luhn_valid(b""));
    }
}
