//! State handoff cost for a large queue map: dump N entries into the versioned envelope,
//! encode it as the master/worker frame, decode it, and restore it into a fresh map, each step
//! timed (the goal for 1,000,000 entries: under 1 s in all).
//!
//! `cargo bench --bench handoff [-- ENTRIES]`   (default 1000000)

mod common;

use std::time::{Duration, Instant};

use common::uuid;
use kansas::handoff::{read_frame, write_frame, Envelope, State, ToMaster, STATE_FORMAT};
use kansas::queues::{QueueMap, QueueMetrics};

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let names: Vec<String> = (0..8).map(|i| format!("tornado-{}", 9800 + i)).collect();
        let map = QueueMap::new(n * 2, Duration::from_secs(600), QueueMetrics::default());
        for i in 0..n {
            map.learn(&uuid(i), i % 8, i % 8, &format!("realm{}.zulipchat.com", i % 20_000));
        }
        let t = Instant::now();
        let queues = map.save(&names);
        let env = Envelope {
            format: STATE_FORMAT,
            kansas_version: "bench".into(),
            generation: 1,
            state: State { queues, ..State::default() },
        };
        let dump = t.elapsed();
        let t = Instant::now();
        let mut buf = Vec::new();
        write_frame(&mut buf, &ToMaster::State { state: Box::new(env) }).await.unwrap();
        let encode = t.elapsed();
        let t = Instant::now();
        let msg: ToMaster = read_frame(&mut buf.as_slice()).await.unwrap().unwrap();
        let decode = t.elapsed();
        let ToMaster::State { state } = msg else { panic!() };
        let t = Instant::now();
        let fresh = QueueMap::new(n * 2, Duration::from_secs(600), QueueMetrics::default());
        let skipped = fresh.restore(state.state.queues, |name| names.iter().position(|x| x == name));
        let restore = t.elapsed();
        assert_eq!((fresh.len(), skipped), (n, 0));
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "handoff of {n} queues: dump {:.0} ms, encode {:.0} ms ({:.0} MB), decode {:.0} ms, restore {:.0} ms; total {:.0} ms",
            ms(dump),
            ms(encode),
            buf.len() as f64 / 1e6,
            ms(decode),
            ms(restore),
            ms(dump + encode + decode + restore)
        );
    });
}
