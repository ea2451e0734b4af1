//! Which held request runs next: round-robin across users, first-come first-served within a
//! user. A user with fifty queued requests takes one turn in each round, so another user's
//! single request waits for at most one job per other user, not for all fifty.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Queued jobs (`J`, e.g. request ids) per user (`U`), served round-robin.
#[derive(Debug, Clone)]
pub struct FairQueue<U, J> {
    /// Users with queued jobs, the next to serve first.
    turns: VecDeque<U>,
    queues: HashMap<U, VecDeque<J>>,
}

impl<U, J> Default for FairQueue<U, J> {
    fn default() -> Self {
        Self {
            turns: VecDeque::new(),
            queues: HashMap::new(),
        }
    }
}

impl<U: Eq + Hash + Clone, J: PartialEq> FairQueue<U, J> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `job` behind `user`'s other jobs. A user new to the queue takes the last turn.
    pub fn push(&mut self, user: U, job: J) {
        let queue = self.queues.entry(user.clone()).or_default();
        if queue.is_empty() {
            self.turns.push_back(user);
        }
        queue.push_back(job);
    }

    /// The next job whose turn it is among those `ready` accepts (jobs that are not ready,
    /// e.g. waiting for an identical job to finish, keep their place). The user served goes
    /// to the back of the round.
    pub fn pop_next(&mut self, mut ready: impl FnMut(&J) -> bool) -> Option<J> {
        for turn in 0..self.turns.len() {
            let user = self.turns.get(turn)?.clone();
            let Some(queue) = self.queues.get_mut(&user) else {
                continue;
            };
            let Some(at) = queue.iter().position(&mut ready) else {
                continue;
            };
            let job = queue.remove(at)?;
            self.turns.remove(turn);
            if queue.is_empty() {
                self.queues.remove(&user);
            } else {
                self.turns.push_back(user);
            }
            return Some(job);
        }
        None
    }

    /// Takes `job` out of the queue (cancelled, or its partition was revoked). True when it
    /// was queued.
    pub fn remove(&mut self, user: &U, job: &J) -> bool {
        let Some(queue) = self.queues.get_mut(user) else {
            return false;
        };
        let Some(at) = queue.iter().position(|j| j == job) else {
            return false;
        };
        queue.remove(at);
        if queue.is_empty() {
            self.queues.remove(user);
            self.turns.retain(|u| u != user);
        }
        true
    }

    /// Jobs queued, all users together.
    pub fn len(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut FairQueue<&'static str, u32>) -> Vec<u32> {
        std::iter::from_fn(|| q.pop_next(|_| true)).collect()
    }

    #[test]
    fn a_burst_does_not_starve_a_single_request() {
        let mut q = FairQueue::new();
        for job in 0..50 {
            q.push("burst", job);
        }
        q.push("alone", 100);
        let order = drain(&mut q);
        let alone_at = order.iter().position(|j| *j == 100);
        // One job of the burst (queued first), then the single request.
        assert_eq!(alone_at, Some(1));
        assert_eq!(order.len(), 51);
        let burst: Vec<u32> = order.into_iter().filter(|j| *j != 100).collect();
        assert_eq!(burst, (0..50).collect::<Vec<_>>(), "FIFO within a user");
    }

    #[test]
    fn users_take_turns() {
        let mut q = FairQueue::new();
        q.push("a", 1);
        q.push("a", 2);
        q.push("a", 3);
        q.push("b", 10);
        q.push("b", 11);
        q.push("c", 20);
        assert_eq!(drain(&mut q), vec![1, 10, 20, 2, 11, 3]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_job_that_is_not_ready_keeps_its_place_and_others_pass() {
        let mut q = FairQueue::new();
        q.push("a", 1);
        q.push("a", 2);
        q.push("b", 10);
        assert_eq!(q.pop_next(|j| *j != 1), Some(2));
        assert_eq!(q.pop_next(|j| *j != 1), Some(10));
        assert_eq!(q.pop_next(|j| *j != 1), None);
        assert_eq!(q.pop_next(|_| true), Some(1));
    }

    #[test]
    fn removed_jobs_are_not_served() {
        let mut q = FairQueue::new();
        q.push("a", 1);
        q.push("b", 10);
        assert!(q.remove(&"a", &1));
        assert!(!q.remove(&"a", &1));
        assert_eq!(q.len(), 1);
        assert_eq!(drain(&mut q), vec![10]);
    }
}
