//! State format 1, from kansas before realm residency. The master is never upgraded in place
//! (it keeps the listeners), so the first worker of this kansas may be started by a master of
//! the previous one: it reads that master's `Start` in format 1 (the database part is dropped;
//! the worker reads the database before accepting) and, for as long as it serves under that
//! master, hands its own state back in format 1 (without the database part), which the old
//! master can relay. Restarting kansas once runs the new master and ends this.

use serde::{Deserialize, Serialize};

use super::{Envelope, MasterStats, State, ToWorker, STATE_FORMAT};
use crate::queues::SavedQueues;

/// The format this module reads and writes.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
enum MovePolicy1 {
    Reload,
    Drain,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedDatabase1 {
    weights: Vec<(String, f64)>,
    assignments: Vec<(String, String, Option<MovePolicy1>)>,
    rules: Vec<(i32, String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State1 {
    database: Option<SavedDatabase1>,
    queues: SavedQueues,
    down_shards: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Envelope1 {
    format: u32,
    kansas_version: String,
    generation: u64,
    state: State1,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum ToWorker1 {
    Start {
        state: Option<Box<Envelope1>>,
        stats: MasterStats,
    },
    Dump,
    Stop,
    Stats(MasterStats),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum ToMaster1 {
    Ready,
    Active,
    Refused { why: String },
    State { state: Box<Envelope1> },
}

/// A master message, and whether it came in format 1 (from an older master).
pub fn decode_to_worker(frame: &[u8]) -> std::io::Result<(ToWorker, bool)> {
    let current = bincode::deserialize::<ToWorker>(frame);
    match &current {
        Ok(ToWorker::Start {
            state: Some(env), ..
        }) if env.format != STATE_FORMAT => {}
        Ok(_) => return Ok((current.expect("checked"), false)),
        Err(_) => {}
    }
    match bincode::deserialize::<ToWorker1>(frame) {
        Ok(ToWorker1::Start {
            state: Some(env),
            stats,
        }) if env.format == FORMAT => {
            let state = Envelope {
                format: STATE_FORMAT,
                kansas_version: env.kansas_version,
                generation: env.generation,
                state: State {
                    database: None,
                    queues: env.state.queues,
                    down_shards: env.state.down_shards,
                },
            };
            Ok((
                ToWorker::Start {
                    state: Some(Box::new(state)),
                    stats,
                },
                true,
            ))
        }
        _ => current
            .map(|m| (m, false))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
    }
}

/// The `State` answer to an older master: format 1, without the database part.
pub fn encode_state(env: Envelope) -> std::io::Result<Vec<u8>> {
    let msg = ToMaster1::State {
        state: Box::new(Envelope1 {
            format: FORMAT,
            kansas_version: env.kansas_version,
            generation: env.generation,
            state: State1 {
                database: None,
                queues: env.state.queues,
                down_shards: env.state.down_shards,
            },
        }),
    };
    bincode::serialize(&msg).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_format_1_start_and_answers_in_format_1() {
        let old = ToWorker1::Start {
            state: Some(Box::new(Envelope1 {
                format: 1,
                kansas_version: "0.0.9".into(),
                generation: 4,
                state: State1 {
                    database: Some(SavedDatabase1 {
                        weights: vec![("s1".into(), 0.5)],
                        assignments: vec![("r".into(), "s1".into(), Some(MovePolicy1::Drain))],
                        rules: vec![(10, "^eu".into(), "s0".into())],
                    }),
                    queues: SavedQueues::default(),
                    down_shards: vec!["s2".into()],
                },
            })),
            stats: MasterStats::default(),
        };
        let (msg, legacy) = decode_to_worker(&bincode::serialize(&old).unwrap()).unwrap();
        assert!(legacy);
        let ToWorker::Start {
            state: Some(env), ..
        } = msg
        else {
            panic!("not a start");
        };
        assert_eq!(env.state.down_shards, ["s2"]);
        assert!(env.state.database.is_none());
        let back = encode_state(*env).unwrap();
        match bincode::deserialize::<ToMaster1>(&back).unwrap() {
            ToMaster1::State { state } => assert_eq!(state.format, 1),
            other => panic!("{other:?}"),
        }
        // A current-format message is read as such.
        let (msg, legacy) =
            decode_to_worker(&bincode::serialize(&ToWorker::Dump).unwrap()).unwrap();
        assert!(!legacy && matches!(msg, ToWorker::Dump));
    }
}
