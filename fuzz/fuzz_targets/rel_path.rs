//! Path parsing and normalisation (`cairn_model::RelPath::parse`), which every path from a
//! request, an answer or a disk goes through.
//!
//! Input: two paths separated by a newline. A parsed path keeps the invariants callers rely on,
//! parses to itself again, is the same whatever Unicode spelling it came in, survives JSON, and
//! its parent, name, components, join and prefix operations agree.

#![no_main]

use cairn_model::path::{MAX_NAME_BYTES, MAX_PATH_BYTES};
use cairn_model::RelPath;
use libfuzzer_sys::fuzz_target;
use unicode_normalization::{is_nfc, UnicodeNormalization};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (a, b) = text.split_once('\n').unwrap_or((text, ""));
    let (pa, pb) = (one(a), one(b));
    if let (Some(a), Some(b)) = (pa, pb) {
        pair(&a, &b);
    }
});

fn one(raw: &str) -> Option<RelPath> {
    let parsed = RelPath::parse(raw).ok();
    let decomposed: String = raw.nfd().collect();
    assert_eq!(
        RelPath::parse(&decomposed).ok(),
        parsed,
        "NFD spelling of {raw:?}"
    );
    let p = parsed?;
    let s = p.as_str();
    assert!(is_nfc(s) && s.len() <= MAX_PATH_BYTES && !s.starts_with('/') && !s.contains('\0'));
    if !p.is_root() {
        for name in s.split('/') {
            assert!(
                !name.is_empty() && name != "." && name != ".." && name.len() <= MAX_NAME_BYTES
            );
        }
    }
    assert_eq!(RelPath::parse(s).ok().as_ref(), Some(&p));
    assert_eq!(p.components().collect::<Vec<_>>().join("/"), s);
    let json = serde_json::to_string(&p).expect("a path serialises");
    let back: RelPath = serde_json::from_str(&json).expect("a serialised path parses");
    assert_eq!(back, p);
    if let Some(parent) = p.parent() {
        assert!(p.starts_with(&parent));
        assert_eq!(parent.join(p.name()).ok().as_ref(), Some(&p));
    }
    Some(p)
}

fn pair(a: &RelPath, b: &RelPath) {
    let joined = a.join_path(b);
    assert!(joined.starts_with(a));
    assert_eq!(joined.strip_prefix(a).as_ref(), Some(b));
    if b.starts_with(a) {
        let rest = b.strip_prefix(a).expect("b lies under a");
        assert_eq!(&a.join_path(&rest), b);
    } else {
        assert_eq!(b.strip_prefix(a), None);
    }
}
