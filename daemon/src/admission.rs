//! Connection caps for rsgid's own listeners (the control socket, the metrics and
//! emperor stats ports), so that no local user can fill rsgid's fd table or lock the
//! administrators out by holding connections open.
//!
//! Each listener has a [`Gate`]. A connection is admitted by [`decide`] (pure, table
//! tested) from the counts of connections open now and the peer's [`Class`]:
//!
//! - privileged peers (root, and rsgid's own user: the administrators) first use a
//!   reserve that nobody else can take, then the shared pool;
//! - every other peer shares the pool, at most `per_user` connections per uid (for
//!   the control socket, where `SO_PEERCRED` tells the uid) or `shared` in all (for TCP,
//!   where it does not).
//!
//! A connection that is not admitted is closed right after `accept`, which costs one
//! fd for a moment. The admission is a [`Ticket`] that gives the place back when the
//! connection task ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The caps of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections of unprivileged (and unknown) peers, in all.
    pub shared: usize,
    /// Connections of one unprivileged uid.
    pub per_user: usize,
    /// Connections only privileged peers may use (on top of `shared`).
    pub reserved: usize,
}

/// Who is connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Root or rsgid's own user.
    Privileged,
    /// Another local user (`SO_PEERCRED`).
    User(u32),
    /// A peer whose user is unknown (TCP).
    Anonymous,
}

impl Class {
    /// The class of a peer with `uid` (if known) when rsgid runs as `own_uid`.
    pub fn of(uid: Option<u32>, own_uid: u32) -> Class {
        match uid {
            Some(0) => Class::Privileged,
            Some(u) if u == own_uid => Class::Privileged,
            Some(u) => Class::User(u),
            None => Class::Anonymous,
        }
    }
}

/// The connections open now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// In the reserve.
    pub reserved: usize,
    /// In the shared pool.
    pub shared: usize,
    /// Per unprivileged uid, in the shared pool.
    pub per_user: HashMap<u32, usize>,
}

/// Where an admitted connection counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The privileged reserve.
    Reserve,
    /// The shared pool, for this holder.
    Shared(Class),
}

/// Whether a connection of `class` may open now, and where it counts.
pub fn decide(counts: &Counts, limits: &Limits, class: Class) -> Option<Place> {
    let shared_free = counts.shared < limits.shared;
    match class {
        Class::Privileged if counts.reserved < limits.reserved => Some(Place::Reserve),
        Class::Privileged | Class::Anonymous => shared_free.then_some(Place::Shared(class)),
        Class::User(uid) => {
            let mine = counts.per_user.get(&uid).copied().unwrap_or(0);
            (shared_free && mine < limits.per_user).then_some(Place::Shared(class))
        }
    }
}

fn take(counts: &mut Counts, place: Place) {
    match place {
        Place::Reserve => counts.reserved += 1,
        Place::Shared(class) => {
            counts.shared += 1;
            if let Class::User(uid) = class {
                *counts.per_user.entry(uid).or_insert(0) += 1;
            }
        }
    }
}

fn give_back(counts: &mut Counts, place: Place) {
    match place {
        Place::Reserve => counts.reserved = counts.reserved.saturating_sub(1),
        Place::Shared(class) => {
            counts.shared = counts.shared.saturating_sub(1);
            if let Class::User(uid) = class {
                if let Some(n) = counts.per_user.get_mut(&uid) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        counts.per_user.remove(&uid);
                    }
                }
            }
        }
    }
}

/// One listener's caps and counts.
#[derive(Debug, Clone)]
pub struct Gate {
    limits: Limits,
    counts: Arc<Mutex<Counts>>,
}

/// An admitted connection's place; given back on drop.
#[derive(Debug)]
pub struct Ticket {
    counts: Arc<Mutex<Counts>>,
    place: Place,
}

impl Gate {
    /// A gate with `limits`.
    pub fn new(limits: Limits) -> Gate {
        Gate {
            limits,
            counts: Arc::new(Mutex::new(Counts::default())),
        }
    }

