//! What a load run counts and how it is judged: event bookkeeping per registration (expected,
//! received, lost, duplicated, out of order), requests by status, errors by kind, latency
//! histograms; the human summary, the JSON report, and the pass/fail verdict.

use std::collections::{BTreeMap, BTreeSet};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Event bookkeeping for one registration (one queue) of one client.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The realm's sequence number when the queue was created: events after it are expected.
    pub base_seq: u64,
    /// Highest sequence number received.
    pub last_seq: u64,
    /// Sequence numbers skipped over and not (yet) received.
    pub missing: BTreeSet<u64>,
    pub received: u64,
}

impl Registration {
    pub fn new(base_seq: u64) -> Registration {
        Registration {
            base_seq,
            last_seq: base_seq,
            missing: BTreeSet::new(),
            received: 0,
        }
    }

    /// Records one received event.
    pub fn receive(&mut self, seq: u64, stats: &mut Stats) {
        if seq == self.last_seq + 1 {
            self.last_seq = seq;
            self.received += 1;
        } else if seq > self.last_seq + 1 {
            self.missing.extend(self.last_seq + 1..seq);
            self.last_seq = seq;
            self.received += 1;
        } else if self.missing.remove(&seq) {
            self.received += 1;
            stats.out_of_order += 1;
        } else {
            stats.duplicated += 1;
        }
    }

    /// Closes this registration: with `final_seq` for the registration alive at the end (every
    /// event up to it was expected), or `None` for one ended by a reload.
    pub fn close(&self, final_seq: Option<u64>, stats: &mut Stats) {
        stats.received += self.received;
        stats.lost += self.missing.len() as u64;
        match final_seq {
            Some(f) => {
                stats.expected += f.saturating_sub(self.base_seq);
                stats.lost += f.saturating_sub(self.last_seq);
            }
            None => stats.expected += self.received + self.missing.len() as u64,
        }
    }
}

/// Counters of one client, merged into the run's total at the end.
#[derive(Debug)]
pub struct Stats {
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub registrations: u64,
    pub reloads: u64,
    pub requests: u64,
    pub by_status: BTreeMap<u16, u64>,
    pub errors: BTreeMap<String, u64>,
    /// Publish → receive, microseconds.
    pub event_latency: Histogram<u64>,
    /// The same for events published after the start-up ramp (steady state).
    pub event_latency_steady: Histogram<u64>,
    /// Request round trip, microseconds.
    pub round_trip: Histogram<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            expected: 0,
            received: 0,
            lost: 0,
            duplicated: 0,
            out_of_order: 0,
            registrations: 0,
            reloads: 0,
            requests: 0,
            by_status: BTreeMap::new(),
            errors: BTreeMap::new(),
            event_latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds"),
            event_latency_steady: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds"),
            round_trip: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds"),
        }
    }
}

impl Stats {
    pub fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }

    pub fn merge(&mut self, o: &Stats) {
        self.expected += o.expected;
        self.received += o.received;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.out_of_order += o.out_of_order;
        self.registrations += o.registrations;
        self.reloads += o.reloads;
        self.requests += o.requests;
        for (k, v) in &o.by_status {
            *self.by_status.entry(*k).or_default() += v;
        }
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        let _ = self.event_latency.add(&o.event_latency);
        let _ = self.event_latency_steady.add(&o.event_latency_steady);
        let _ = self.round_trip.add(&o.round_trip);
    }
}

/// Percentiles of a histogram, in milliseconds.
#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// The machine-readable result of a run (`--json FILE`).
#[derive(Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub clients: usize,
    pub realms: usize,
    pub duration_secs: f64,
    pub published: u64,
    pub events_expected: u64,
    pub events_received: u64,
    pub events_lost: u64,
    pub events_duplicated: u64,
    pub events_out_of_order: u64,
    pub registrations: u64,
    pub reloads: u64,
    pub requests: u64,
    pub requests_by_status: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub publish_to_receive: Percentiles,
    /// Events published after every client started (the ramp), i.e. steady state.
    pub publish_to_receive_after_ramp: Percentiles,
    pub round_trip: Percentiles,
    /// Why the run failed; empty when it passed.
    pub failures: Vec<String>,
}

