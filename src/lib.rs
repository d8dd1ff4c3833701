//! kansas: a sharding reverse proxy for Zulip's real-time event system. nginx sends every
//! `/json/events` and `/api/v1/events` request to kansas; kansas picks the Tornado shard that
//! holds the realm's queues and forwards the request there over pooled keep-alive connections.
//!
//! Module map:
//! - [`config`]: the TOML file, raw then validated into [`config::Config`];
//! - [`routing`]: the pure realm → shard decision and weighted rendezvous hashing;
//! - [`h1`]: the I/O-free HTTP/1 framing core of the event path (`docs/http.md`);
//! - [`engine`]: the event path's HTTP/1 engine on it (`proxy.engine = "kansas"`, the
//!   default; `docs/engine.md`);
//! - [`proxy`]: shared state, routing decisions, the accept loop, the answers table, and the
//!   hyper engine (`proxy.engine = "hyper"`);
//! - [`queues`]: which shard each event queue lives on, and realm moves;
//! - [`parking`]: holding GETs while their shard restarts, and replaying them;
//! - [`store`]: PostgreSQL as the routing authority, followed live; operator commands;
//! - [`error`]: every way a proxied request can fail (the table of answers is in [`proxy`]);
//! - [`metrics`] and [`admin`]: Prometheus metrics and the loopback admin listener;
//! - [`cli`]: the command line;
//! - [`master`], [`worker`] and [`handoff`]: the supervisor-parent master, its workers, and
//!   the listener and state handoff between generations;
//! - [`daemon`]: `kansas run`, signals and graceful stop; [`explain`]: `kansas route`;
//! - [`logging`]: text or JSON logs; [`limits`]: the open-file limit.
//!
//! The test tools (fake-tornado, kansas-load, the test harness) are the `kansas-testkit` crate
//! (`testkit/`).
#![deny(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod error;
pub mod explain;
pub mod h1;
pub mod handoff;
pub mod limits;
pub mod logging;
pub mod master;
pub mod metrics;
pub mod parking;
pub mod proxy;
pub mod queues;
pub mod routing;
pub mod store;
pub mod worker;
