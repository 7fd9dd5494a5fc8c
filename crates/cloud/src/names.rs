//! `--encode-names`: a reversible spelling of names a provider refuses, so such files are stored
//! instead of reported (docs/cloud.md "Names").
//!
//! [`encode_name`] replaces each character that breaks one of the provider's name rules
//! ([`crate::provider::PathLimits`]: a forbidden character, a forbidden first or last character,
//! the first character of a reserved name, a forbidden prefix or a forbidden part) by `@` and its
//! two-digit uppercase hex code (`:` becomes `@3A`). A literal `@` followed by something that
//! reads as such a code is escaped too (`@3A` becomes `@403A`), so [`decode_name`] can undo every
//! escape without knowing the provider. Everything else is left as it is: a name that breaks no
//! rule and has no `@` followed by a code is stored unchanged.
//!
//! Only ASCII characters are ever escaped (every rule in the table is about ASCII), and `@`, the
//! digits and `A`-`F` are allowed by every provider, so an encoded name passes the provider's
//! character rules; only a length limit can still refuse it, and then the file is reported.
//! `@` and not `!`: OpenDAL sends `!` in a URL path as it is while AWS-style signature checks
//! (moto, the AWS SDKs) encode it, so S3 requests for names holding `!` fail their signature;
//! `@` is percent-encoded on the wire like everywhere else.
//! The alternative that lost: Unicode look-alikes (`:` as `：`) read better in a web console but
//! are three bytes each, meet byte limits sooner, and depend on every service storing non-ASCII
//! names faithfully.

use std::borrow::Cow;

use crate::provider::Provider;

/// The escape character; allowed by every provider in the table, and percent-encoded in URLs.
pub const ESCAPE: char = '@';

/// Whether `a` and `b` read as an escape code: `0`-`7` then an uppercase hex digit (ASCII only).
fn is_code(a: char, b: char) -> bool {
    matches!(a, '0'..='7') && matches!(b, '0'..='9' | 'A'..='F')
}

/// The byte offsets of the characters in `name` that must be escaped for `provider`.
fn escape_positions(provider: Provider, name: &str) -> Vec<usize> {
    let limits = &provider.spec().limits;
    let lower = name.to_ascii_lowercase();
    let chars: Vec<(usize, char)> = name.char_indices().collect();
    let mut marked = vec![false; chars.len()];
    let first_if = |cond: bool, marked: &mut Vec<bool>| {
        if cond && !marked.is_empty() {
            marked[0] = true;
        }
    };
    for (i, &(_, c)) in chars.iter().enumerate() {
        let next_is_code = match (chars.get(i + 1), chars.get(i + 2)) {
            (Some(&(_, a)), Some(&(_, b))) => is_code(a, b),
            _ => false,
        };
        if (c == ESCAPE && next_is_code) || limits.forbids_char(c) {
            marked[i] = true;
        }
    }
    first_if(
        chars
            .first()
            .is_some_and(|(_, c)| limits.forbidden_leading.contains(c)),
        &mut marked,
    );
    if let Some((_, c)) = chars.last() {
        if limits.forbidden_trailing.contains(c) {
            let last = marked.len() - 1;
            marked[last] = true;
        }
    }
    first_if(
        limits
            .reserved_names
            .iter()
            .any(|r| name.eq_ignore_ascii_case(r)),
        &mut marked,
    );
    first_if(
        limits
            .forbidden_prefixes
            .iter()
            .any(|p| lower.starts_with(&p.to_ascii_lowercase())),
        &mut marked,
    );
    first_if(
        limits.blank_name_refused && name.chars().all(|c| c.is_ascii_whitespace()),
        &mut marked,
    );
    for part in limits.forbidden_parts {
        let part = part.to_ascii_lowercase();
        for (start, _) in lower.match_indices(&part) {
            if let Ok(i) = chars.binary_search_by_key(&start, |(at, _)| *at) {
                marked[i] = true;
            }
        }
    }
    chars
        .iter()
        .zip(marked)
        // Every rule is about ASCII; a non-ASCII character is never escaped.
        .filter(|((_, c), m)| *m && c.is_ascii())
        .map(|((at, _), _)| *at)
        .collect()
}