impl Report {
    /// Builds the report and judges it against the error allowances (`kind` → count; `any`
    /// bounds the total).
    pub fn new(
        target: String,
        clients: usize,
        realms: usize,
        duration_secs: f64,
        published: u64,
        stats: &Stats,
        allow: &BTreeMap<String, u64>,
    ) -> Report {
        let mut failures = Vec::new();
        if stats.lost > 0 {
            failures.push(format!("{} events lost", stats.lost));
        }
        if stats.duplicated > 0 {
            failures.push(format!("{} events duplicated", stats.duplicated));
        }
        if stats.out_of_order > 0 {
            failures.push(format!("{} events out of order", stats.out_of_order));
        }
        let total: u64 = stats.errors.values().sum();
        for (kind, n) in &stats.errors {
            let allowed = allow.get(kind).copied().unwrap_or(0);
            if *n > allowed && !allow.contains_key("any") {
                failures.push(format!("{n} {kind} errors (allowed {allowed})"));
            }
        }
        if let Some(any) = allow.get("any") {
            if total > *any {
                failures.push(format!("{total} errors in all (allowed {any})"));
            }
        }
        Report {
            target,
            clients,
            realms,
            duration_secs,
            published,
            events_expected: stats.expected,
            events_received: stats.received,
            events_lost: stats.lost,
            events_duplicated: stats.duplicated,
            events_out_of_order: stats.out_of_order,
            registrations: stats.registrations,
            reloads: stats.reloads,
            requests: stats.requests,
            requests_by_status: stats
                .by_status
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            errors: stats.errors.clone(),
            publish_to_receive: Percentiles::of(&stats.event_latency),
            publish_to_receive_after_ramp: Percentiles::of(&stats.event_latency_steady),
            round_trip: Percentiles::of(&stats.round_trip),
            failures,
        }
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let p = |x: &Percentiles| {
            format!(
                "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
                x.p50_ms, x.p90_ms, x.p99_ms, x.max_ms, x.count
            )
        };
        let kv = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "none".to_string()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        let mut s = format!(
            "kansas-load: {} clients over {} realms against {} for {:.1} s\n\
             events:   published {}, expected {}, received {}, lost {}, duplicated {}, out of order {}\n\
             queues:   {} registrations, {} reloads (BAD_EVENT_QUEUE_ID)\n\
             requests: {} ({})\n\
             errors:   {}\n\
             publish -> receive: {}\n\
               after the ramp:   {}\n\
             round trip:         {}\n",
            self.clients,
            self.realms,
            self.target,
            self.duration_secs,
            self.published,
            self.events_expected,
            self.events_received,
            self.events_lost,
            self.events_duplicated,
            self.events_out_of_order,
            self.registrations,
            self.reloads,
            self.requests,
            kv(&self.requests_by_status),
            kv(&self.errors),
            p(&self.publish_to_receive),
            p(&self.publish_to_receive_after_ramp),
            p(&self.round_trip),
        );
        if self.passed() {
            s.push_str("result:   PASS\n");
        } else {
            s.push_str(&format!("result:   FAIL: {}\n", self.failures.join("; ")));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_bookkeeping() {
        let mut st = Stats::default();
        let mut r = Registration::new(10);
        for seq in [11, 12, 14, 13, 13, 16] {
            r.receive(seq, &mut st);
        }
        assert_eq!((st.out_of_order, st.duplicated), (1, 1));
        r.close(Some(17), &mut st);
        // 11..=17 expected; 15 and 17 never arrived.
        assert_eq!((st.expected, st.received, st.lost), (7, 5, 2));
    }

    #[test]
    fn verdict_counts_allowances() {
        let mut st = Stats::default();
        st.error("http_502");
        st.error("http_502");
        let mut allow = BTreeMap::new();
        let r = Report::new("t".into(), 1, 1, 1.0, 0, &st, &allow);
        assert!(!r.passed());
        allow.insert("http_502".to_string(), 2);
        assert!(Report::new("t".into(), 1, 1, 1.0, 0, &st, &allow).passed());
        st.lost = 1;
        assert!(!Report::new("t".into(), 1, 1, 1.0, 0, &st, &allow).passed());
    }
}
