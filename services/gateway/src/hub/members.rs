//! A channel's local members: a short list while there are a few (most
//! channels are one user's connections, and a hash map's smallest table has
//! room for four), a map once there are more. Fan-out iterates it under the
//! hub's lock, so it stays a plain collection: no locks, no allocation per
//! lookup.

use std::collections::HashMap;

use crate::handle::ConnId;

/// A channel's local members, each a connection and its `M`.
pub(super) enum Members<M> {
    Few(Vec<(ConnId, M)>),
    Many(HashMap<ConnId, M>),
}

/// Members kept in a list at most.
pub(super) const FEW: usize = 8;

impl<M> Default for Members<M> {
    fn default() -> Self {
        Members::Few(Vec::new())
    }
}

impl<M> Members<M> {
    /// Adds `conn`, or replaces its entry.
    pub(super) fn insert(&mut self, conn: ConnId, member: M) {
        match self {
            Members::Few(list) => {
                if let Some(slot) = list.iter_mut().find(|(c, _)| *c == conn) {
                    slot.1 = member;
                } else if list.len() < FEW {
                    // 1, 2, 4, 8 slots: one for the first member (a Vec would make four).
                    if list.len() == list.capacity() {
                        list.reserve_exact(list.len().max(1));
                    }
                    list.push((conn, member));
                } else {
                    let mut map: HashMap<ConnId, M> = list.drain(..).collect();
                    map.insert(conn, member);
                    *self = Members::Many(map);
                }
            }
            Members::Many(map) => {
                map.insert(conn, member);
            }
        }
    }

    pub(super) fn remove(&mut self, conn: ConnId) {
        match self {
            Members::Few(list) => {
                if let Some(i) = list.iter().position(|(c, _)| *c == conn) {
                    list.swap_remove(i);
                }
            }
            Members::Many(map) => {
                map.remove(&conn);
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Members::Few(list) => list.len(),
            Members::Many(map) => map.len(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    fn contains(&self, conn: ConnId) -> bool {
        self.get(conn).is_some()
    }

    pub(super) fn get(&self, conn: ConnId) -> Option<&M> {
        match self {
            Members::Few(list) => list.iter().find(|(c, _)| *c == conn).map(|(_, m)| m),
            Members::Many(map) => map.get(&conn),
        }
    }

    pub(super) fn get_mut(&mut self, conn: ConnId) -> Option<&mut M> {
        match self {
            Members::Few(list) => list.iter_mut().find(|(c, _)| *c == conn).map(|(_, m)| m),
            Members::Many(map) => map.get_mut(&conn),
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (ConnId, &M)> {
        let (few, many) = match self {
            Members::Few(list) => (Some(list.iter().map(|(c, m)| (*c, m))), None),
            Members::Many(map) => (None, Some(map.iter().map(|(c, m)| (*c, m)))),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &M> {
        self.iter().map(|(_, m)| m)
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut M> {
        let (few, many) = match self {
            Members::Few(list) => (Some(list.iter_mut().map(|(_, m)| m)), None),
            Members::Many(map) => (None, Some(map.values_mut())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_a_list_while_few_and_a_map_beyond() {
        let mut members = Members::default();
        let add = |members: &mut Members<&str>, conn: ConnId| members.insert(conn, "member");
        add(&mut members, 1);
        assert!(matches!(&members, Members::Few(list) if list.capacity() == 1));
        add(&mut members, 1);
        assert_eq!(
            members.len(),
            1,
            "a second join of one connection replaces it"
        );
        for conn in 2..=FEW as ConnId {
            add(&mut members, conn);
        }
        assert!(matches!(members, Members::Few(_)));
        add(&mut members, 100);
        assert!(matches!(members, Members::Many(_)));
        assert_eq!(members.len(), FEW + 1);
        let mut seen: Vec<ConnId> = members.iter().map(|(c, _)| c).collect();
        seen.sort();
        assert_eq!(seen, (1..=FEW as ConnId).chain([100]).collect::<Vec<_>>());
        assert!(members.contains(100) && members.get_mut(3).is_some());
        for conn in (1..=FEW as ConnId).chain([100]) {
            members.remove(conn);
            assert!(!members.contains(conn));
        }
        assert!(members.is_empty());
        assert_eq!(members.values_mut().count(), 0);
    }
}
