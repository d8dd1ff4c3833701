//! The state envelope a new worker decodes: the master's length-prefixed frames
//! (`read_raw_frame`) and their bincode messages (`legacy::decode_to_worker`, which also reads
//! format 1). Valid frames decode to themselves; arbitrary and mutated frames are `Ok` or
//! `Err`, never a panic; and nothing allocates much more than the bytes that arrived (a frame
//! claiming a huge length or a huge sequence must not get that memory).

use kansas::handoff::{
    legacy::decode_to_worker, read_raw_frame, Envelope, FrameError, MasterStats, State, ToWorker,
    STATE_FORMAT,
};
use kansas::queues::SavedQueues;
use kansas::routing::state::{RoutingState, StateRule, StateShard};
use kansas::store::{DbState, WindowRow};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

use crate::alloc::measure;
use crate::mutate::{apply, edits};

/// Bytes a decode may allocate at most for a frame of `len` bytes: a small factor (a string
/// of 8 length bytes is a 24-byte `String`, a map entry a tree node's share) and the most
/// serde preallocates for sequences still being read (1 MiB each, a few levels deep).
fn decode_bound(len: usize) -> usize {
    32 * len + (8 << 20)
}

/// Bytes reading a frame may allocate at most when `arrived` bytes came: the buffer grows by
/// doubling from what the reader reserves (64 KiB), and the runtime takes a little.
fn read_bound(arrived: usize) -> usize {
    2 * arrived + (80 << 10)
}

/// Little-endian lengths and counts a fuzzer would try, and format numbers.
const TOKENS: &[&[u8]] = &[
    &[0xff; 8],
    &[0, 0, 0, 0, 1, 0, 0, 0],
    &[0, 0, 0, 0, 0, 1, 0, 0],
    &[0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0],
    &[0, 0, 0, 0x40, 0, 0, 0, 0],
    &[1, 0, 0, 0],
    &[2, 0, 0, 0],
    &[0xff, 0xff, 0xff, 0xff],
    &[0, 0, 0, 0, 0, 0, 0, 0],
    &[1],
    &[0xc3, 0x28],
];

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9.:-]{0,12}"
}

fn routing_state() -> impl Strategy<Value = RoutingState> {
    let shard = (name(), any::<u16>(), any::<f64>()).prop_map(|(name, port, weight)| StateShard {
        name,
        port,
        weight,
    });
    let rule = (any::<i32>(), name(), vec(name(), 0..3)).prop_map(|(priority, pattern, shards)| {
        StateRule {
            priority,
            pattern,
            shards,
        }
    });
    (
        vec(shard, 0..3),
        btree_map(name(), vec(name(), 0..3), 0..3),
        vec(rule, 0..2),
    )
        .prop_map(|(shards, assignments, rules)| RoutingState {
            shards,
            assignments,
            rules,
        })
}

fn database() -> impl Strategy<Value = DbState> {
    let window = (
        any::<f64>(),
        any::<f64>(),
        name(),
        name(),
        routing_state(),
        routing_state(),
    )
        .prop_map(
            |(opened_at, until, change, changed_by, before, after)| WindowRow {
                opened_at,
                until,
                change,
                changed_by,
                before,
                after,
            },
        );
    (
        btree_map(name(), (any::<Option<u16>>(), any::<f64>()), 0..4),
        btree_map(name(), vec(name(), 0..3), 0..4),
        btree_map(any::<i32>(), (name(), vec(name(), 0..3)), 0..3),
        btree_map(any::<i64>(), window, 0..2),
    )
        .prop_map(|(shards, assignments, rules, windows)| DbState {
            shards,
            assignments,
            rules,
            windows,
        })
}

fn stats() -> impl Strategy<Value = MasterStats> {
    (
        any::<u64>(),
        any::<u64>(),
        vec((name(), any::<u64>()), 0..3),
        any::<u64>(),
    )
        .prop_map(|(generation, upgrades, rollbacks, restarts)| MasterStats {
            generation,
            upgrades,
            rollbacks,
            restarts,
        })
}

fn envelope() -> impl Strategy<Value = Envelope> {
    let queues = (
        vec(name(), 0..4),
        vec(name(), 0..4),
        vec(
            (
                name(),
                any::<u16>(),
                any::<u16>(),
                any::<u32>(),
                any::<u32>(),
            ),
            0..20,
        ),
    )
        .prop_map(|(shards, realms, entries)| SavedQueues {
            shards,
            realms,
            entries,
        });
    (
        prop_oneof![4 => Just(STATE_FORMAT), 1 => Just(1), 1 => any::<u32>()],
        name(),
        any::<u64>(),
        proptest::option::of(database()),
        queues,
        vec(name(), 0..4),
    )
        .prop_map(
            |(format, kansas_version, generation, database, queues, down_shards)| Envelope {
                format,
                kansas_version,
                generation,
                state: State {
                    database,
                    queues,
                    down_shards,
                },
            },
        )
}

fn to_worker() -> impl Strategy<Value = ToWorker> {
    prop_oneof![
        4 => (proptest::option::of(envelope()), stats()).prop_map(|(state, stats)| {
            ToWorker::Start {
                state: state.map(Box::new),
                stats,
            }
        }),
        1 => Just(ToWorker::Dump),
        1 => Just(ToWorker::Stop),
        1 => stats().prop_map(ToWorker::Stats),
    ]
}

