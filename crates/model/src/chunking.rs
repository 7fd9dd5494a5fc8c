//! Content-defined chunking (FastCDC 2020) and hashing of file content.
//!
//! Chunk sizes grow with the file's size class so a 1 GiB file stays near 2,000 chunks and a
//! 400 GiB disk image near 50,000, while a 4 KiB edit in a 10 MiB file re-sends about 64 KiB. Parameters are fixed per class: the same
//! bytes in the same class always cut the same way, which is what lets versions share chunks.
//! The alternative that lost, one size for all, either bloats the index of large files or makes
//! small edits expensive (see docs/design.md).

use std::io::Read;

use bytes::Bytes;
use fastcdc::v2020::{cut, logarithm2, Normalization, MASKS};
use serde::{Deserialize, Serialize};

use crate::{ChunkId, ContentHash, Error, Result};

/// Files below this size are one chunk: cutting them saves nothing.
pub const SINGLE_CHUNK_LIMIT: u64 = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl ChunkParams {
    /// The parameters for a file of `size` bytes (its size class).
    pub fn for_size(size: u64) -> Self {
        const KIB: u32 = 1024;
        const MIB: u32 = 1024 * KIB;
        const GIB: u64 = 1024 * 1024 * 1024;
        if size < 64 * 1024 * 1024 {
            ChunkParams {
                min: 16 * KIB,
                avg: 64 * KIB,
                max: 256 * KIB,
            }
        } else if size < 32 * GIB {
            ChunkParams {
                min: 128 * KIB,
                avg: 512 * KIB,
                max: 2 * MIB,
            }
        } else if size < 128 * GIB {
            // Very large files (disk images): bigger chunks keep one file's list, which the
            // server checks and stores in one commit, within the protocol's limit of chunk
            // references. The largest chunk is the largest frame the protocol carries.
            ChunkParams {
                min: MIB,
                avg: 4 * MIB,
                max: 16 * MIB,
            }
        } else {
            ChunkParams {
                min: 2 * MIB,
                avg: 8 * MIB,
                max: 16 * MIB,
            }
        }
    }
}

/// The most chunks a file of `size` bytes can be cut into (every chunk at its class's minimum):
/// a bound a client can plan with before it reads the file.
pub fn most_chunks(size: u64) -> u64 {
    if size == 0 {
        0
    } else if size < SINGLE_CHUNK_LIMIT {
        1
    } else {
        size.div_ceil(u64::from(ChunkParams::for_size(size).min))
    }
}

/// One chunk of a file: its id and where it sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub offset: u64,
    pub len: u32,
}

/// The result of reading a whole file: its size, content hash and chunk list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDigest {
    pub size: u64,
    pub hash: ContentHash,
    pub chunks: Vec<ChunkRef>,
}

/// Reads `reader` to the end, cutting it with the parameters of `size_hint`'s class, and calls
/// `on_chunk` with each chunk and its bytes in order (the caller may keep them: they are the
/// chunk's own).
///
/// # Errors
/// A read error (quoted with `what`), or the first error `on_chunk` returns.
pub fn chunk_reader<R: Read>(
    mut reader: R,
    size_hint: u64,
    what: &str,
    mut on_chunk: impl FnMut(&ChunkRef, &Bytes) -> Result<()>,
) -> Result<FileDigest> {
    let read_err = |source| Error::Read {
        what: what.to_string(),
        source,
    };
    let mut whole = blake3::Hasher::new();
    let mut chunks = Vec::new();
    let mut size = 0u64;
    if size_hint < SINGLE_CHUNK_LIMIT {
        let mut data = Vec::with_capacity(size_hint as usize);
        (&mut reader)
            .take(SINGLE_CHUNK_LIMIT * 16)
            .read_to_end(&mut data)
            .map_err(read_err)?;
        // A file that grew past the limit while we looked is still cut deterministically by
        // its real size; the caller notices the changed stat and retries.
        if data.len() as u64 >= SINGLE_CHUNK_LIMIT {
            return chunk_reader(std::io::Cursor::new(data), u64::MAX / 2, what, on_chunk);
        }
        whole.update(&data);
        size = data.len() as u64;
        if !data.is_empty() {
            let data = Bytes::from(data);
            let c = ChunkRef {
                id: ChunkId::of(&data),
                offset: 0,
                len: data.len() as u32,
            };
            on_chunk(&c, &data)?;
            chunks.push(c);
        }
    } else {
        let mut cutter = Cutter::new(ChunkParams::for_size(size_hint), size_hint);
        while let Some(data) = cutter.next(&mut reader).map_err(read_err)? {
            let c = ChunkRef {
                id: ChunkId::of(&data),
                offset: size,
                len: data.len() as u32,
            };
            whole.update(&data);
            on_chunk(&c, &data)?;
            size += data.len() as u64;
            chunks.push(c);
        }
    }
    Ok(FileDigest {
        size,
        hash: ContentHash::from_bytes(*whole.finalize().as_bytes()),
        chunks,
    })
}

