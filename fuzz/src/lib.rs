//! What every fuzz target shares: an allocator that turns an oversized allocation into a
//! crash, and a runtime for the async entry points.
//!
//! libFuzzer's `-malloc_limit_mb` needs a sanitizer's malloc hooks, which a build on stable
//! Rust has none of; [`LimitedAlloc`] enforces the same flag itself. Together with
//! `-rss_limit_mb` (which libFuzzer checks on its own) an input that makes the code allocate
//! without bound fails the run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The largest single allocation allowed, in bytes (`usize::MAX` until [`init`] reads it).
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// The system allocator, refusing any single allocation above the limit by aborting (which
/// libFuzzer reports as a crash and saves the input of).
#[derive(Debug)]
pub struct LimitedAlloc;

fn check(size: usize) {
    let limit = LIMIT.load(Ordering::Relaxed);
    if size > limit {
        // No allocation here: format into a stack buffer.
        let mut message = [0u8; 160];
        let mut cursor = std::io::Cursor::new(&mut message[..]);
        let _ = write!(
            cursor,
            "==fuzz== out-of-memory (malloc({size})): more than -malloc_limit_mb allows ({limit} bytes)\n"
        );
        let written = usize::try_from(cursor.position()).unwrap_or(0);
        let _ = std::io::stderr().write_all(&message[..written]);
        std::process::abort();
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the check only reads an
// atomic and aborts.
unsafe impl GlobalAlloc for LimitedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Reads libFuzzer's `-malloc_limit_mb=N` (or, as libFuzzer does, `-rss_limit_mb=N` when it
/// is absent) from the command line and enforces it from now on. Call it from the target's
/// `init` block.
pub fn init() {
    let flag = |name: &str| {
        std::env::args()
            .filter_map(|a| a.strip_prefix(name)?.parse::<usize>().ok())
            .last()
    };
    let mb = flag("-malloc_limit_mb=")
        .filter(|mb| *mb > 0)
        .or_else(|| flag("-rss_limit_mb="))
        .filter(|mb| *mb > 0);
    // libFuzzer's own default for both.
    let mb = mb.unwrap_or(2048);
    LIMIT.store(mb.saturating_mul(1 << 20), Ordering::Relaxed);
}

/// A single-threaded runtime for the async entry points (with timers, which some of them
/// start).
pub fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => panic!("cannot start a runtime: {e}"),
    }
}

#[global_allocator]
static ALLOC: LimitedAlloc = LimitedAlloc;
