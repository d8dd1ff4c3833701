//! Following kansas's routing the way Zulip's processes do with the kansas_zulip patches
//! (`docs/residency.md` §3): a kansas config file gives the shards (name, address, Tornado port)
//! and either the whole routing (`[assignments]`, `[[rules]]`, weights) or a `[database]` whose
//! routing is then followed live (LISTEN/NOTIFY, the same follower kansas runs). fake-tornado
//! asks it which ports serve a user; kansas-load's Django stand-in asks it where to publish and
//! register. Also who serves a user in a fake's two modes (`--routing-config`, `--user-split`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;

use kansas::routing::residency::now_epoch;
use kansas::routing::{normalize_host, Resident, Snapshot};
use kansas::store::follow::Follower;

/// A routing snapshot kept current from the config file's database, if it has one.
pub struct Routing {
    snapshot: Arc<ArcSwap<Snapshot>>,
    follower: Option<JoinHandle<()>>,
}

impl Routing {
    /// Loads the kansas config file at `path`; with a `[database]`, reads it once (an
    /// unreachable database is not an error: routing starts from the file and catches up) and
    /// follows it in the background for as long as this value lives. Needs a Tokio runtime.
    pub async fn follow(path: &Path) -> Result<Routing, String> {
        let config = kansas::config::load(path)
            .map_err(|e| format!("routing config {}: {e}", path.display()))?;
        let snapshot = Arc::new(ArcSwap::from_pointee(config.routing.clone()));
        let follower = match config.database {
            None => None,
            Some(db) => {
                let mut f = Follower::new(
                    db,
                    config.routing,
                    snapshot.clone(),
                    kansas::metrics::DbMetrics::default(),
                );
                f.initial()
                    .await
                    .map_err(|e| format!("routing database of {}: {e}", path.display()))?;
                Some(tokio::spawn(f.run()))
            }
        };
        Ok(Routing { snapshot, follower })
    }

    /// A fixed snapshot, followed from nowhere (tests).
    pub fn fixed(snapshot: Snapshot) -> Routing {
        Routing {
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
            follower: None,
        }
    }

    /// The routing now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// A user's resident shards now (the current one first); empty when the realm host is not
    /// valid or routes nowhere.
    pub fn user_resident(&self, realm: &str, user_id: u64) -> Vec<Resident> {
        match normalize_host(realm) {
            Ok(realm) => self.snapshot().user_resident(&realm, user_id, now_epoch()),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for Routing {
    fn drop(&mut self) {
        if let Some(f) = self.follower.take() {
            f.abort();
        }
    }
}

/// The address of the configured shard answering to Tornado `port`, if any.
pub fn shard_address(snapshot: &Snapshot, port: u16) -> Option<SocketAddr> {
    let address = &snapshot.shard(snapshot.shard_by_port(port)?).address;
    address
        .parse()
        .ok()
        .or_else(|| address.to_socket_addrs().ok()?.next())
}

/// Where a user's queues are, as one Tornado process sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    /// This process serves the user.
    Here,
    /// Another process does: the user's current port, then every port the user is resident on.
    Elsewhere { current: u16, resident: Vec<u16> },
    /// The realm routes nowhere (no assignment or rule matches and every weight is 0), or its
    /// host is not valid.
    NoShard,
}

/// Who serves `user_id` of `realm` for the process answering to `own_port`: by `routing` if
/// given, else by the `user_split` ports (`user_id % n`), else this process.
pub fn placement(
    routing: Option<&Routing>,
    user_split: &[u16],
    own_port: u16,
    realm: &str,
    user_id: u64,
) -> Placement {
    if let Some(routing) = routing {
        let resident: Vec<u16> = routing
            .user_resident(realm, user_id)
            .iter()
            .map(|r| r.port)
            .collect();
        return match resident.first() {
            None => Placement::NoShard,
            Some(_) if resident.contains(&own_port) => Placement::Here,
            Some(&current) => Placement::Elsewhere { current, resident },
        };
    }
    if user_split.is_empty() {
        return Placement::Here;
    }
    let port = user_split[(user_id % user_split.len() as u64) as usize];
    if port == own_port {
        Placement::Here
    } else {
        Placement::Elsewhere {
            current: port,
            resident: vec![port],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing() -> Routing {
        let text = "[[shards]]\nname = \"a\"\naddress = \"127.0.0.1:9800\"\n\
                    [[shards]]\nname = \"b\"\naddress = \"127.0.0.1:9801\"\n\
                    [[shards]]\nname = \"c\"\naddress = \"127.0.0.1:9802\"\n\
                    [assignments]\n\"one.example.com\" = \"b\"\n\
                    \"three.example.com\" = \"c\"\n";
        Routing::fixed(kansas::config::parse(text).unwrap().routing)
    }

    #[test]
    fn placement_by_routing() {
        let r = routing();
        let p = |port, realm, user| placement(Some(&r), &[], port, realm, user);
        assert_eq!(p(9801, "one.example.com", 7), Placement::Here);
        assert_eq!(p(9801, "ONE.example.com:443", 7), Placement::Here);
        let elsewhere = |port: u16| Placement::Elsewhere {
            current: port,
            resident: vec![port],
        };
        assert_eq!(p(9800, "one.example.com", 7), elsewhere(9801));
        assert_eq!(p(9802, "three.example.com", 4), Placement::Here);
        assert_eq!(p(9800, "three.example.com", 5), elsewhere(9802));
        assert_eq!(p(9800, "bad host", 5), Placement::NoShard);
        assert_eq!(
            shard_address(&r.snapshot(), 9802),
            Some("127.0.0.1:9802".parse().unwrap())
        );
        assert_eq!(shard_address(&r.snapshot(), 9803), None);
    }

    #[test]
    fn placement_by_user_split() {
        assert_eq!(placement(None, &[], 1, "r", 5), Placement::Here);
        assert_eq!(placement(None, &[1, 2], 1, "r", 4), Placement::Here);
        assert_eq!(
            placement(None, &[1, 2], 1, "r", 5),
            Placement::Elsewhere {
                current: 2,
                resident: vec![2]
            }
        );
    }
}
