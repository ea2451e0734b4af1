//! The paint threads: dedicated OS threads that run painters (CPU- or GPU-bound, seconds
//! long), so inference never blocks the async runtime.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use super::busy::BusyClock;

type Task = Box<dyn FnOnce() + Send>;

/// A fixed number of threads taking tasks in order.
#[derive(Debug)]
pub struct PaintPool {
    tasks: Option<Sender<Task>>,
    threads: Vec<JoinHandle<()>>,
    busy: Arc<BusyClock>,
}

/// The pool's threads are gone (they exited or could not be started).
#[derive(Debug, thiserror::Error)]
#[error("the paint threads are not running")]
pub struct PoolClosed;

impl PaintPool {
    /// Starts `threads` threads (at least one), named `painter-<n>`.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let (tx, rx) = channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        let busy = Arc::new(BusyClock::new(threads.max(1)));
        let threads = (0..threads.max(1))
            .map(|n| {
                let (rx, busy) = (rx.clone(), busy.clone());
                std::thread::Builder::new()
                    .name(format!("painter-{n}"))
                    .spawn(move || serve(&rx, &busy, n))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self {
            tasks: Some(tx),
            threads,
            busy,
        })
    }

    /// The threads' busy time.
    pub fn busy(&self) -> &Arc<BusyClock> {
        &self.busy
    }

    /// Runs `task` on the next free thread.
    pub fn submit(&self, task: impl FnOnce() + Send + 'static) -> Result<(), PoolClosed> {
        self.tasks
            .as_ref()
            .ok_or(PoolClosed)?
            .send(Box::new(task))
            .map_err(|_| PoolClosed)
    }

    /// Threads in the pool.
    #[cfg(test)]
    pub fn size(&self) -> usize {
        self.threads.len()
    }
}

fn serve(rx: &Mutex<Receiver<Task>>, busy: &BusyClock, thread: usize) {
    loop {
        let task = {
            let guard = rx.lock().unwrap_or_else(PoisonError::into_inner);
            guard.recv()
        };
        match task {
            // A panicking painter ends its task, not the thread: the task's answer channel
            // is dropped, which the job reports as an internal failure.
            Ok(task) => {
                busy.start(thread, Instant::now());
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task));
                busy.stop(thread, Instant::now());
            }
            Err(_) => return,
        }
    }
}

impl Drop for PaintPool {
    /// Lets the threads finish their current task and exit (not waited for: a painter may
    /// take a while to notice a cancellation).
    fn drop(&mut self) {
        self.tasks = None;
        self.threads.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tasks_run_on_named_threads_at_most_n_at_once() {
        let pool = PaintPool::new(2).unwrap();
        assert_eq!(pool.size(), 2);
        let (tx, rx) = channel();
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..6 {
            let (tx, running) = (tx.clone(), running.clone());
            pool.submit(move || {
                let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                std::thread::sleep(Duration::from_millis(20));
                running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                let name = std::thread::current().name().map(str::to_owned);
                tx.send((now, name)).unwrap();
            })
            .unwrap();
        }
        let seen: Vec<(usize, Option<String>)> = (0..6).map(|_| rx.recv().unwrap()).collect();
        assert!(seen.iter().all(|(n, _)| *n <= 2));
        assert!(
            seen.iter()
                .all(|(_, name)| name.as_deref().is_some_and(|n| n.starts_with("painter-")))
        );
    }

    #[test]
    fn the_threads_time_in_tasks_is_counted() {
        let pool = PaintPool::new(2).unwrap();
        let before = pool.busy().busy_until(Instant::now());
        assert_eq!(before, Duration::ZERO);
        let (tx, rx) = channel();
        for _ in 0..2 {
            let tx = tx.clone();
            pool.submit(move || {
                std::thread::sleep(Duration::from_millis(50));
                tx.send(()).unwrap();
            })
            .unwrap();
        }
        rx.recv().unwrap();
        rx.recv().unwrap();
        // Both tasks slept 50 ms (a task whose end is not marked yet counts up to now).
        let busy = pool.busy().busy_until(Instant::now());
        assert!(busy >= Duration::from_millis(100), "{busy:?}");
        assert!(busy < Duration::from_secs(5), "{busy:?}");
    }
}
