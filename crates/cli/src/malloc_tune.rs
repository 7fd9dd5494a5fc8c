//! glibc malloc settings for every cairn process (server, agent and one-shot commands).
//!
//! A server that had served a long mixed session sat at 1.85 GB while idle. The cause is
//! glibc's allocator, not data the server keeps: it raises its mmap threshold to the size of
//! each large block freed (up to 32 MiB), so after the first upload bodies every later buffer
//! of a few MiB comes from a heap arena instead of its own mapping, and a heap arena gives
//! memory back only from its top; with an arena per busy thread the freed buffers stay mapped.
//! `bench/server_memory.sh` showed it: the RSS after each round of a mixed session climbed from
//! 187 to 342 MiB over 33 rounds and stayed there idle; with the threshold fixed and two arenas
//! (the same settings through GLIBC_TUNABLES) it stayed near 95 MiB from the fifth round on.
//!
//! The client met the other side of it: a restore's buffers (HTTP/2 frames of a few hundred KiB)
//! were freed at the top of a thread's heap, which glibc then handed back to the system at once
//! (it keeps at most 128 KiB free at a heap's top unless told otherwise), so the next buffer
//! faulted its pages in and had them zeroed again: about a quarter of the restore's system
//! time (client system CPU 0.99-1.17 s against 0.69-0.73 s with the settings below). Free
//! memory at a heap's top is now kept up to [`TRIM_THRESHOLD`], which bounds what each of the
//! [`ARENAS`] may strand.
//!
//! The settings are made before the runtime starts any thread. Other allocators were tried
//! for the server: mimalloc kept 120-175 MiB, moving with every round.

/// Buffers this large or larger get their own mapping, returned to the system when freed.
const MMAP_THRESHOLD: i32 = 1 << 20;

/// Heap arenas: fewer arenas, fewer heaps to strand freed memory in; two cores here keep
/// two busy.
const ARENAS: i32 = 2;

/// Free memory kept at the top of a heap for the next buffers rather than handed back.
const TRIM_THRESHOLD: i32 = 8 << 20;

/// Applies the settings; does nothing off glibc. Call before any thread starts.
#[allow(unsafe_code)]
pub fn apply() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any other thread
    // exists, so nothing allocates concurrently.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