/// Cuts a stream as FastCDC's `StreamCDC` does (every cut sees the class's largest chunk of
/// bytes ahead, or all that is left), with less copying: `StreamCDC` copies each chunk out,
/// then moves the rest of its buffer down and zeroes its end, about five bytes of memory
/// traffic per byte cut. Here the buffer holds several largest chunks and is cut in place;
/// the uncut rest moves down once per refill, and each chunk is copied once, into memory the
/// allocator recycles (a fresh block per refill was cheaper to copy into than to fault in).
struct Cutter {
    params: ChunkParams,
    /// FastCDC's masks for the class's average size, as `StreamCDC` picks them (level 1).
    mask_s: u64,
    mask_l: u64,
    /// Read bytes are `buf[at..len]`; the rest of `buf` is room for the next reads.
    buf: Vec<u8>,
    at: usize,
    len: usize,
    eof: bool,
}

impl Cutter {
    /// A cutter for a file of about `size_hint` bytes.
    fn new(params: ChunkParams, size_hint: u64) -> Self {
        let bits = logarithm2(params.avg) as usize;
        let level = Normalization::Level1.bits() as usize;
        // Several largest chunks, so the rest moved down at each refill (less than one
        // largest chunk) is a small share of what is read; no more than the file needs, so
        // a small file's buffer comes from the allocator's free memory, not fresh pages. Any
        // room of at least one largest chunk cuts the same way.
        let max = params.max as usize;
        let room = (max * 4)
            .min(32 << 20)
            .min(
                usize::try_from(size_hint)
                    .unwrap_or(usize::MAX)
                    .saturating_add(1),
            )
            .max(2 * max);
        Cutter {
            params,
            mask_s: MASKS[bits + level],
            mask_l: MASKS[bits - level],
            buf: vec![0; room],
            at: 0,
            len: 0,
            eof: false,
        }
    }

