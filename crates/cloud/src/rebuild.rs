//! What `cairn cloud db rebuild` compares without reading the remote: a local file's BLAKE3
//! hash (the index's), its MD5 and the MD5s of its parts, read once, against the ETag S3
//! lists (the MD5 of an object written in one part, or `md5(part md5s)-N` of one written in N
//! parts of the task's part size).

use std::io::Read;
use std::path::Path;

use cairn_engine::replica::Version;
use cairn_model::ContentHash;
use md5::{Digest, Md5};

/// The digests of one local file.
#[derive(Debug)]
pub struct Digests {
    pub hash: ContentHash,
    pub size: u64,
    md5: [u8; 16],
    parts: Vec<[u8; 16]>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Digests {
    /// Reads `file` once; parts are `part_size` bytes (the last one shorter).
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn of_file(file: &Path, part_size: usize) -> std::io::Result<Digests> {
        let mut f = std::fs::File::open(file)?;
        Digests::of_reader(&mut f, part_size.max(1))
    }

    fn of_reader(r: &mut impl Read, part_size: usize) -> std::io::Result<Digests> {
        let mut blake = blake3::Hasher::new();
        let mut whole = Md5::new();
        let mut part = Md5::new();
        let (mut in_part, mut size) = (0usize, 0u64);
        let mut parts = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            blake.update(&buf[..n]);
            whole.update(&buf[..n]);
            let mut piece = &buf[..n];
            while !piece.is_empty() {
                let take = piece.len().min(part_size - in_part);
                part.update(&piece[..take]);
                in_part += take;
                piece = &piece[take..];
                if in_part == part_size {
                    parts.push(part.finalize_reset().into());
                    in_part = 0;
                }
            }
        }
        if in_part > 0 {
            parts.push(part.finalize().into());
        }
        Ok(Digests {
            hash: ContentHash::from_bytes(*blake.finalize().as_bytes()),
            size,
            md5: whole.finalize().into(),
            parts,
        })
    }

    /// Whether the object whose version (ETag) is `version` holds this content: `None` when
    /// the ETag cannot tell (not an S3-style ETag, or parts of another size).
    pub fn matches(&self, version: &Version) -> Option<bool> {
        let tag = version.0.strip_prefix("e:")?.to_ascii_lowercase();
        match tag.split_once('-') {
            None if is_md5_hex(&tag) => Some(tag == hex(&self.md5)),
            Some((md5, count)) if is_md5_hex(md5) => {
                let count: usize = count.parse().ok()?;
                if count != self.parts.len() {
                    return None;
                }
                let mut all = Md5::new();
                for p in &self.parts {
                    all.update(p);
                }
                Some(md5 == hex(&all.finalize()))
            }
            _ => None,
        }
    }
}

fn is_md5_hex(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests(data: &[u8], part: usize) -> Digests {
        Digests::of_reader(&mut &data[..], part).expect("in memory")
    }

    fn tag(s: String) -> Version {
        Version(format!("e:{s}"))
    }

    #[test]
    fn a_single_part_etag_is_the_md5() {
        let d = digests(b"hello", 5);
        assert_eq!(d.hash, ContentHash::of(b"hello"));
        // md5("hello")
        let md5 = "5d41402abc4b2a76b9719d911017c592".to_string();
        assert_eq!(d.matches(&tag(md5.clone())), Some(true));
        assert_eq!(d.matches(&tag(md5.to_uppercase())), Some(true));
        assert_eq!(
            digests(b"hellO", 5).matches(&tag(md5)),
            Some(false),
            "another content"
        );
        assert_eq!(d.matches(&Version("m:5:1".into())), None);
        assert_eq!(d.matches(&tag("not-an-md5".into())), None);
    }

    #[test]
    fn a_multipart_etag_is_the_md5_of_the_parts_md5s() {
        let data: Vec<u8> = (0..25u8).collect();
        let d = digests(&data, 10);
        let mut all = Md5::new();
        for chunk in data.chunks(10) {
            all.update(Md5::digest(chunk));
        }
        let etag = format!("{}-3", hex(&all.finalize()));
        assert_eq!(d.matches(&tag(etag.clone())), Some(true));
        // Parts of another size: the ETag cannot tell.
        assert_eq!(digests(&data, 20).matches(&tag(etag)), None);
    }
}
