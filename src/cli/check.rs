//! `kansas check-config FILE`: a one-line summary of a valid file, or every problem with its
//! key path and exit 2.

use std::path::Path;
use std::process::ExitCode;

pub(super) fn run(file: &Path) -> ExitCode {
    match crate::config::load(file) {
        Ok(config) => {
            println!(
                "{}: valid ({} shards, {} assignments, {} rules{})",
                file.display(),
                config.routing.shards().len(),
                config.routing.assignments().len(),
                config.routing.rules().len(),
                if config.database.is_some() {
                    ", database"
                } else {
                    ""
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kansas: {}", crate::config::report(file, &e));
            ExitCode::from(2)
        }
    }
}
