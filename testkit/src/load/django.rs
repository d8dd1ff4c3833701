//! The Django stand-in of a load run with a routing config (`docs/residency.md` §3), following
//! kansas's routing as Django does with kansas_zulip:
//!
//! - publishing (`send_event`): a realm's batch goes to every port any of its users is resident
//!   on, with the users whose queues may be there (`users=`, left out when it is all of them);
//!   the realm's current port gets it even when none of its users is there, as Zulip's
//!   `event_port_user_map` does. With `--publish-current-only`, only each user's current port
//!   (which loses events while a realm drains: the harness must see that);
//! - registration (`/api/v1/register`): the user's current port gets a registration queued into
//!   its lane under the publisher's lock, with the realm's sequence number read under the same
//!   lock, so the queue is created after every batch queued for that shard before and receives
//!   every batch queued after. A 500 (the shard's routing lags Django's by a few ms at a move) is
//!   tried again, up to 3 times, 100 ms apart.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::lane::{Op, PublishStats, Register, RegisterError, Registered};
use super::publisher::Publisher;
use crate::fake_tornado::routing::{shard_address, Routing};
use kansas::routing::residency::now_epoch;

/// How long a registration may wait for its shard's answer (it may be behind batches for a
/// shard that is down).
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a registration refused with a 500 is tried again, and how far apart.
const REGISTER_RETRIES: u32 = 3;
const REGISTER_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Publishing and registering by the routing.
pub struct Routed {
    pub routing: Routing,
    /// Each realm's users (the load's clients of that realm).
    pub users: HashMap<Arc<str>, Vec<u64>>,
    /// Publish to each user's current port only.
    pub current_only: bool,
    /// Whether a port without a configured shard was already reported.
    warned: AtomicBool,
}

impl Routed {
    pub fn new(routing: Routing, users: HashMap<Arc<str>, Vec<u64>>, current_only: bool) -> Routed {
        Routed {
            routing,
            users,
            current_only,
            warned: AtomicBool::new(false),
        }
    }

    /// Where a batch of `realm` goes now: each shard's address and the users whose queues may
    /// be there (`None`: every user of the realm).
    pub fn destinations(
        &self,
        realm: &str,
        stats: &PublishStats,
    ) -> Vec<(SocketAddr, Option<Arc<str>>)> {
        let snap = self.routing.snapshot();
        let now = now_epoch();
        let users = self.users.get(realm).map_or(&[][..], |u| u.as_slice());
        let mut ports: Vec<(u16, Vec<u64>)> = Vec::new();
        // A realm on one shard: that port gets every event (Zulip's `event_port_user_map`).
        if let Some((_, [only])) = snap.route_targets(realm) {
            ports.push((snap.shard(*only).port, Vec::new()));
        }
        for &user in users {
            let resident = snap.user_resident(realm, user, now);
            let take = if self.current_only { 1 } else { resident.len() };
            for r in resident.iter().take(take) {
                match ports.iter_mut().find(|(p, _)| *p == r.port) {
                    Some((_, list)) => list.push(user),
                    None => ports.push((r.port, vec![user])),
                }
            }
        }
        let mut out = Vec::with_capacity(ports.len());
        for (port, list) in ports {
            let Some(addr) = shard_address(&snap, port) else {
                stats.undeliverable.fetch_add(1, Ordering::Relaxed);
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        port,
                        realm,
                        "no configured shard answers to this Tornado port: its events are lost"
                    );
                }
                continue;
            };
            let filter = (list.len() != users.len()).then(|| {
                let ids: Vec<String> = list.iter().map(u64::to_string).collect();
                Arc::from(ids.join(","))
            });
            out.push((addr, filter));
        }
        out
    }
}

impl Publisher {
    /// Registers a queue for `user` of `realm` on the user's current shard, as Django does.
    pub async fn register(
        &self,
        realm: &Arc<str>,
        user: u64,
        lifespan_secs: u64,
    ) -> Result<Registered, RegisterError> {
        let mut attempt = 0;
        loop {
            match self.register_once(realm, user, lifespan_secs).await {
                Err(RegisterError::Status(500)) if attempt < REGISTER_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(REGISTER_RETRY_DELAY).await;
                }
                r => return r,
            }
        }
    }

    async fn register_once(
        &self,
        realm: &Arc<str>,
        user: u64,
        lifespan_secs: u64,
    ) -> Result<Registered, RegisterError> {
        let Some(routed) = &self.routed else {
            return Err(RegisterError::Failed("no_routing".into()));
        };
        let (reply, answer) = oneshot::channel();
        {
            let mut state = self.lock();
            let snap = routed.routing.snapshot();
            let Some(current) = snap
                .user_resident(realm, user, now_epoch())
                .first()
                .cloned()
            else {
                return Err(RegisterError::Failed("no_shard".into()));
            };
            let Some(addr) = shard_address(&snap, current.port) else {
                return Err(RegisterError::Failed("no_shard_address".into()));
            };
            let realm_seq = state.seq.get(realm).copied().unwrap_or(0);
            let op = Op::Register(Register {
                realm: realm.clone(),
                user,
                lifespan_secs,
                realm_seq,
                reply,
            });
            self.send(&mut state, addr, op);
        }
        match tokio::time::timeout(REGISTER_TIMEOUT, answer).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(RegisterError::Failed("stopped".into())),
            Err(_) => Err(RegisterError::Failed("timeout".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(current_only: bool) -> Routed {
        let text = "[[shards]]\nname = \"a\"\naddress = \"127.0.0.1:9800\"\n\
                    [[shards]]\nname = \"b\"\naddress = \"127.0.0.1:9801\"\n\
                    [assignments]\n\"r.example.com\" = \"b\"\n";
        let routing = Routing::fixed(kansas::config::parse(text).unwrap().routing);
        let users = HashMap::from([(Arc::from("r.example.com"), vec![1, 3, 5])]);
        Routed::new(routing, users, current_only)
    }

    #[test]
    fn a_realm_on_one_shard_goes_there_for_everyone() {
        let stats = PublishStats::default();
        let d = routed(false).destinations("r.example.com", &stats);
        assert_eq!(d, vec![("127.0.0.1:9801".parse().unwrap(), None)]);
        // A realm without users still reaches its shard.
        assert_eq!(
            routed(true).destinations("empty.example.com", &stats).len(),
            1
        );
    }
}
