//! Paused routes and destinations: events keep arriving and their deliveries wait in the
//! store until resumed. The set is kept in the store (it survives restarts) and mirrored
//! here, where the worker reads it every round.

use std::collections::BTreeSet;
use std::sync::RwLock;

use crate::store::Pausable;

#[derive(Debug, Default)]
pub struct Pauses {
    set: RwLock<BTreeSet<(Pausable, String)>>,
}

impl Pauses {
    pub fn new(paused: impl IntoIterator<Item = (Pausable, String)>) -> Self {
        Self {
            set: RwLock::new(paused.into_iter().collect()),
        }
    }

    pub fn is_paused(&self, kind: Pausable, name: &str) -> bool {
        self.set
            .read()
            .map(|s| s.contains(&(kind, name.to_owned())))
            .unwrap_or(false)
    }

    pub fn set(&self, kind: Pausable, name: &str, paused: bool) {
        if let Ok(mut s) = self.set.write() {
            if paused {
                s.insert((kind, name.to_owned()));
            } else {
                s.remove(&(kind, name.to_owned()));
            }
        }
    }

    /// The paused routes, for claims to skip.
    pub fn routes(&self) -> Vec<String> {
        self.set
            .read()
            .map(|s| {
                s.iter()
                    .filter(|(k, _)| *k == Pausable::Route)
                    .map(|(_, n)| n.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}
