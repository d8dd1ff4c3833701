//! The master/worker protocol. The master sends each new worker the listening sockets (`fd`),
//! then both speak length-prefixed frames (bincode: a million-queue state encodes and decodes in
//! a fraction of a second) over the same `socketpair`: the worker says when
//! it is ready and when it is active; the master hands it the previous generation's state (the
//! routing snapshot, the queue map, which shards are down) in a versioned envelope, asks for
//! state, and tells it to stop.

pub mod fd;
pub mod legacy;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::queues::SavedQueues;
use crate::store::DbState;

/// Version of the state envelope; a worker refuses any other (format 1, from a master of an
/// earlier kansas, is read and answered by [`legacy`]).
pub const STATE_FORMAT: u32 = 2;
/// Largest frame accepted (a state with millions of queues fits).
const MAX_FRAME: u32 = 1 << 30;
/// What reading a frame reserves before its bytes arrive.
const FRAME_READ_CHUNK: usize = 64 << 10;

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
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWriteExt + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> std::io::Result<()> {
    let bytes = bincode::serialize(msg).map_err(std::io::Error::other)?;
    write_raw_frame(w, &bytes).await
}

/// Writes one frame of already encoded bytes.
pub async fn write_raw_frame<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    bytes: &[u8],
) -> std::io::Result<()> {
    if bytes.len() > MAX_FRAME as usize {
        return Err(std::io::Error::other("frame too large"));
    }
    w.write_u32(bytes.len() as u32).await?;
    w.write_all(bytes).await?;
    w.flush().await
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncReadExt + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> std::io::Result<Option<T>> {
    match read_raw_frame(r).await? {
        None => Ok(None),
        Some(buf) => bincode::deserialize(&buf)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
    }
}

/// Reads one frame's bytes; `Ok(None)` at a clean end of stream.
pub async fn read_raw_frame<R: AsyncReadExt + Unpin>(
    r: &mut R,
) -> std::io::Result<Option<Vec<u8>>> {
    let len = match r.read_u32().await {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    // The length is only a claim: grow with the bytes that arrive, not to what was claimed.
    let mut buf = Vec::with_capacity((len as usize).min(FRAME_READ_CHUNK));
    (&mut *r).take(u64::from(len)).read_to_end(&mut buf).await?;
    if buf.len() != len as usize {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "frame cut short",
        ));
    }
    Ok(Some(buf))
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
