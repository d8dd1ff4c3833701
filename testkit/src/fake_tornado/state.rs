//! The fake shard's event queues: creation, publishing (to a realm, optionally only some of its
//! users), pruning, long-poll waiters, expiry after each queue's own lifespan, and the dump/load
//! that carries them across a restart (as Tornado's `event_queues.<port>.json`), after which every
//! restored queue gets a `restart` event.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// Format version of the state file (queues' `lifespan_secs` is optional: older dumps load).
const STATE_VERSION: u32 = 1;

/// Zulip's `MAX_QUEUE_TIMEOUT_SECS`: no queue lives longer than a week without a client.
pub const MAX_LIFESPAN: Duration = Duration::from_secs(7 * 24 * 3600);

/// A queue's lifespan from the `lifespan_secs` asked at registration, as Zulip's
/// `ClientDescriptor`: 0 (or nothing asked) is the default, anything longer than a week a week.
pub fn lifespan(asked_secs: Option<u64>, default: Duration) -> Duration {
    match asked_secs {
        None | Some(0) => default,
        Some(s) => Duration::from_secs(s).min(MAX_LIFESPAN),
    }
}

/// One event as the client sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub id: i64,
    #[serde(flatten)]
    pub payload: Payload,
}

/// What an event carries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Payload {
    /// Tornado's keep-alive for an idle long-poll.
    Heartbeat,
    /// Added to every restored queue when Tornado starts (Zulip's `send_restart_events`).
    Restart {
        zulip_version: String,
        zulip_feature_level: u32,
        server_generation: u64,
        immediate: bool,
    },
    /// An injected event: realm, per-realm sequence number, publish time (µs since the epoch).
    FakeEvent {
        realm: String,
        seq: u64,
        published_at_us: u64,
    },
}

/// One event queue.
#[derive(Debug)]
pub struct Queue {
    pub realm: String,
    pub user_id: u64,
    pub next_event_id: i64,
    pub events: VecDeque<Event>,
    /// Deleted after this long with no client connected (`lifespan_secs` at registration).
    pub lifespan: Duration,
    /// The long-poll currently waiting on this queue, if any, and its generation.
    waiter: Option<(u64, oneshot::Sender<()>)>,
    /// Since when no client has been connected (`None` while one is).
    idle_since: Option<Instant>,
}

impl Queue {
    fn new(realm: &str, user_id: u64, lifespan: Duration) -> Queue {
        Queue {
            realm: realm.to_string(),
            user_id,
            next_event_id: 0,
            events: VecDeque::new(),
            lifespan,
            waiter: None,
            idle_since: Some(Instant::now()),
        }
    }

    fn push(&mut self, payload: Payload) {
        self.events.push_back(Event {
            id: self.next_event_id,
            payload,
        });
        self.next_event_id += 1;
        if let Some((_, tx)) = self.waiter.take() {
            let _ = tx.send(());
        }
    }

    /// Drops events up to and including `last_event_id`.
    pub fn prune(&mut self, last_event_id: i64) {
        while self.events.front().is_some_and(|e| e.id <= last_event_id) {
            self.events.pop_front();
        }
    }
}

/// All queues of one fake shard.
#[derive(Debug, Default)]
pub struct State {
    pub queues: HashMap<String, Queue>,
    /// Highest sequence number published per realm.
    pub realm_seq: HashMap<String, u64>,
    /// Set when the shard is stopping: the state was (or is being) dumped, so nothing may
    /// change any more.
    pub stopping: bool,
    /// The shortest lifespan of any queue held (or created since the last expiry scan), which
    /// sets how often the expiry loop scans; `None`: no queue.
    pub shortest_lifespan: Option<Duration>,
    next_waiter: u64,
}

/// What a waiting long-poll holds: its generation and the wake-up receiver.
pub struct Wait {
    pub generation: u64,
    pub wake: oneshot::Receiver<()>,
}

impl State {
    /// Creates a queue living `lifespan` without a client; returns its id and the realm's
    /// current sequence number.
    pub fn create(&mut self, realm: &str, user_id: u64, lifespan: Duration) -> (String, u64) {
        let id = new_queue_id();
        self.queues
            .insert(id.clone(), Queue::new(realm, user_id, lifespan));
        self.shortest_lifespan = Some(self.shortest_lifespan.map_or(lifespan, |s| s.min(lifespan)));
        (id, self.realm_seq.get(realm).copied().unwrap_or(0))
    }

