//! Routing decision cost: an assignment hit, and the rendezvous-hashing path at 4, 16 and 64
//! shards (goals: <= 50 ns for a hit, <= 100 ns for hashing at 16 shards).
//!
//! `cargo bench --bench routing`

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kansas::routing::{Shard, Snapshot};

fn snapshot(n: usize, assignments: usize) -> Snapshot {
    let shards = (0..n)
        .map(|i| Shard {
            name: format!("tornado-{}", 9800 + i),
            address: format!("127.0.0.1:{}", 9800 + i),
            port: 9800 + i as u16,
            weight: 1.0,
        })
        .collect();
    let assigned = (0..assignments)
        .map(|i| (format!("assigned{i}.zulipchat.com"), i % n))
        .collect::<HashMap<_, _>>();
    Snapshot::new(shards, assigned, vec![]).unwrap()
}

fn bench(c: &mut Criterion) {
    let s = snapshot(16, 10_000);
    c.bench_function("route/assignment_hit (10k assignments)", |b| {
        b.iter(|| s.route(black_box("assigned4242.zulipchat.com")))
    });
    let mut group = c.benchmark_group("route/hash");
    for n in [4, 16, 64] {
        let s = snapshot(n, 10_000);
        group.bench_with_input(BenchmarkId::from_parameter(n), &s, |b, s| {
            b.iter(|| s.route(black_box("realm12345.zulipchat.com")))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
