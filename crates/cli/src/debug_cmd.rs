//! `cairn debug floors`: the rates this machine's one core reaches at the work every backup
//! does per byte, measured with the code cairn runs (BLAKE3 as chunk ids use it, the chunker
//! as a backup reads a file, the AEAD of the TLS suite rustls picks first). bench/scale.sh
//! prints them beside its table, so each figure is read against its limit (docs/performance.md).
//! Hidden: a benchmark's tool, not a user's.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use cairn_model::{chunk_reader, ChunkId};
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum DebugCmd {
    /// Hashing, chunking and TLS record encryption rates on one core.
    Floors(FloorsCmd),
}

#[derive(Args)]
pub struct FloorsCmd {
    /// MiB of data each rate is measured over.
    #[arg(long, default_value_t = 256)]
    mib: usize,
}

pub fn run(cmd: DebugCmd) -> Result<()> {
    match cmd {
        DebugCmd::Floors(f) => floors(f.mib),
    }
}

fn floors(mib: usize) -> Result<()> {
    if !(1..=4096).contains(&mib) {
        bail!("--mib must be between 1 and 4096, got {mib}");
    }
    let data = pseudo_random(mib << 20);
    let rate = |what: &str, secs: f64| {
        println!("{what}: {:.0} MiB/s", mib as f64 / secs.max(1e-9));
    };
    let t = Instant::now();
    let id = ChunkId::of(&data);
    rate("BLAKE3, one core", t.elapsed().as_secs_f64());
    std::hint::black_box(id);

    let t = Instant::now();
    let digest = chunk_reader(
        std::io::Cursor::new(&data[..]),
        data.len() as u64,
        "floors",
        |_, _| Ok(()),
    )
    .context("chunking the sample")?;
    let chunks = digest.chunks.len();
    rate(
        &format!("chunk and hash a file (FastCDC + BLAKE3 as a backup reads, {chunks} chunks)"),
        t.elapsed().as_secs_f64(),
    );

    for (name, alg) in [
        ("TLS record sealing, AES-256-GCM", &ring::aead::AES_256_GCM),
        ("TLS record sealing, AES-128-GCM", &ring::aead::AES_128_GCM),
        (
            "TLS record sealing, ChaCha20-Poly1305",
            &ring::aead::CHACHA20_POLY1305,
        ),
    ] {
        rate(name, seal_all(alg, &data)?);
    }
    Ok(())
}

/// Seconds to seal `data` in 16 KiB records, as TLS sends it.
fn seal_all(alg: &'static ring::aead::Algorithm, data: &[u8]) -> Result<f64> {
    let key = vec![7u8; alg.key_len()];
    let key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(alg, &key).map_err(|_| anyhow::anyhow!("AEAD key"))?,
    );
    let mut record = Vec::with_capacity(16 * 1024 + 16);
    let t = Instant::now();
    for (n, piece) in data.chunks(16 * 1024).enumerate() {
        record.clear();
        record.extend_from_slice(piece);
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&(n as u64).to_be_bytes());
        key.seal_in_place_append_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::empty(),
            &mut record,
        )
        .map_err(|_| anyhow::anyhow!("sealing a record"))?;
    }
    std::hint::black_box(&record);
    Ok(t.elapsed().as_secs_f64())
}

/// Incompressible bytes without a random source (xorshift), so runs are comparable.
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
