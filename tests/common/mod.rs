//! Shared integration-test harness: a configurable upstream HTTP server on `127.0.0.1:0`, a real
//! `kansas` child process, and a raw HTTP/1.1 client for the cases a normal client cannot make.
#![allow(dead_code)]

pub mod cli;
pub mod client;
pub mod fake;
pub mod kansas;
pub mod nginx;
pub mod pg;
pub mod raw_shard;
pub mod upstream;