    /// Publishes `count` events with sequence numbers from `first_seq` to every queue of `realm`
    /// (only those of `users` when given, as Django sends an event to the queues of the users it
    /// concerns). Returns how many queues received them.
    pub fn publish(
        &mut self,
        realm: &str,
        first_seq: u64,
        count: u64,
        published_at_us: u64,
        users: Option<&HashSet<u64>>,
    ) -> usize {
        let seq = self.realm_seq.entry(realm.to_string()).or_insert(0);
        *seq = (*seq).max(first_seq + count - 1);
        let mut delivered = 0;
        let wanted = |q: &Queue| q.realm == realm && users.is_none_or(|u| u.contains(&q.user_id));
        for q in self.queues.values_mut().filter(|q| wanted(q)) {
            for i in 0..count {
                q.push(Payload::FakeEvent {
                    realm: realm.to_string(),
                    seq: first_seq + i,
                    published_at_us,
                });
            }
            delivered += 1;
        }
        delivered
    }

    /// Registers a long-poll on `queue_id`, replacing (and waking) any previous one.
    pub fn wait(&mut self, queue_id: &str) -> Option<Wait> {
        self.next_waiter += 1;
        let generation = self.next_waiter;
        let q = self.queues.get_mut(queue_id)?;
        let (tx, rx) = oneshot::channel();
        if let Some((_, old)) = q.waiter.replace((generation, tx)) {
            let _ = old.send(());
        }
        q.idle_since = None;
        Some(Wait {
            generation,
            wake: rx,
        })
    }

    /// The long-poll of `generation` on `queue_id` ended (answered or client gone).
    pub fn unwait(&mut self, queue_id: &str, generation: u64) {
        if let Some(q) = self.queues.get_mut(queue_id) {
            if q.waiter.as_ref().is_none_or(|(g, _)| *g == generation) {
                q.waiter = None;
                q.idle_since = Some(Instant::now());
            }
        }
    }

    /// Marks a queue as just used by a non-waiting request.
    pub fn touch(&mut self, queue_id: &str) {
        if let Some(q) = self.queues.get_mut(queue_id) {
            if q.waiter.is_none() {
                q.idle_since = Some(Instant::now());
            }
        }
    }

    /// Adds a heartbeat to a queue.
    pub fn heartbeat(&mut self, queue_id: &str) {
        if let Some(q) = self.queues.get_mut(queue_id) {
            q.push(Payload::Heartbeat);
        }
    }

    /// Adds Zulip's restart event to every queue (after a restart restored them), so that every
    /// replayed long-poll is answered at once.
    pub fn restart_events(&mut self, server_generation: u64) {
        for q in self.queues.values_mut() {
            q.push(Payload::Restart {
                zulip_version: "fake-tornado".to_string(),
                zulip_feature_level: 0,
                server_generation,
                immediate: false,
            });
        }
    }

    /// Deletes every queue that has had no connected client for its lifespan at `now`; returns
    /// how many. One pass over the queues, which also recomputes the shortest lifespan held.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.queues.len();
        let mut shortest: Option<Duration> = None;
        self.queues.retain(|_, q| {
            let keep = q
                .idle_since
                .is_none_or(|t| now.saturating_duration_since(t) < q.lifespan);
            if keep {
                shortest = Some(shortest.map_or(q.lifespan, |s| s.min(q.lifespan)));
            }
            keep
        });
        self.shortest_lifespan = shortest;
        before - self.queues.len()
    }

    /// Serializes every queue (events included) and the realm sequence numbers.
    pub fn dump(&self) -> serde_json::Value {
        let queues: Vec<serde_json::Value> = self
            .queues
            .iter()
            .map(|(id, q)| {
                serde_json::json!({
                    "id": id, "realm": q.realm, "user_id": q.user_id,
                    "next_event_id": q.next_event_id, "events": q.events,
                    "lifespan_secs": q.lifespan.as_secs_f64(),
                })
            })
            .collect();
        serde_json::json!({
            "version": STATE_VERSION,
            "realm_seq": self.realm_seq,
            "queues": queues,
        })
    }

    /// Rebuilds the state from [`State::dump`] output; a queue saved without a lifespan gets
    /// `default_lifespan`.
    pub fn load(value: serde_json::Value, default_lifespan: Duration) -> Result<State, String> {
        #[derive(Deserialize)]
        struct Saved {
            version: u32,
            realm_seq: HashMap<String, u64>,
            queues: Vec<SavedQueue>,
        }
        #[derive(Deserialize)]
        struct SavedQueue {
            id: String,
            realm: String,
            user_id: u64,
            next_event_id: i64,
            events: VecDeque<Event>,
            #[serde(default)]
            lifespan_secs: Option<f64>,
        }
        let saved: Saved = serde_json::from_value(value).map_err(|e| e.to_string())?;
        if saved.version != STATE_VERSION {
            return Err(format!(
                "state file version {} is not {STATE_VERSION}",
                saved.version
            ));
        }
        let mut state = State {
            realm_seq: saved.realm_seq,
            ..State::default()
        };
        for s in saved.queues {
            let lifespan = s
                .lifespan_secs
                .filter(|v| v.is_finite() && *v > 0.0)
                .map_or(default_lifespan, |v| {
                    Duration::from_secs_f64(v.min(MAX_LIFESPAN.as_secs_f64()))
                });
            state.shortest_lifespan = Some(
                state
                    .shortest_lifespan
                    .map_or(lifespan, |x| x.min(lifespan)),
            );
            let mut q = Queue::new(&s.realm, s.user_id, lifespan);
            q.next_event_id = s.next_event_id;
            q.events = s.events;
            state.queues.insert(s.id, q);
        }
        Ok(state)
    }
}

