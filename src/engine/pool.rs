//! The per-thread buffer pool: a connection borrows a read buffer only while bytes are moving
//! and gives it back before it waits again, so a waiting connection holds none. Two size
//! classes: [`SMALL`] (most heads, every body read) and a large one sized to the head limit
//! (a head that outgrows a small buffer moves to a large one). At most `keep` buffers of each
//! class are kept; more are freed, so a burst does not leave the pool holding memory. A buffer
//! of any other capacity (grown, or never from the pool) is freed on return. [`BufPool`] is the
//! pool itself (testable alone); [`take`] and [`give`] use the calling thread's own.

use std::cell::RefCell;

/// The small class: enough for nearly every request head and a good read size for bodies.
pub const SMALL: usize = 4096;
/// Buffers kept per class on each thread by the thread's own pool.
pub const KEEP: usize = 64;

/// A pool of empty byte buffers in two size classes.
#[derive(Debug)]
pub struct BufPool {
    small: Vec<Vec<u8>>,
    large: Vec<Vec<u8>>,
    large_size: usize,
    keep: usize,
    lent: usize,
    taken: u64,
    allocated: u64,
}

impl BufPool {
    /// A pool keeping at most `keep` buffers per class; the large class holds `large_size`
    /// bytes (the head limit; at least [`SMALL`]).
    pub fn new(keep: usize, large_size: usize) -> BufPool {
        BufPool {
            small: Vec::new(),
            large: Vec::new(),
            large_size: large_size.max(SMALL),
            keep,
            lent: 0,
            taken: 0,
            allocated: 0,
        }
    }

    /// An empty buffer with room for at least `min` bytes (a class buffer when `min` fits one,
    /// else exactly `min`, never kept on return).
    pub fn take(&mut self, min: usize) -> Vec<u8> {
        self.lent += 1;
        self.taken += 1;
        let (stack, size) = if min <= SMALL {
            (&mut self.small, SMALL)
        } else if min <= self.large_size {
            (&mut self.large, self.large_size)
        } else {
            self.allocated += 1;
            return Vec::with_capacity(min);
        };
        stack.pop().unwrap_or_else(|| {
            self.allocated += 1;
            Vec::with_capacity(size)
        })
    }

    /// Gives a buffer back: kept (emptied) when it is of a class and the class is not full,
    /// freed otherwise.
    pub fn give(&mut self, mut buf: Vec<u8>) {
        self.lent = self.lent.saturating_sub(1);
        let stack = match buf.capacity() {
            SMALL => &mut self.small,
            c if c == self.large_size => &mut self.large,
            _ => return,
        };
        if stack.len() < self.keep {
            buf.clear();
            stack.push(buf);
        }
    }

    /// The large class's size.
    pub fn large_size(&self) -> usize {
        self.large_size
    }

    /// Buffers lent and not yet given back.
    pub fn lent(&self) -> usize {
        self.lent
    }

    /// Buffers kept, both classes.
    pub fn kept(&self) -> usize {
        self.small.len() + self.large.len()
    }

    /// Buffers lent since the pool was made.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// Buffers allocated since the pool was made (a lent buffer that came from the pool is not
    /// counted again).
    pub fn allocated(&self) -> u64 {
        self.allocated
    }
}

thread_local! {
    /// The calling thread's pool; its large class is sized by [`set_large_size`].
    static POOL: RefCell<BufPool> = RefCell::new(BufPool::new(KEEP, 16_384));
}

/// Sizes the calling thread's large class (call once per serving thread with
/// `proxy.max_header_bytes`); buffers already kept are dropped.
pub fn set_large_size(size: usize) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let lent = p.lent;
        *p = BufPool::new(KEEP, size);
        p.lent = lent;
    });
}

/// Borrows a buffer from the calling thread's pool (see [`BufPool::take`]).
pub fn take(min: usize) -> Vec<u8> {
    POOL.with(|p| p.borrow_mut().take(min))
}

/// Gives a buffer back to the calling thread's pool (see [`BufPool::give`]).
pub fn give(buf: Vec<u8>) {
    POOL.with(|p| p.borrow_mut().give(buf));
}

/// Reads the calling thread's pool (for counters and tests).
pub fn with<T>(f: impl FnOnce(&BufPool) -> T) -> T {
    POOL.with(|p| f(&p.borrow()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_by_class_and_emptied() {
        let mut pool = BufPool::new(2, 16_384);
        let mut a = pool.take(100);
        assert_eq!(a.capacity(), SMALL);
        a.extend_from_slice(b"secret");
        let ptr = a.as_ptr();
        pool.give(a);
        let b = pool.take(SMALL);
        assert_eq!(b.as_ptr(), ptr, "the same buffer comes back");
        assert!(b.is_empty(), "emptied on return");
        let big = pool.take(SMALL + 1);
        assert_eq!(big.capacity(), 16_384);
        assert_eq!(pool.lent(), 2);
        pool.give(b);
        pool.give(big);
        assert_eq!((pool.lent(), pool.kept(), pool.allocated()), (0, 2, 2));
    }

    #[test]
    fn at_most_keep_per_class_and_odd_sizes_are_freed() {
        let mut pool = BufPool::new(2, 16_384);
        let bufs: Vec<_> = (0..5).map(|_| pool.take(10)).collect();
        for b in bufs {
            pool.give(b);
        }
        assert_eq!(pool.kept(), 2, "a burst leaves at most `keep` behind");
        let mut grown = pool.take(10);
        grown.extend_from_slice(&[0; SMALL + 1]);
        pool.give(grown);
        let huge = pool.take(100_000);
        assert_eq!(huge.capacity(), 100_000);
        pool.give(huge);
        pool.give(Vec::with_capacity(100));
        assert_eq!(
            pool.kept(),
            1,
            "grown, oversized and foreign buffers are freed"
        );
    }

    #[test]
    fn the_thread_pool_counts_what_is_lent() {
        set_large_size(32_768);
        let a = take(20_000);
        assert_eq!(a.capacity(), 32_768);
        assert_eq!(with(BufPool::lent), 1);
        give(a);
        assert_eq!(with(|p| (p.lent(), p.kept())), (0, 1));
    }
}
