//! glibc malloc settings for the server process.
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
//! The settings are made before the runtime starts any thread. Other allocators were tried
//! in the same run: mimalloc kept 120-175 MiB, moving with every round.

/// Buffers this large or larger get their own mapping, returned to the system when freed.
const MMAP_THRESHOLD: i32 = 1 << 20;

/// Heap arenas: fewer arenas, fewer heaps to strand freed memory in; two cores here keep
/// two busy.
const ARENAS: i32 = 2;

/// Applies the settings; does nothing off glibc. Call before any thread starts.
#[allow(unsafe_code)]
pub fn for_server() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any other thread
    // exists, so nothing allocates concurrently.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}
