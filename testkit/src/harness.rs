//! What the integration tests share: a configurable upstream HTTP server on `127.0.0.1:0`, real
//! `kansas`, `fake-tornado` and `kansas-load` child processes, nginx and PostgreSQL, and a raw
//! HTTP/1.1 client for the cases a normal client cannot make.

pub mod bins;
pub mod cli;
pub mod client;
pub mod fake;
pub mod kansas;
pub mod load;
pub mod metrics;
pub mod nginx;
pub mod pg;
pub mod raw_shard;
pub mod upstream;