/// A random UUID4 string, as Tornado's queue ids are.
pub fn new_queue_id() -> String {
    let mut b = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_ids_are_uuid4() {
        let id = new_queue_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(id, new_queue_id());
    }

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn publish_prune_dump_load() {
        let mut s = State::default();
        let (q, seq) = s.create("r.example.com", 3, MIN);
        assert_eq!(seq, 0);
        s.publish("r.example.com", 1, 3, 7, None);
        s.publish("other.example.com", 1, 1, 7, None);
        assert_eq!(s.queues[&q].events.len(), 3);
        s.queues.get_mut(&q).unwrap().prune(0);
        assert_eq!(s.queues[&q].events.front().unwrap().id, 1);
        let (_, seq) = s.create("r.example.com", 4, MIN);
        assert_eq!(seq, 3);
        let loaded = State::load(s.dump(), Duration::from_secs(600)).unwrap();
        assert_eq!(loaded.queues[&q].events, s.queues[&q].events);
        assert_eq!(loaded.queues[&q].next_event_id, 3);
        assert_eq!(loaded.queues[&q].lifespan, MIN);
        assert_eq!(loaded.realm_seq["r.example.com"], 3);
    }

    #[test]
    fn publish_to_some_users_only() {
        let mut s = State::default();
        let (a, _) = s.create("r", 1, MIN);
        let (b, _) = s.create("r", 2, MIN);
        let only_2 = HashSet::from([2]);
        assert_eq!(s.publish("r", 1, 2, 7, Some(&only_2)), 1);
        assert!(s.queues[&a].events.is_empty());
        assert_eq!(s.queues[&b].events.len(), 2);
        // The realm's sequence number moves on either way.
        assert_eq!(s.realm_seq["r"], 2);
        assert_eq!(s.publish("r", 3, 1, 7, Some(&HashSet::new())), 0);
        assert_eq!(s.realm_seq["r"], 3);
    }

    #[test]
    fn restart_events_go_to_every_queue_with_the_next_id() {
        let mut s = State::default();
        let (a, _) = s.create("r", 1, MIN);
        s.publish("r", 1, 1, 7, None);
        let mut s = State::load(s.dump(), MIN).unwrap();
        s.restart_events(1234);
        let ev = serde_json::to_value(s.queues[&a].events.back().unwrap()).unwrap();
        assert_eq!(
            ev,
            serde_json::json!({"id": 1, "type": "restart", "zulip_version": "fake-tornado",
                               "zulip_feature_level": 0, "server_generation": 1234,
                               "immediate": false})
        );
    }

    #[test]
    fn each_queue_expires_after_its_own_lifespan() {
        assert_eq!(lifespan(None, MIN), MIN);
        assert_eq!(lifespan(Some(0), MIN), MIN);
        assert_eq!(lifespan(Some(2), MIN), Duration::from_secs(2));
        assert_eq!(lifespan(Some(u64::MAX), MIN), MAX_LIFESPAN);
        let mut s = State::default();
        let (short, _) = s.create("r", 1, Duration::from_secs(2));
        let (long, _) = s.create("r", 2, MIN);
        assert_eq!(s.shortest_lifespan, Some(Duration::from_secs(2)));
        let now = Instant::now();
        assert_eq!(s.expire(now + Duration::from_secs(1)), 0);
        assert_eq!(s.expire(now + Duration::from_secs(3)), 1);
        assert!(!s.queues.contains_key(&short));
        assert!(s.queues.contains_key(&long));
        assert_eq!(s.shortest_lifespan, Some(MIN));
    }

    #[test]
    fn waiting_queue_does_not_expire() {
        let mut s = State::default();
        let (a, _) = s.create("r", 1, Duration::ZERO);
        let (b, _) = s.create("r", 2, Duration::ZERO);
        let _w = s.wait(&a).unwrap();
        assert_eq!(s.expire(Instant::now()), 1);
        assert!(s.queues.contains_key(&a));
        assert!(!s.queues.contains_key(&b));
        assert_eq!(s.expire(Instant::now()), 0);
    }
}
