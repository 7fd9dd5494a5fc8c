//! Content checked as it arrives: a download whose bytes do not match the MD5 the service
//! gave for them fails instead of landing (a broken proxy, a flipped bit, a lying server).

use cairn_engine::replica::Content;
use cairn_engine::Error;
use futures_util::StreamExt;
use md5::{Digest, Md5};

/// `hex` as an MD5, when it is exactly 32 hex digits (a multipart ETag, `...-N`, is not).
pub(super) fn parse_md5_hex(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// An MD5 as services give it: 32 hex digits, or 16 bytes in base64 (Content-MD5, GCS's
/// `md5Hash`).
pub(super) fn parse_md5(text: &str) -> Option<[u8; 16]> {
    use base64::Engine;
    parse_md5_hex(text).or_else(|| {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()?;
        bytes.try_into().ok()
    })
}

/// `content`, with an error in place of its end when its MD5 is not `want`.
pub(super) fn md5_checked(
    content: Content<'static>,
    want: [u8; 16],
    what: String,
) -> Content<'static> {
    let state = (content, Some(Md5::new()), what);
    futures_util::stream::unfold(state, move |(mut content, mut hasher, what)| async move {
        let h = hasher.as_mut()?;
        match content.next().await {
            Some(Ok(piece)) => {
                h.update(&piece);
                Some((Ok(piece), (content, hasher, what)))
            }
            Some(Err(e)) => Some((Err(e), (content, None, what))),
            None => {
                let got: [u8; 16] = hasher.take()?.finalize().into();
                if got == want {
                    None
                } else {
                    let err = Error::Remote {
                        message: format!(
                            "{what}: the content read does not match the MD5 the service gave for it"
                        ),
                        temporary: true,
                    };
                    Some((Err(err), (content, None, what)))
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn md5s_parse_from_hex_and_base64() {
        let want = [
            0x5e, 0xb6, 0x3b, 0xbb, 0xe0, 0x1e, 0xee, 0xd0, 0x93, 0xcb, 0x22, 0xbb, 0x8f, 0x5a,
            0xcd, 0xc3,
        ];
        assert_eq!(parse_md5("5eb63bbbe01eeed093cb22bb8f5acdc3"), Some(want));
        assert_eq!(parse_md5("XrY7u+Ae7tCTyyK7j1rNww=="), Some(want));
        assert_eq!(parse_md5("0x8DC0FFEE"), None);
        assert_eq!(parse_md5("c2hvcnQ="), None);
    }

    #[tokio::test]
    async fn a_changed_byte_fails_the_read() {
        let data = Bytes::from_static(b"hello world");
        let want: [u8; 16] = Md5::digest(&data).into();
        let ok = md5_checked(
            cairn_engine::replica::content_of(data.clone()),
            want,
            "x".into(),
        );
        assert_eq!(
            cairn_engine::replica::collect(ok).await.expect("read"),
            b"hello world"
        );
        let bad = md5_checked(
            cairn_engine::replica::content_of(Bytes::from_static(b"hello worle")),
            want,
            "x".into(),
        );
        assert!(cairn_engine::replica::collect(bad).await.is_err());
        assert_eq!(parse_md5_hex("abc"), None);
        assert_eq!(parse_md5_hex("0123456789abcdef0123456789abcdef-2"), None);
        assert!(parse_md5_hex("0123456789abcdef0123456789ABCDEF").is_some());
    }
}
