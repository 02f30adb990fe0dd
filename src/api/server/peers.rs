//! The cap of connections per peer IP address (`api.max_connections_per_peer`).
//!
//! Without it one address could open `api.max_connections` connections and leave none for
//! anybody else. Each accepted connection takes a [`PeerSlot`] for its address; when the address
//! already has its cap, none is given and the connection is closed at once, so it holds one of
//! the global slots only for the moment it takes to accept and close it.
//!
//! The ports are ignored (one client opens many), and an IPv4-mapped IPv6 address counts as its
//! IPv4 address, so a dual-stack listener cannot be fooled into two counts for one client. An
//! address's entry is removed when its last connection closes: the map holds only addresses with
//! open connections, at most `api.max_connections` of them.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
};

/// Open connections per peer address.
#[derive(Debug)]
pub struct PeerCounts {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PeerCounts {
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(PeerCounts {
            cap,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `peer`, or `None` when it already has `cap` open.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<PeerSlot> {
        let peer = peer.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(peer).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            counts: self.clone(),
            peer,
        })
    }

    /// Open connections from `peer` (for tests).
    #[cfg(test)]
    fn open(&self, peer: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&peer.to_canonical()).copied().unwrap_or(0)
    }
}

/// One open connection of a peer; gives its place back when dropped (the connection closed).
#[derive(Debug)]
pub struct PeerSlot {
    counts: Arc<PeerCounts>,
    peer: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self
            .counts
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_cap_and_no_more_while_others_still_get_theirs() {
        let counts = PeerCounts::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = counts.admit(a).expect("first");
        let _second = counts.admit(a).expect("second");
        assert!(counts.admit(a).is_none());
        assert!(counts.admit(b).is_some());
        // A closed connection makes room.
        drop(first);
        assert_eq!(counts.open(a), 1);
        assert!(counts.admit(a).is_some());
    }

    #[test]
    fn an_ipv4_mapped_ipv6_address_counts_as_its_ipv4_address() {
        let counts = PeerCounts::new(1);
        let _v4 = counts
            .admit("192.0.2.1".parse().unwrap())
            .expect("admitted");
        assert!(counts.admit("::ffff:192.0.2.1".parse().unwrap()).is_none());
    }

    #[test]
    fn an_address_with_no_open_connection_leaves_no_entry() {
        let counts = PeerCounts::new(3);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let slots: Vec<_> = (0..3).filter_map(|_| counts.admit(a)).collect();
        assert_eq!(slots.len(), 3);
        drop(slots);
        assert!(counts.open.lock().unwrap().is_empty());
    }
}
