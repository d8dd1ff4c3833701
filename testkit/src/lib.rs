//! kansas's test tools, kept out of the daemon: `fake_tornado` (a stand-in Zulip Tornado shard,
//! also the `fake-tornado` binary), `load` (the `kansas-load` harness: simulated Zulip clients
//! that check every event arrives once and in order), `harness` (what the integration tests
//! share: real `kansas`, `fake-tornado`, nginx and PostgreSQL processes, raw clients and
//! upstreams, metric scrapers), `h1_corpus` (the HTTP/1 conformance corpus's reader and
//! runner) and `h1_diff` (the differential test's two engines: `kansas::h1` and hyper).

pub mod fake_tornado;
pub mod h1_corpus;
pub mod h1_diff;
pub mod harness;
pub mod load;
