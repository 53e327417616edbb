//! The queue behind every batching of this layer (ReadIndex rounds,
//! proposals, forwarded writes): callers queue an item and wait for its
//! answer; at most a few tasks drain the queue, each taking a batch at a
//! time, and each ends when it finds the queue empty. Whoever queues an item
//! while fewer tasks run than allowed starts one, so a lone caller is served
//! at once and callers that arrive while a batch is in flight share the next.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Items waiting for the next batch.
pub(super) struct Queue<T> {
    waiting: Mutex<Waiting<T>>,
}

struct Waiting<T> {
    /// Tasks draining the queue.
    running: usize,
    items: VecDeque<T>,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self { waiting: Mutex::new(Waiting { running: 0, items: VecDeque::new() }) }
    }
}

/// Items one queue holds at most: past it, callers are refused (etcd's
/// "too many requests") instead of queueing without bound.
pub(super) const MAX_WAITING: usize = 10_000;

/// The queue is full (see [`MAX_WAITING`]); the item comes back.
#[derive(Debug)]
pub(super) struct Full<T>(pub T);

impl<T> Queue<T> {
    /// Queues `item`. True when the caller must start a draining task (fewer
    /// than `max_running` run); the task is counted from now on. A full
    /// queue gives the item back.
    pub(super) fn push(&self, item: T, max_running: usize) -> Result<bool, Full<T>> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if waiting.items.len() >= MAX_WAITING {
            return Err(Full(item));
        }
        waiting.items.push_back(item);
        let start = waiting.running < max_running;
        if start {
            waiting.running += 1;
        }
        Ok(start)
    }

    /// The next batch, as `take` picks it from the waiting items (it must
    /// take at least one); `None` when nothing waits, and the calling task
    /// must then end (it is no longer counted).
    pub(super) fn next_batch(&self, take: impl FnOnce(&mut VecDeque<T>) -> Vec<T>) -> Option<Vec<T>> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if waiting.items.is_empty() {
            waiting.running -= 1;
            return None;
        }
        Some(take(&mut waiting.items))
    }
}

/// Takes from `items` the oldest `eligible` ones that fit in one batch of
/// at most `max_items` items and `max_bytes` bytes as `size` counts them (at
/// least one, if any is eligible: an item larger than the limit goes alone).
/// The others stay queued, in order.
pub(super) fn take_fitting<T>(
    items: &mut VecDeque<T>,
    max_items: usize,
    max_bytes: usize,
    size: impl Fn(&T) -> usize,
    eligible: impl Fn(&T) -> bool,
) -> Vec<T> {
    let mut taken = Vec::new();
    let mut kept = VecDeque::new();
    let mut bytes = 0;
    let mut full = false;
    while let Some(item) = items.pop_front() {
        if full || !eligible(&item) {
            kept.push_back(item);
            continue;
        }
        let item_bytes = size(&item);
        if !taken.is_empty() && (taken.len() == max_items || bytes + item_bytes > max_bytes) {
            full = true;
            kept.push_back(item);
            continue;
        }
        bytes += item_bytes;
        taken.push(item);
    }
    *items = kept;
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_task_drains_until_empty_then_the_next_caller_starts_another() {
        let queue = Queue::default();
        assert!(queue.push(1, 1).unwrap(), "the first caller starts a task");
        assert!(!queue.push(2, 1).unwrap(), "one task at most");
        assert_eq!(queue.next_batch(|q| q.drain(..).collect()), Some(vec![1, 2]));
        assert_eq!(queue.next_batch(|q| q.drain(..).collect()), None, "empty: the task ends");
        assert!(queue.push(3, 1).unwrap(), "no task runs: the caller starts one");
    }

    #[test]
    fn a_batch_takes_the_oldest_eligible_items_that_fit_and_keeps_the_others_in_order() {
        let mut items: VecDeque<(char, usize)> = [('a', 4), ('b', 1), ('a', 4), ('a', 1), ('b', 1)].into();
        let a = |item: &(char, usize)| item.0 == 'a';
        let batch = take_fitting(&mut items, 10, 8, |item| item.1, a);
        assert_eq!(batch, vec![('a', 4), ('a', 4)], "the third a would pass 8 bytes");
        assert_eq!(items, VecDeque::from([('b', 1), ('a', 1), ('b', 1)]));
        assert_eq!(take_fitting(&mut items, 1, 8, |item| item.1, |_| true), vec![('b', 1)], "one item at most");
        assert_eq!(take_fitting(&mut items, 10, 0, |item| item.1, |_| true), vec![('a', 1)], "a large item goes alone");
    }

    #[test]
    fn up_to_max_running_tasks_start() {
        let queue = Queue::default();
        assert!(queue.push('a', 2).unwrap());
        assert!(queue.push('b', 2).unwrap());
        assert!(!queue.push('c', 2).unwrap());
    }

    #[test]
    fn a_full_queue_gives_the_item_back() {
        let queue = Queue::default();
        for i in 0..MAX_WAITING {
            queue.push(i, 1).unwrap();
        }
        assert!(matches!(queue.push(MAX_WAITING, 1), Err(Full(item)) if item == MAX_WAITING));
        queue.next_batch(|items| items.drain(..1).collect()).unwrap();
        assert!(queue.push(MAX_WAITING, 1).is_ok(), "room again once a batch was taken");
    }
}
