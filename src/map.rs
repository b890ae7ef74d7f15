//! The crate's one way to change a map's value in place, made if missing.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// `change` on the value of `key`, made with `Default` if there is none. Unlike
/// `entry(key.to_owned())`, the key is copied only when the value is new: a customer's key
/// is two strings, and most changes are to a value that exists.
pub(crate) fn change<K, Q, V, T>(
    map: &mut HashMap<K, V>,
    key: &Q,
    change: impl FnOnce(&mut V) -> T,
) -> T
where
    K: Hash + Eq + Borrow<Q>,
    Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    V: Default,
{
    match map.get_mut(key) {
        Some(value) => change(value),
        None => change(map.entry(key.to_owned()).or_default()),
    }
}
