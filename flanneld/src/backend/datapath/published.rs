//! Configuration the forwarding threads read on every packet (the peer table), built off the
//! datapath and published as an immutable snapshot. Workers pick up a new one between batches
//! with one atomic load, so lookups take no lock and allocate nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The current snapshot, shared between the control thread and the workers.
#[derive(Debug, Default)]
pub(crate) struct Published<T> {
    generation: AtomicU64,
    current: Mutex<Arc<T>>,
}

impl<T> Published<T> {
    pub fn publish(&self, value: T) {
        let mut cur = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        *cur = Arc::new(value);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The current snapshot, for readers outside the forwarding threads.
    pub fn load(&self) -> Arc<T> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn reader(&self) -> Reader<T> {
        Reader {
            // Read before the value: a publish in between only causes one extra refresh.
            generation: self.generation.load(Ordering::Acquire),
            value: self.load(),
        }
    }
}

/// A worker's view of the snapshot.
#[derive(Debug)]
pub(crate) struct Reader<T> {
    generation: u64,
    value: Arc<T>,
}

impl<T> Reader<T> {
    /// Takes the newest snapshot if it changed since the last call.
    pub fn refresh(&mut self, shared: &Published<T>) {
        if shared.generation.load(Ordering::Acquire) != self.generation {
            *self = shared.reader();
        }
    }

    pub fn get(&self) -> &T {
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_a_new_snapshot_after_refresh() {
        let shared = Published::<u32>::default();
        let mut r = shared.reader();
        assert_eq!(*r.get(), 0);
        shared.publish(7);
        assert_eq!(*r.get(), 0, "no change before refresh");
        r.refresh(&shared);
        assert_eq!(*r.get(), 7);
        assert_eq!(*shared.load(), 7);
    }
}
