//! The runtime's maps of customers and ids, and the one way to change a value in place.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// How the runtime's per-customer maps hash: rapidhash, seeded per map (`metrics` already
/// builds it). A turn looks a customer up some thirty times across the inbox, claims,
/// budget and session maps, and std's SipHash of the two ids was the larger part of each
/// lookup.
pub(crate) type Hasher = rapidhash::fast::RandomState;

/// A map keyed by customers or WeCom's ids, hashed with [`Hasher`].
pub(crate) type Map<K, V> = HashMap<K, V, Hasher>;

/// A set of WeCom's ids, hashed with [`Hasher`].
#[cfg(feature = "bot")]
pub(crate) type Set<K> = std::collections::HashSet<K, Hasher>;

/// `change` on the value of `key`, made with `Default` if there is none. Unlike
/// `entry(key.to_owned())`, the key is copied only when the value is new: a customer's key
/// is two strings, and most changes are to a value that exists.
pub(crate) fn change<K, Q, V, S, T>(
    map: &mut HashMap<K, V, S>,
    key: &Q,
    change: impl FnOnce(&mut V) -> T,
) -> T
where
    K: Hash + Eq + Borrow<Q>,
    Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    V: Default,
    S: BuildHasher,
{
    match map.get_mut(key) {
        Some(value) => change(value),
        None => change(map.entry(key.to_owned()).or_default()),
    }
}
