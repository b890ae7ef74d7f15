//! The crate's one way to take a [`std::sync::Mutex`].

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, and takes it even if a thread panicked while holding it.
///
/// Every critical section in the crate is short and writes whole values (an insert, a
/// counter, a swap of state), so a panic inside one can't leave the data half-changed;
/// refusing the lock from then on would turn one panicked task into a stuck bot.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
