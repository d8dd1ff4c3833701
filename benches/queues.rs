//! Queue-map cost: a lookup (hit and miss) and a learn (touch) with 100,000 entries, and the
//! memory an entry takes (printed before the measurements).
//!
//! `cargo bench --bench queues`

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::uuid;
use criterion::{criterion_group, criterion_main, Criterion};
use kansas::queues::{QueueMap, QueueMetrics};

const ENTRIES: usize = 100_000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn filled(rt: &tokio::runtime::Runtime) -> QueueMap {
    let _guard = rt.enter();
    let map = QueueMap::new(1_000_000, Duration::from_secs(600), QueueMetrics::default());
    for i in 0..ENTRIES {
        map.learn(
            &uuid(i),
            i % 8,
            i % 8,
            &format!("realm{}.zulipchat.com", i % 5000),
        );
    }
    map
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let before = rss_kib();
    let map = filled(&rt);
    let after = rss_kib();
    eprintln!(
        "queue map: {ENTRIES} entries, RSS +{} KiB = {:.0} bytes per entry",
        after - before,
        (after - before) as f64 * 1024.0 / ENTRIES as f64
    );
    let _guard = rt.enter();
    let hit = uuid(4242);
    let miss = uuid(ENTRIES + 7);
    c.bench_function("queues/get hit (100k entries)", |b| {
        b.iter(|| map.get(black_box(&hit)))
    });
    c.bench_function("queues/get miss (100k entries)", |b| {
        b.iter(|| map.get(black_box(&miss)))
    });
    c.bench_function("queues/learn existing (100k entries)", |b| {
        b.iter(|| map.learn(black_box(&hit), 2, 2, "realm2.zulipchat.com"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
