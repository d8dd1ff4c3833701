//! Memory figures for the measurement (`ENGINE_PROXY_STATS=SECONDS`): the heap bytes live (as asked
//! of the allocator) and their count by size class, beside the process's RSS. The counting costs
//! one relaxed load per allocation when off. (jemalloc's own `stats.*` are not compiled in:
//! tikv-jemallocator's `stats` feature is off.)

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};
use std::time::Duration;

/// Size classes: `< 64`, `< 128`, ... `< 64 KiB`, larger.
const CLASSES: usize = 12;
static ON: AtomicBool = AtomicBool::new(false);
static BYTES: AtomicIsize = AtomicIsize::new(0);
static COUNT: [AtomicIsize; CLASSES] = [const { AtomicIsize::new(0) }; CLASSES];
static CLASS_BYTES: [AtomicIsize; CLASSES] = [const { AtomicIsize::new(0) }; CLASSES];

/// jemalloc, counting what is live once [`report_every`] started.
pub struct Counting;

fn class(size: usize) -> usize {
    (usize::BITS - (size >> 6).leading_zeros()).min(CLASSES as u32 - 1) as usize
}

fn count(size: usize, sign: isize) {
    if ON.load(Relaxed) {
        let c = class(size);
        BYTES.fetch_add(sign * size as isize, Relaxed);
        COUNT[c].fetch_add(sign, Relaxed);
        CLASS_BYTES[c].fetch_add(sign * size as isize, Relaxed);
    }
}

// SAFETY: every call is jemalloc's, unchanged; the counting only reads the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size(), 1);
        tikv_jemallocator::Jemalloc.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count(l.size(), 1);
        tikv_jemallocator::Jemalloc.alloc_zeroed(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        count(l.size(), -1);
        tikv_jemallocator::Jemalloc.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count(l.size(), -1);
        count(new, 1);
        tikv_jemallocator::Jemalloc.realloc(p, l, new)
    }
}

fn rss_kib() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Starts counting (what was allocated before is not counted: its frees may make the
/// counts dip below zero by the few startup allocations), then prints every `every` the
/// RSS, the live bytes, and the live allocations per size class (`<64:count/KiB ...`).
pub fn report_every(every: Duration) {
    ON.store(true, Relaxed);
    loop {
        let mut classes = String::new();
        for c in 0..CLASSES {
            let n = COUNT[c].load(Relaxed);
            if n != 0 {
                let label = if c + 1 == CLASSES {
                    ">=64K".to_string()
                } else {
                    format!("<{}", 64 << c)
                };
                let kib = CLASS_BYTES[c].load(Relaxed) / 1024;
                classes.push_str(&format!(" {label}:{n}/{kib}K"));
            }
        }
        eprintln!(
            "mem: rss {} KiB, live heap {} KiB;{classes}",
            rss_kib(),
            BYTES.load(Relaxed) / 1024
        );
        std::thread::sleep(every);
    }
}