    /// Admit a connection of `class`, or `None` when its caps are reached.
    pub fn admit(&self, class: Class) -> Option<Ticket> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let place = decide(&counts, &self.limits, class)?;
        take(&mut counts, place);
        Some(Ticket {
            counts: Arc::clone(&self.counts),
            place,
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        give_back(&mut counts, self.place);
    }
}

/// Logs refused connections without letting a flood flood the log: the first refusal,
/// then a count at most every [`Refusals::EVERY`].
#[derive(Debug, Default)]
pub struct Refusals {
    since_log: u64,
    last_log: Option<std::time::Instant>,
}

impl Refusals {
    /// Least time between two log lines.
    pub const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    /// One connection on `listener` was refused (peer `uid`, if known).
    pub fn note(&mut self, listener: &str, uid: Option<u32>) {
        self.since_log += 1;
        let now = std::time::Instant::now();
        if self
            .last_log
            .is_some_and(|t| now.duration_since(t) < Self::EVERY)
        {
            return;
        }
        let who = uid.map_or_else(|| "a peer".to_owned(), |u| format!("uid {u}"));
        tracing::warn!(
            "{listener}: connection limit reached: closed {} new connection(s), the last from {who}",
            self.since_log
        );
        self.since_log = 0;
        self.last_log = Some(now);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const L: Limits = Limits {
        shared: 4,
        per_user: 2,
        reserved: 2,
    };

    fn counts(reserved: usize, shared: usize, users: &[(u32, usize)]) -> Counts {
        Counts {
            reserved,
            shared,
            per_user: users.iter().copied().collect(),
        }
    }

    #[test]
    fn decide_table() {
        use Class::*;
        let rows: &[(Counts, Class, Option<Place>)] = &[
            // Room everywhere.
            (counts(0, 0, &[]), Privileged, Some(Place::Reserve)),
            (
                counts(0, 0, &[]),
                User(1000),
                Some(Place::Shared(User(1000))),
            ),
            (counts(0, 0, &[]), Anonymous, Some(Place::Shared(Anonymous))),
            // The reserve full: privileged peers share the pool.
            (
                counts(2, 0, &[]),
                Privileged,
                Some(Place::Shared(Privileged)),
            ),
            // A user at its own cap, others still admitted.
            (counts(0, 2, &[(1000, 2)]), User(1000), None),
            (
                counts(0, 2, &[(1000, 2)]),
                User(1001),
                Some(Place::Shared(User(1001))),
            ),
            // The pool full: only the reserve is left, for privileged peers only.
            (counts(0, 4, &[(1000, 2), (1001, 2)]), User(1002), None),
            (counts(0, 4, &[(1000, 2), (1001, 2)]), Anonymous, None),
            (
                counts(0, 4, &[(1000, 2), (1001, 2)]),
                Privileged,
                Some(Place::Reserve),
            ),
            (counts(2, 4, &[(1000, 2), (1001, 2)]), Privileged, None),
        ];
        for (i, (c, class, want)) in rows.iter().enumerate() {
            assert_eq!(decide(c, &L, *class), *want, "row {i}: {c:?} {class:?}");
        }
    }

    #[test]
    fn classes() {
        assert_eq!(Class::of(Some(0), 1000), Class::Privileged);
        assert_eq!(Class::of(Some(1000), 1000), Class::Privileged);
        assert_eq!(Class::of(Some(1001), 1000), Class::User(1001));
        assert_eq!(Class::of(None, 0), Class::Anonymous);
    }

    #[test]
    fn tickets_give_their_place_back() {
        let gate = Gate::new(L);
        let a: Vec<Ticket> = (0..2).filter_map(|_| gate.admit(Class::User(7))).collect();
        assert_eq!(a.len(), 2);
        assert!(gate.admit(Class::User(7)).is_none());
        drop(a);
        assert!(gate.admit(Class::User(7)).is_some());
        let pool: Vec<Ticket> = (0..10)
            .filter_map(|_| gate.admit(Class::Anonymous))
            .collect();
        assert_eq!(pool.len(), 4);
        let root: Vec<Ticket> = (0..10)
            .filter_map(|_| gate.admit(Class::Privileged))
            .collect();
        assert_eq!(root.len(), 2, "the reserve");
        drop(pool);
        assert_eq!(*gate.counts.lock().unwrap(), counts(2, 0, &[]));
    }
}