    /// The next chunk, `None` at the end.
    fn next(&mut self, reader: &mut impl Read) -> std::io::Result<Option<Bytes>> {
        let p = self.params;
        if self.len - self.at < p.max as usize && !self.eof {
            self.refill(reader)?;
        }
        if self.len == self.at {
            return Ok(None);
        }
        let (_, n) = cut(
            &self.buf[self.at..self.len],
            p.min as usize,
            p.avg as usize,
            p.max as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        let chunk = Bytes::copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(Some(chunk))
    }

    /// Moves the uncut rest to the front and reads until the buffer is full or the reader
    /// is at its end.
    fn refill(&mut self, reader: &mut impl Read) -> std::io::Result<()> {
        self.buf.copy_within(self.at..self.len, 0);
        self.len -= self.at;
        self.at = 0;
        while self.len < self.buf.len() {
            match reader.read(&mut self.buf[self.len..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Digest of bytes already in memory (tests, symbolic-link targets).
pub fn digest_bytes(data: &[u8]) -> FileDigest {
    chunk_reader(data, data.len() as u64, "memory", |_, _| Ok(()))
        .expect("reading memory cannot fail")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn noise(seed: u64, len: usize) -> Vec<u8> {
        // xorshift: deterministic, incompressible enough for CDC.
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn cuts(d: &FileDigest) -> Vec<u64> {
        d.chunks
            .iter()
            .map(|c| c.offset + u64::from(c.len))
            .collect()
    }

    #[test]
    fn boundaries_of_a_seeded_input_never_drift() {
        let data = noise(42, 1 << 20);
        let d = digest_bytes(&data);
        assert_eq!(d.size, 1 << 20);
        assert_eq!(d.hash, ContentHash::of(&data));
        // Recorded once; a change here means every stored file would re-chunk.
        let first: Vec<u64> = cuts(&d).into_iter().take(4).collect();
        assert_eq!(first, vec![34_625, 123_997, 140_946, 260_553]);
    }

    #[test]
    fn four_kib_edit_in_a_large_class_file_changes_few_chunks() {
        let mut data = noise(7, 80 << 20);
        let before = digest_bytes(&data);
        let mid = data.len() / 2;
        data[mid..mid + 4096].iter_mut().for_each(|b| *b = !*b);
        let after = digest_bytes(&data);
        let old: std::collections::HashSet<_> = before.chunks.iter().map(|c| c.id).collect();
        let new_bytes: u64 = after
            .chunks
            .iter()
            .filter(|c| !old.contains(&c.id))
            .map(|c| u64::from(c.len))
            .sum();
        assert!(new_bytes <= 3 * 2048 * 1024, "{new_bytes} new bytes");
    }

    #[test]
    fn size_classes_keep_very_large_files_within_a_commit() {
        assert_eq!(ChunkParams::for_size((64 << 20) - 1).avg, 64 * 1024);
        assert_eq!(ChunkParams::for_size(64 << 20).avg, 512 * 1024);
        assert_eq!(ChunkParams::for_size((32 << 30) - 1).avg, 512 * 1024);
        let huge = ChunkParams::for_size(32 << 30);
        assert_eq!((huge.min, huge.avg, huge.max), (1 << 20, 4 << 20, 16 << 20));
        let huger = ChunkParams::for_size(128 << 30);
        assert_eq!(
            (huger.min, huger.avg, huger.max),
            (2 << 20, 8 << 20, 16 << 20)
        );
        // A 480 GiB image averages 61,440 chunks: about the commit limit of references.
        assert_eq!((480u64 << 30) / u64::from(huger.avg), 61_440);
        // The hint picks the class: 40 MiB read as part of a 32 GiB file cuts 1..16 MiB chunks.
        let data = noise(11, 40 << 20);
        let d = chunk_reader(&data[..], 32 << 30, "mem", |_, _| Ok(())).expect("memory");
        let (last, rest) = d.chunks.split_last().expect("chunks");
        assert!(rest.iter().all(|c| (1 << 20..=16 << 20).contains(&c.len)));
        assert!(last.len <= 16 << 20);
        assert!(d.chunks.len() >= 3, "{} chunks", d.chunks.len());
    }

    #[test]
    fn most_chunks_bounds_the_cut() {
        assert_eq!(most_chunks(0), 0);
        assert_eq!(most_chunks(10), 1);
        for (seed, len) in [(1, 70_000), (2, 3 << 20), (3, 65 << 20)] {
            let data = noise(seed, len);
            let n = digest_bytes(&data).chunks.len() as u64;
            assert!(n <= most_chunks(len as u64), "{len}: {n} chunks");
        }
    }

    /// A reader that gives at most a few bytes at a time, as a pipe or a channel may.
    struct Choppy<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Choppy<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.data.len()).min(self.step);
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.step = self.step * 7 % 300_007 + 1;
            Ok(n)
        }
    }

    /// The cuts FastCDC's own stream cutter makes: what every stored file was cut with.
    fn stream_cdc_cuts(data: &[u8], size_hint: u64) -> Vec<u64> {
        let p = ChunkParams::for_size(size_hint);
        fastcdc::v2020::StreamCDC::new(data, p.min, p.avg, p.max)
            .map(|c| {
                let c = c.expect("memory");
                c.offset + c.length as u64
            })
            .collect()
    }

    #[test]
    fn blocks_cut_exactly_where_fastcdcs_stream_cutter_does() {
        // Each class, over several refills (a 2 MiB-chunk class reads 8 MiB at a time), through a
        // reader of odd small reads and through one that gives everything at once.
        for (seed, len, hint) in [
            (1u64, 3 << 20, 3u64 << 20),
            // A file that grew after it was looked at: a buffer of two largest chunks.
            (5, 3 << 20, 70_000),
            (2, 21 << 20, 100 << 20),
            (3, 70 << 20, 40 << 30),
        ] {
            let data = noise(seed, len);
            let want = stream_cdc_cuts(&data, hint);
            let choppy = Choppy {
                data: &data,
                step: 1,
            };
            let got = chunk_reader(choppy, hint, "mem", |_, _| Ok(())).expect("memory");
            assert_eq!(
                cuts(&got),
                want,
                "{len} bytes as a {hint}-byte file, read in pieces"
            );
            let whole = chunk_reader(&data[..], hint, "mem", |_, _| Ok(())).expect("memory");
            assert_eq!(cuts(&whole), want, "{len} bytes as a {hint}-byte file");
        }
    }

    #[test]
    fn a_file_of_the_largest_class_is_cut_too() {
        // Its sizes are past what FastCDC's own cutters accept (they assert, and a backup of
        // a file of 128 GiB or more panicked in them): the cut function takes them.
        let data = noise(5, 40 << 20);
        let d = chunk_reader(
            Choppy {
                data: &data,
                step: 1,
            },
            200 << 30,
            "mem",
            |_, _| Ok(()),
        )
        .expect("memory");
        let (last, rest) = d.chunks.split_last().expect("chunks");
        assert!(rest.iter().all(|c| (2 << 20..=16 << 20).contains(&c.len)));
        assert!(last.len <= 16 << 20);
        assert_eq!(d.size, data.len() as u64);
        assert_eq!(d.hash, ContentHash::of(&data));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn chunks_concatenate_back_and_cut_the_same_way(seed in any::<u64>(), len in 0usize..600_000) {
            let data = noise(seed, len);
            let mut joined = Vec::new();
            let d = chunk_reader(&data[..], len as u64, "mem", |c, bytes| {
                assert_eq!(c.offset as usize, joined.len());
                assert_eq!(ChunkId::of(bytes), c.id);
                joined.extend_from_slice(bytes);
                Ok(())
            }).expect("memory");
            prop_assert_eq!(&joined, &data);
            prop_assert_eq!(digest_bytes(&data), d);
        }

        #[test]
        fn an_edit_moves_only_nearby_boundaries(seed in any::<u64>(), at in 0.0f64..1.0, flip in 1usize..4096) {
            let mut data = noise(seed, 2 << 20);
            let before = cuts(&digest_bytes(&data));
            let pos = ((data.len() - flip) as f64 * at) as usize;
            data[pos..pos + flip].iter_mut().for_each(|b| *b = b.wrapping_add(1));
            let after = cuts(&digest_bytes(&data));
            let max = u64::from(ChunkParams::for_size(data.len() as u64).max);
            // Boundaries well before the edit stay; those well after resynchronise.
            for b in &before {
                let far = *b + max * 2 < pos as u64 || *b > (pos + flip) as u64 + max * 3;
                if far {
                    prop_assert!(after.contains(b), "boundary {} moved, edit at {}", b, pos);
                }
            }
        }
    }
}
