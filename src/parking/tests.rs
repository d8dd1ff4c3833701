//! Parking lot behaviour with a paused clock: arrival order, the release rate, the deadline,
//! overflow, abandoned tickets, and re-parking with the original place.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;

fn lot(rate: f64, burst: u32, max: usize) -> Arc<ShardPark> {
    let config = ParkingConfig {
        release_rate: rate,
        release_burst: burst,
        max_per_shard: max,
        ..ParkingConfig::default()
    };
    // Nothing listens on port 1: probes fail, the shard stays down until marked up by hand.
    ShardPark::new(
        "s",
        "127.0.0.1:1",
        config,
        Duration::from_millis(10),
        ParkMetrics::detached(),
    )
}

#[tokio::test(start_paused = true)]
async fn releases_in_arrival_order_at_the_configured_rate() {
    let park = lot(10.0, 2, 100);
    park.mark_down("test");
    tokio::spawn(park.clone().release_loop());
    let start = Instant::now();
    let deadline = start + Duration::from_secs(50);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..12 {
        let ticket = park.park(None).unwrap();
        let tx = tx.clone();
        tokio::spawn(async move {
            let r = ticket.wait(deadline).await;
            let _ = tx.send((i, r, Instant::now()));
        });
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        park.parked(),
        12,
        "nothing released while the shard is down"
    );
    let up_at = Instant::now();
    park.mark_up();
    let mut order = Vec::new();
    let mut times = Vec::new();
    for _ in 0..12 {
        let (i, r, at) = rx.recv().await.unwrap();
        assert_eq!(r, Released::Go);
        order.push(i);
        times.push(at.duration_since(up_at).as_secs_f64());
    }
    assert_eq!(order, (0..12).collect::<Vec<_>>(), "arrival order");
    // A burst of 2 at once, then one every 100 ms: the 12th at 1.0 s.
    assert!(times[1] < 0.001, "{times:?}");
    assert!((times[11] - 1.0).abs() < 0.01, "{times:?}");
    assert_eq!(park.metrics.replayed.get(), 12);
    assert_eq!(park.parked(), 0);
}

#[tokio::test(start_paused = true)]
async fn deadline_overflow_and_abandon() {
    let park = lot(100.0, 1, 2);
    park.mark_down("test");
    tokio::spawn(park.clone().release_loop());
    let a = park.park(None).unwrap();
    let b = park.park(None).unwrap();
    assert_eq!(park.park(None).err(), Some(Overflow));
    assert_eq!(park.metrics.overflowed.get(), 1);
    drop(b);
    assert_eq!(
        park.parked(),
        1,
        "an abandoned ticket frees its slot at once"
    );
    assert_eq!(park.metrics.abandoned.get(), 1);
    let c = park.park(None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    assert_eq!(a.wait(deadline).await, Released::Deadline);
    assert_eq!(Instant::now(), deadline);
    assert_eq!(park.metrics.timed_out.get(), 1);
    assert_eq!(park.parked(), 1);
    drop(c);
    assert_eq!(park.parked(), 0);
    assert_eq!(park.metrics.parked_now.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_reparked_request_keeps_its_place() {
    let park = lot(1000.0, 1, 10);
    park.mark_down("test");
    let first = park.park(None).unwrap();
    let second = park.park(None).unwrap();
    let seq = first.seq();
    drop(first); // its replay failed: it comes back with the same sequence number
    let again = park.park(Some(seq)).unwrap();
    tokio::spawn(park.clone().release_loop());
    park.mark_up();
    let deadline = Instant::now() + Duration::from_secs(50);
    let t0 = Instant::now();
    assert_eq!(again.wait(deadline).await, Released::Go);
    let t_again = Instant::now();
    assert_eq!(second.wait(deadline).await, Released::Go);
    assert!(t_again <= Instant::now() && t_again.duration_since(t0) < Duration::from_millis(2));
    assert_eq!(
        park.metrics.parked.get(),
        2,
        "a re-park is not a new parked request"
    );
}
