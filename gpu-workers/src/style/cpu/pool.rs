//! Reusable activation buffers. A run takes its buffers from a [`Pool`] and every buffer goes
//! back to it when dropped; after the run the pool's buffers go back to the network's
//! [`Buffers`] for the next run. So the large buffers are allocated, and their pages faulted
//! in, once per image size instead of once per layer and run: on 2 cores, with fresh buffers
//! a quarter of the CPU time of a 512x512 run went to page faults and zeroing.

use std::cell::RefCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, PoisonError};

/// Most buffers kept between runs (a run uses about six at once).
const KEPT: usize = 12;

/// The buffers the finished runs left, for the next ones. Two runs at once each take their
/// own (the second starts with none).
#[derive(Default)]
pub(crate) struct Buffers {
    free: Mutex<Vec<Vec<f32>>>,
}

impl fmt::Debug for Buffers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kept, floats) = self.kept();
        f.debug_struct("Buffers")
            .field("kept", &kept)
            .field("floats", &floats)
            .finish()
    }
}

impl Buffers {
    /// How many buffers are kept, and their floats.
    pub(crate) fn kept(&self) -> (usize, usize) {
        let free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        (free.len(), free.iter().map(Vec::len).sum())
    }

    /// The buffers for one run.
    pub(crate) fn pool(&self) -> Pool {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        Pool {
            free: RefCell::new(std::mem::take(&mut *free)),
        }
    }

    /// Keeps a finished run's buffers, the largest first.
    pub(crate) fn keep(&self, pool: Pool) {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        free.extend(pool.free.into_inner());
        free.sort_by_key(|b| std::cmp::Reverse(b.len()));
        free.truncate(KEPT);
    }
}

/// The buffers of one run (one thread).
#[derive(Debug, Default)]
pub(crate) struct Pool {
    free: RefCell<Vec<Vec<f32>>>,
}

impl Pool {
    /// `len` floats whose values are whatever the buffer held before: every user writes all
    /// of them. The smallest free buffer that is large enough, else the largest one, grown.
    pub(crate) fn take(&self, len: usize) -> Buf<'_> {
        let mut free = self.free.borrow_mut();
        let fits = free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len() >= len)
            .min_by_key(|(_, b)| b.len())
            .map(|(i, _)| i);
        let pick = fits.or_else(|| {
            free.iter()
                .enumerate()
                .max_by_key(|(_, b)| b.len())
                .map(|(i, _)| i)
        });
        let mut data = pick.map(|i| free.swap_remove(i)).unwrap_or_default();
        if data.len() < len {
            data.resize(len, 0.0);
        }
        Buf {
            data,
            len,
            home: &self.free,
        }
    }
}

/// A buffer of a [`Pool`], back in the pool when dropped.
pub(crate) struct Buf<'p> {
    /// At least `len` floats; only the first `len` are the buffer's.
    data: Vec<f32>,
    len: usize,
    home: &'p RefCell<Vec<Vec<f32>>>,
}

impl fmt::Debug for Buf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buf").field("len", &self.len).finish()
    }
}

impl Deref for Buf<'_> {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        &self.data[..self.len]
    }
}

impl DerefMut for Buf<'_> {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.data[..self.len]
    }
}

impl Drop for Buf<'_> {
    fn drop(&mut self) {
        self.home.borrow_mut().push(std::mem::take(&mut self.data));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_across_layers_and_runs() {
        let buffers = Buffers::default();
        let pool = buffers.pool();
        let a = pool.take(1000);
        let ptr = a.as_ptr();
        drop(a);
        // A smaller request takes the same buffer, seen at its own length.
        let b = pool.take(10);
        assert_eq!((b.len(), b.as_ptr()), (10, ptr));
        // Taken ones are not handed out twice.
        let c = pool.take(10);
        assert_ne!(c.as_ptr(), ptr);
        drop((b, c));
        buffers.keep(pool);
        let pool = buffers.pool();
        let d = pool.take(1000);
        assert_eq!(d.as_ptr(), ptr, "the next run gets the largest buffer back");
        // A larger request grows the largest buffer.
        drop(d);
        let e = pool.take(5000);
        assert_eq!(e.len(), 5000);
    }

    #[test]
    fn at_most_a_few_buffers_are_kept() {
        let buffers = Buffers::default();
        let pool = buffers.pool();
        let many: Vec<_> = (0..KEPT + 5).map(|i| pool.take(i + 1)).collect();
        drop(many);
        buffers.keep(pool);
        let pool = buffers.pool();
        assert_eq!(pool.free.borrow().len(), KEPT);
        assert_eq!(
            pool.free.borrow()[0].len(),
            KEPT + 5,
            "the largest are kept"
        );
    }
}
