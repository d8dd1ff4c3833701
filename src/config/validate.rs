//! Turns the raw file into a [`Config`]: each section validated against its defaults table
//! ([`super::sections`], [`super::shards`]), then the checks across sections, then the routing
//! snapshot built. Every problem is collected with its key path; nothing stops at the first.

use super::checks::Problems;
use super::raw::RawConfig;
use super::shards::{self, Lookup};
use super::{sections, Config, Problem};
use crate::routing::Snapshot;

/// Validates a raw configuration, returning every problem found.
pub fn validate(raw: RawConfig) -> Result<Config, Vec<Problem>> {
    let mut p = Problems::default();
    let proxy = sections::proxy(raw.proxy, &mut p);
    let admin_listen = sections::admin_listen(raw.admin, &mut p);
    if admin_listen == proxy.listen && admin_listen.port() != 0 {
        p.add("admin.listen", "must differ from proxy.listen");
    }
    let timeouts = sections::timeouts(raw.timeouts, &mut p);
    let log = sections::log(raw.log, &mut p);
    let parking = sections::parking(raw.parking, &mut p);
    let database = raw.database.map(|d| sections::database(d, &mut p));
    let queues = sections::queues(raw.queues, &mut p);
    let master = sections::master(raw.master, &mut p);
    if parking.enabled && parking.timeout >= timeouts.drain {
        p.add(
            "parking.timeout_secs",
            "must be shorter than timeouts.drain_secs, so a graceful stop can answer parked requests",
        );
    }
    let shard_list = shards::shards(&raw.shards, &mut p);
    let lookup = Lookup::new(&shard_list);
    let assignments = shards::assignments(&raw.assignments, &lookup, &mut p);
    let rules = shards::rules(&raw.rules, &lookup, &mut p);
    if !p.is_empty() {
        return Err(p.0);
    }
    let routing = Snapshot::new(shard_list, assignments, rules).map_err(|e| {
        vec![Problem {
            key: "shards".into(),
            message: e.to_string(),
        }]
    })?;
    Ok(Config {
        proxy,
        admin_listen,
        timeouts,
        log,
        parking,
        queues,
        master,
        database,
        routing,
    })
}
