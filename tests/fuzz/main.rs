//! Fuzzing the inputs that come from outside kansas (issue 15): the `Host` header and the query
//! string, the state envelope a new worker decodes, the configuration file, and a shard's
//! response head. Each module holds proptest properties: no panic, no allocation beyond a bound,
//! and a property of the result, so each can fail. Case counts are small by default (a short
//! run in CI); `KANSAS_FUZZ_SCALE=N` multiplies them for the long run (`scripts/fuzz.sh`).

mod alloc;
mod config_file;
mod h1;
mod handoff;
mod host_query;
mod mutate;
mod shard;

use proptest::test_runner::Config;

/// A proptest configuration running `ci` cases, times `KANSAS_FUZZ_SCALE` when set.
pub fn cases(ci: u32) -> Config {
    let scale = std::env::var("KANSAS_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    Config {
        cases: ci.saturating_mul(scale),
        ..Config::default()
    }
}
