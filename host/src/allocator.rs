//! glibc malloc tuning for a long-running server, applied once at start-up.
//!
//! glibc serves an allocation above its mmap threshold with its own mapping and unmaps it
//! on free, but the threshold is dynamic: the first such free raises it to that size. One
//! argon2 password check (a 7 MiB block) therefore moves every later 7 MiB check into a
//! per-thread arena, which keeps the pages after the free, and each worker thread that
//! hashes keeps its own 7 MiB. Fixing the threshold keeps large, short-lived buffers on
//! their own mappings, so the memory goes back to the system when the check ends. Peak RSS
//! under the registry benchmark: 30.1 MiB with the dynamic threshold, 24.9 MiB with this.
//!
//! glibc also gives up to eight arenas per core to threads that allocate at the same time,
//! and each keeps what was freed in it. The blocking threads of uploads and password
//! checks spread over all of them: RSS after the registry benchmark's workload (before its
//! login burst) was 32–33 MiB with the default, 27.6 MiB with two arenas, 24.6 MiB with one
//! (2026-11-30). Two keep most of the saving without making every thread share one lock.

/// Allocations of at least this size get their own mapping. Above hyper's read buffers
/// (about 400 KiB) and the blob writer's, which are reused at high rates and cost a page
/// fault per page when mapped afresh each time.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 512 * 1024;

/// Fixing the mmap threshold also fixes the trim threshold at its 128 KiB default, and
/// trimming that eagerly shrinks and regrows the heap under load. Free memory above this
/// size at the top of the heap is returned; below it, kept for reuse. 2 MiB rather than
/// 16: RSS after the registry benchmark's workload 26.3 -> 23.9 MiB, throughput the same
/// within run-to-run noise (2026-11-30).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 2 * 1024 * 1024;

/// At most this many malloc arenas, unless `MALLOC_ARENA_MAX` says otherwise.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENA_MAX: libc::c_int = 2;

/// Applies the tuning. Call before the runtime starts its threads.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only sets allocator parameters; it is called from `main` before any
    // other thread exists, and a refused value (return 0) leaves glibc's defaults in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
        }
    }
}
