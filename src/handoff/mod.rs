//! The master/worker protocol. The master sends each new worker the listening sockets (`fd`),
//! then both speak length-prefixed frames (bincode: a million-queue state encodes and decodes in
//! a fraction of a second) over the same `socketpair`: the worker says when
//! it is ready and when it is active; the master hands it the previous generation's state (the
//! routing snapshot, the queue map, which shards are down) in a versioned envelope, asks for
//! state (answered with the state, or with why it could not be sent: the worker serves on), and
//! tells it to stop; a worker that got SIGTERM or SIGINT itself asks to be replaced
//! (`Leaving`). Frames are cut into pieces (`frame`), so a state of any size fits.

pub mod fd;
pub mod frame;
pub mod legacy;

use serde::{Deserialize, Serialize};

pub use frame::{read_frame, read_raw_frame, write_frame, write_raw_frame, FrameError};

use crate::queues::SavedQueues;
use crate::store::DbState;

/// Version of the state envelope; a worker refuses any other (format 1, from a master of an
/// earlier kansas, is read and answered by [`legacy`]).
pub const STATE_FORMAT: u32 = 2;

/// The state handed from one generation to the next.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub format: u32,
    pub kansas_version: String,
    pub generation: u64,
    pub state: State,
}

/// What a worker knows that the next one should start from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// The database's routing data, when the snapshot came from the database.
    pub database: Option<DbState>,
    pub queues: SavedQueues,
    /// Shards believed down (the new worker parks for them at once and probes).
    pub down_shards: Vec<String>,
}

/// Counters the master keeps, shown in the active worker's metrics.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MasterStats {
    pub generation: u64,
    pub upgrades: u64,
    /// `(step, count)` of rolled-back upgrades.
    pub rollbacks: Vec<(String, u64)>,
    pub restarts: u64,
}

/// Master → worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToWorker {
    /// Start accepting, from this state (none for a fresh start).
    Start {
        state: Option<Box<Envelope>>,
        stats: MasterStats,
    },
    /// Send your state.
    Dump,
    /// Stop accepting, finish what is in flight, exit.
    Stop,
    /// Updated master counters.
    Stats(MasterStats),
}

/// Worker → master.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToMaster {
    /// Initialised, not yet accepting.
    Ready,
    /// Accepting.
    Active,
    /// The state could not be used; the worker exits.
    Refused {
        why: String,
    },
    State {
        state: Box<Envelope>,
    },
    /// The active worker could not dump or send its state; it keeps serving.
    DumpFailed {
        why: String,
    },
    /// The active worker got this signal (SIGTERM, SIGINT) itself, not from the master: it
    /// keeps accepting and asks to be replaced as in an upgrade (told `Stop` once its successor
    /// is active). Last in the enum: a master that predates it reads an unknown variant,
    /// which its reader skips, and the worker drains at its own deadline.
    Leaving {
        signal: i32,
    },
}

/// Whether the test switch (`KANSAS_TEST_FAIL_FILE`) names `step`: the file it points at holds
/// the step's name. Compiled only with the `test-faults` feature, which the tests turn on
/// (through kansas-testkit); the daemon as built for operators has no switch.
#[cfg(feature = "test-faults")]
pub fn test_switch(step: &str) -> bool {
    std::env::var_os("KANSAS_TEST_FAIL_FILE")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .is_some_and(|s| s.trim() == step)
}

/// Without the `test-faults` feature there is no switch: never.
#[cfg(not(feature = "test-faults"))]
pub fn test_switch(_step: &str) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database state with a split assignment, a rule and a drain window.
    fn database() -> DbState {
        use crate::routing::state::{RoutingState, StateShard};
        let mut db = DbState::default();
        db.shards.insert("s1".into(), (Some(9801), 0.5));
        db.assignments
            .insert("r.example.com".into(), vec!["s1".into(), "s2".into()]);
        db.rules.insert(10, ("^eu".into(), vec!["s1".into()]));
        let state = RoutingState {
            shards: vec![StateShard {
                name: "s1".into(),
                port: 9801,
                weight: 1.0,
            }],
            ..RoutingState::default()
        };
        db.windows.insert(
            7,
            crate::store::WindowRow {
                opened_at: 1.0,
                until: 2.0,
                change: "weight s1 1 -> 0.5".into(),
                changed_by: "test".into(),
                before: state.clone(),
                after: state,
            },
        );
        db
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let env = Envelope {
            format: STATE_FORMAT,
            kansas_version: "x".into(),
            generation: 3,
            state: State {
                down_shards: vec!["s1".into()],
                database: Some(database()),
                ..State::default()
            },
        };
        write_frame(
            &mut a,
            &ToMaster::State {
                state: Box::new(env),
            },
        )
        .await
        .unwrap();
        write_frame(&mut a, &ToWorker::Stop).await.unwrap();
        drop(a);
        match read_frame::<_, ToMaster>(&mut b).await.unwrap() {
            Some(ToMaster::State { state }) => {
                assert_eq!(state.state.down_shards, vec!["s1"]);
                assert_eq!(state.state.database, Some(database()), "windows included");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_frame::<_, ToWorker>(&mut b).await.unwrap(),
            Some(ToWorker::Stop)
        ));
        assert!(read_frame::<_, ToWorker>(&mut b).await.unwrap().is_none());
    }
}
