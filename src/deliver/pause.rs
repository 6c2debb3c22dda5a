//! Paused routes and destinations: events keep arriving and their deliveries wait in the
//! store until resumed. The set is kept in the store (it survives restarts) and mirrored
//! here, where the worker and the preparer read it every round, with the reason when
//! forebay paused one itself (a route whose expressions keep running past their time limit).

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

use crate::store::{Pausable, Paused};

#[derive(Debug, Default)]
pub struct Pauses {
    /// What is paused, and why when forebay paused it.
    set: RwLock<BTreeMap<(Pausable, String), Option<String>>>,
}

impl Pauses {
    pub fn new(paused: impl IntoIterator<Item = Paused>) -> Self {
        Self {
            set: RwLock::new(
                paused
                    .into_iter()
                    .map(|p| ((p.kind, p.name), p.reason))
                    .collect(),
            ),
        }
    }

    pub fn is_paused(&self, kind: Pausable, name: &str) -> bool {
        self.read().contains_key(&(kind, name.to_owned()))
    }

    /// Why forebay paused it; `None` when it is not paused or an operator paused it.
    pub fn reason(&self, kind: Pausable, name: &str) -> Option<String> {
        self.read().get(&(kind, name.to_owned())).cloned().flatten()
    }

    pub fn set(&self, kind: Pausable, name: &str, paused: bool, reason: Option<String>) {
        let mut set = self.set.write().unwrap_or_else(PoisonError::into_inner);
        if paused {
            set.insert((kind, name.to_owned()), reason);
        } else {
            set.remove(&(kind, name.to_owned()));
        }
    }

    /// The paused routes, for claims and preparation to skip.
    pub fn routes(&self) -> Vec<String> {
        self.read()
            .keys()
            .filter(|(k, _)| *k == Pausable::Route)
            .map(|(_, n)| n.clone())
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<(Pausable, String), Option<String>>> {
        self.set.read().unwrap_or_else(PoisonError::into_inner)
    }
}
