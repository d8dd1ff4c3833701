//! Why a command failed, and the exit code that says so: 2 for bad input or configuration
//! (nothing was written), 1 for a failure while running. Errors from other modules are carried
//! as they are (`#[from]` / `source`), so their text is theirs.

use std::path::PathBuf;

use crate::config::{BadDuration, ConfigError};
use crate::store::StoreError;

/// A command's failure.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// Bad input, in the command's own words: exit 2, nothing written.
    #[error("{0}")]
    Usage(String),
    /// The config file is unreadable or invalid: exit 2.
    #[error("{}", crate::config::report(path, source))]
    Config { path: PathBuf, source: ConfigError },
    /// A flag's duration does not parse: exit 2.
    #[error("{flag}: {source}")]
    Duration {
        flag: &'static str,
        source: BadDuration,
    },
    /// A file named on the command line cannot be read: exit 2.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A Zulip sharding file does not parse or contradicts another: exit 2.
    #[error("{}: {message}", path.display())]
    ZulipFile { path: PathBuf, message: String },
    /// The database: exit 2 when the configuration or the schema is at fault, else 1.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("reading standard input: {0}")]
    Stdin(#[source] std::io::Error),
    #[error("writing: {0}")]
    Stdout(#[source] std::io::Error),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl CmdError {
    /// 2: bad input or configuration, nothing written; 1: a failure while running.
    pub fn exit_code(&self) -> u8 {
        use StoreError::*;
        match self {
            CmdError::Usage(_)
            | CmdError::Config { .. }
            | CmdError::Duration { .. }
            | CmdError::Read { .. }
            | CmdError::ZulipFile { .. } => 2,
            CmdError::Store(
                UrlEnvUnset(_)
                | BadUrl
                | SchemaNotMigrated { .. }
                | SchemaTooNew { .. }
                | TooManyWindows { .. },
            ) => 2,
            CmdError::Store(_)
            | CmdError::Runtime(_)
            | CmdError::Stdin(_)
            | CmdError::Stdout(_)
            | CmdError::Write { .. } => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_and_configuration_exit_2_running_failures_exit_1() {
        let io = || std::io::Error::other("x");
        assert_eq!(CmdError::Usage("x".into()).exit_code(), 2);
        assert_eq!(CmdError::Store(StoreError::BadUrl).exit_code(), 2);
        assert_eq!(CmdError::Store(StoreError::Closed).exit_code(), 1);
        assert_eq!(CmdError::Stdout(io()).exit_code(), 1);
        let read = CmdError::Read {
            path: "/x".into(),
            source: io(),
        };
        assert_eq!(
            (read.exit_code(), read.to_string().as_str()),
            (2, "cannot read /x: x")
        );
    }
}