/// Decodes `frame` as the worker does, checking the allocation bound; the result is returned.
fn decode_bounded(frame: &[u8]) -> Result<std::io::Result<(ToWorker, bool)>, TestCaseError> {
    let (decoded, peak) = measure(|| decode_to_worker(frame));
    prop_assert!(
        peak <= decode_bound(frame.len()),
        "decoding {} bytes allocated {peak} bytes at once",
        frame.len()
    );
    Ok(decoded)
}

/// Reads one frame from `bytes` on a current-thread runtime, returning what it read and the
/// most it allocated at once.
fn read_frame_measured(bytes: &[u8]) -> (Result<Option<Vec<u8>>, FrameError>, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut stream = bytes;
    measure(|| rt.block_on(read_raw_frame(&mut stream)))
}

proptest! {
    #![proptest_config(crate::cases(256))]

    /// A master's message decodes to itself (in the current format; a format-1 start may be
    /// read as the earlier master's, which the worker then answers in format 1).
    #[test]
    fn a_valid_frame_decodes_to_itself(msg in to_worker()) {
        let bytes = bincode::serialize(&msg).unwrap();
        let (back, legacy) = decode_bounded(&bytes)?.expect("a valid frame decodes");
        let format = match &msg {
            ToWorker::Start { state: Some(env), .. } => env.format,
            _ => STATE_FORMAT,
        };
        prop_assert!(!legacy || format == 1, "read as format 1: {msg:?}");
        if !legacy {
            prop_assert_eq!(bincode::serialize(&back).unwrap(), bytes);
        }
    }

    /// Mutated valid frames: `Ok` or `Err`, never a panic, never much more memory than bytes.
    #[test]
    fn a_mutated_frame_is_decoded_or_refused_within_bounds(
        msg in to_worker(),
        edits in edits(6),
    ) {
        let frame = apply(bincode::serialize(&msg).unwrap(), &edits, TOKENS);
        decode_bounded(&frame)?.ok();
    }

    /// Arbitrary bytes, likewise.
    #[test]
    fn arbitrary_bytes_are_decoded_or_refused_within_bounds(
        frame in vec(any::<u8>(), 0..512),
    ) {
        decode_bounded(&frame)?.ok();
    }

    /// A frame's 4-byte length is only a claim: reading allocates about what arrives, not what
    /// was claimed, and a frame cut short is an error.
    #[test]
    fn a_frame_claiming_more_than_it_carries_allocates_what_arrives(
        claimed in prop_oneof![0..2048u32, any::<u32>(), Just(1 << 30), Just((1 << 30) + 1)],
        body in vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = claimed.to_be_bytes().to_vec();
        bytes.extend_from_slice(&body);
        let (read, peak) = read_frame_measured(&bytes);
        prop_assert!(
            peak <= read_bound(body.len()),
            "a frame claiming {claimed} bytes with {} present allocated {peak}",
            body.len()
        );
        // Bit 31 says more pieces follow (their prefixes come from `body`, arbitrary here).
        let len = (claimed & !(1 << 31)) as usize;
        let more = claimed & (1 << 31) != 0;
        match read {
            Ok(Some(frame)) => {
                prop_assert!(len <= body.len());
                prop_assert_eq!(&frame[..len], &body[..len]);
                if !more {
                    prop_assert_eq!(frame.len(), len);
                }
            }
            Ok(None) => prop_assert!(false, "a length was there"),
            Err(_) => prop_assert!(more || len > body.len()),
        }
    }

    /// The whole path, from the socket's bytes to a message, on mutated framed messages.
    #[test]
    fn mutated_framed_messages_are_read_or_refused_within_bounds(
        msg in to_worker(),
        edits in edits(6),
    ) {
        let body = bincode::serialize(&msg).unwrap();
        let mut framed = (body.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&body);
        let framed = apply(framed, &edits, TOKENS);
        let (read, peak) = read_frame_measured(&framed);
        prop_assert!(peak <= read_bound(framed.len()), "reading allocated {peak}");
        if let Ok(Some(frame)) = read {
            decode_bounded(&frame)?.ok();
        }
    }
}

/// A frame that declares a sequence of 2^60 elements in a few bytes does not get memory for it
/// (bincode checks a string's length against the bytes left; serde caps what a sequence
/// reserves at 1 MiB), whatever the decode then makes of the frame.
#[test]
fn a_frame_declaring_a_huge_sequence_allocates_little() {
    let msg = ToWorker::Start {
        state: Some(Box::new(Envelope {
            format: STATE_FORMAT,
            kansas_version: "x".into(),
            generation: 1,
            state: State::default(),
        })),
        stats: MasterStats::default(),
    };
    let bytes = bincode::serialize(&msg).unwrap();
    // The empty sequences' lengths are 8-byte zeros; make every 8-byte zero claim 2^60 in turn.
    let mut tried = 0;
    for at in 0..=bytes.len().saturating_sub(8) {
        if bytes[at..at + 8] != [0; 8] {
            continue;
        }
        let mut frame = bytes.clone();
        frame[at..at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
        let (decoded, peak) = measure(|| decode_to_worker(&frame));
        drop(decoded);
        assert!(peak < (2 << 20), "at {at}: {peak} bytes");
        tried += 1;
    }
    assert!(tried >= 3, "the envelope has several empty sequences");
}
