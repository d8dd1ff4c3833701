//! Zulip's sharding, read from its two files and merged into one [`Sharding`] for
//! `kansas import-zulip`: `sharding.json` first, then `zulip.conf`'s `[tornado_sharding]`
//! (bare realm names completed with `--external-host`). A realm the two files place
//! differently is an error naming the file that contradicts the other.

use std::path::Path;

use super::input::read;
use super::CmdError;
use crate::store::zulip::{self, Sharding};

/// Reads and merges the files given.
pub(super) fn merged(
    sharding_json: Option<&Path>,
    zulip_conf: Option<&Path>,
    external_host: Option<&str>,
) -> Result<Sharding, CmdError> {
    let mut sharding = Sharding::default();
    if let Some(path) = sharding_json {
        let s = zulip::parse_sharding_json(&read(path)?).map_err(|e| file_error(path, e))?;
        sharding.merge(s).map_err(|e| file_error(path, e))?;
    }
    if let Some(path) = zulip_conf {
        let s = zulip::parse_zulip_conf(&read(path)?, external_host)
            .map_err(|e| file_error(path, e))?;
        sharding.merge(s).map_err(|e| file_error(path, e))?;
    }
    Ok(sharding)
}

fn file_error(path: &Path, message: String) -> CmdError {
    CmdError::ZulipFile {
        path: path.to_path_buf(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_files_merge_and_a_realm_in_both_names_the_second() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("sharding.json");
        let conf = dir.path().join("zulip.conf");
        std::fs::write(&json, r#"{"shard_map": {"a.example.com": 9800}}"#).unwrap();
        std::fs::write(&conf, "[tornado_sharding]\n9801 = b.example.com\n").unwrap();
        let s = merged(Some(&json), Some(&conf), None).unwrap();
        assert_eq!(s.hosts.len(), 2);

        std::fs::write(&conf, "[tornado_sharding]\n9801 = a.example.com\n").unwrap();
        let e = merged(Some(&json), Some(&conf), None).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            format!(
                "{}: realm \"a.example.com\" is listed twice",
                conf.display()
            )
        );
    }
}