/// The name as stored on `provider` with `--encode-names`.
pub fn encode_name(provider: Provider, name: &str) -> Cow<'_, str> {
    let positions = escape_positions(provider, name);
    if positions.is_empty() {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 2 * positions.len());
    let mut next = positions.iter().peekable();
    for (at, c) in name.char_indices() {
        if next.peek() == Some(&&at) {
            next.next();
            out.push(ESCAPE);
            out.push_str(&format!("{:02X}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The name a stored name stands for: every `@` followed by a code becomes the character.
pub fn decode_name(stored: &str) -> Cow<'_, str> {
    if !stored.contains(ESCAPE) {
        return Cow::Borrowed(stored);
    }
    let chars: Vec<char> = stored.chars().collect();
    let mut out = String::with_capacity(stored.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let code = match (c, chars.get(i + 1), chars.get(i + 2)) {
            (ESCAPE, Some(&a), Some(&b)) if is_code(a, b) => {
                a.to_digit(16).zip(b.to_digit(16)).map(|(h, l)| h * 16 + l)
            }
            _ => None,
        };
        match code.and_then(char::from_u32) {
            Some(decoded) => {
                out.push(decoded);
                i += 3;
            }
            None => {
                out.push(c);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// [`encode_name`] on each name of a `/`-separated path.
pub fn encode_path(provider: Provider, path: &str) -> String {
    path.split('/')
        .map(|name| encode_name(provider, name))
        .collect::<Vec<_>>()
        .join("/")
}

/// [`decode_name`] on each name of a `/`-separated path.
pub fn decode_path(stored: &str) -> String {
    stored
        .split('/')
        .map(decode_name)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::provider::{OnedriveKind, S3Preset, ALL};

    #[test]
    fn examples() {
        let aws = Provider::S3(S3Preset::Aws);
        assert_eq!(encode_name(aws, "12:30 report.txt"), "12@3A30 report.txt");
        assert_eq!(encode_name(aws, "a%b#c"), "a@25b@23c");
        assert_eq!(encode_name(aws, ".."), "@2E.");
        assert_eq!(encode_name(aws, "plain name.txt"), "plain name.txt");
        // A literal `@` stays unless it reads as a code.
        assert_eq!(encode_name(aws, "wow@.txt"), "wow@.txt");
        assert_eq!(encode_name(aws, "@3A"), "@403A");
        assert_eq!(decode_name("@403A"), "@3A");
        let business = Provider::Onedrive(OnedriveKind::Business);
        assert_eq!(encode_name(business, "forms"), "@66orms");
        assert_eq!(encode_name(business, "end."), "end@2E");
        assert_eq!(encode_name(business, "a_vti_b_vti_"), "a@5Fvti_b@5Fvti_");
        assert_eq!(encode_name(Provider::Dropbox, ".dropbox"), "@2Edropbox");
        assert_eq!(
            encode_name(Provider::Onedrive(OnedriveKind::Personal), " lead"),
            "@20lead"
        );
        assert_eq!(encode_name(Provider::Gcs, "  "), "@20 ");
        assert_eq!(encode_name(Provider::B2, ".bzempty"), "@2Ebzempty");
        assert_eq!(encode_path(aws, "a:b/c:d"), "a@3Ab/c@3Ad");
        assert_eq!(decode_path("a@3Ab/c@3Ad"), "a:b/c:d");
        // Lowercase or out-of-range codes are literal text.
        assert_eq!(decode_name("@3a@FF@"), "@3a@FF@");
    }

    #[test]
    fn every_rule_in_the_table_is_about_ascii() {
        for p in ALL {
            let l = &p.spec().limits;
            let chars = l
                .forbidden_chars
                .iter()
                .chain(l.forbidden_leading)
                .chain(l.forbidden_trailing);
            for c in chars {
                assert!(c.is_ascii() && *c != ESCAPE, "{}: {c:?}", p.id());
            }
            for s in l
                .reserved_names
                .iter()
                .chain(l.forbidden_prefixes)
                .chain(l.forbidden_parts)
            {
                assert!(s.is_ascii() && !s.contains(ESCAPE), "{}: {s}", p.id());
            }
        }
    }

    /// Names of up to 40 characters from an alphabet rich in the characters rules are about,
    /// reserved names among them.
    fn any_name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-zA-Z0-9 ._~@:*?\"<>|#%+\\[\\]{}^`\\\\-]{1,40}",
            1 => "[a-z@0-9A-F]{1,12}",
            1 => "(\\.|\\.\\.|forms|~|\\.bzEmpty|\\.synoemptyblob|_vti_|\\.dropbox|\\.cache| |  )[a-z._ ]{0,6}",
            1 => "\\PC{1,20}",
        ]
        .prop_filter("names have no separator", |n| !n.contains('/'))
    }

    fn any_provider() -> impl Strategy<Value = Provider> {
        proptest::sample::select(ALL.to_vec())
    }

    proptest! {
        #[test]
        fn decode_undoes_encode(p in any_provider(), name in any_name()) {
            let encoded = encode_name(p, &name);
            prop_assert_eq!(decode_name(&encoded), name.as_str());
        }

        #[test]
        fn encoded_names_pass_the_providers_checks(p in any_provider(), name in any_name()) {
            let encoded = encode_name(p, &name);
            prop_assert_eq!(p.spec().limits.name_problem(&encoded), None, "{:?} -> {:?}", name, encoded);
            prop_assert!(p.check_path(&encoded, None).is_ok(), "{:?} -> {:?}", name, encoded);
        }

        #[test]
        fn names_that_need_no_encoding_are_unchanged(p in any_provider(), name in any_name()) {
            let needs_nothing = p.spec().limits.name_problem(&name).is_none()
                && !name.contains(ESCAPE);
            if needs_nothing {
                prop_assert_eq!(encode_name(p, &name), name.as_str());
            }
        }

        #[test]
        fn paths_round_trip(p in any_provider(), names in proptest::collection::vec(any_name(), 1..4)) {
            let path = names.join("/");
            prop_assert_eq!(decode_path(&encode_path(p, &path)), path);
        }
    }
}
