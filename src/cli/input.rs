//! Arguments checked before anything is written: realm hosts, shard names and lists against
//! the config file, weights, and the files operators name.

use std::path::Path;

use super::CmdError;
use crate::config::Config;
use crate::routing::normalize_host;
use crate::store::admin;

pub(super) fn realm(host: &str) -> Result<String, CmdError> {
    normalize_host(host).map_err(|_| CmdError::Usage(format!("{host:?} is not a valid realm host")))
}

pub(super) fn known_shard(config: &Config, shard: &str) -> Result<(), CmdError> {
    if config.routing.shard_id(shard).is_some() {
        return Ok(());
    }
    let names: Vec<&str> = config
        .routing
        .shards()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    Err(CmdError::Usage(format!(
        "unknown shard {shard:?} (the config file has: {})",
        names.join(", ")
    )))
}

/// `SHARD` or `SHARD,SHARD,...`: each known to the config file, none twice, at most 64.
pub(super) fn shard_list(config: &Config, text: &str) -> Result<Vec<String>, CmdError> {
    let list: Vec<String> = text.split(',').map(|s| s.trim().to_string()).collect();
    for (i, s) in list.iter().enumerate() {
        known_shard(config, s)?;
        if list[..i].contains(s) {
            return Err(CmdError::Usage(format!("shard {s:?} is listed twice")));
        }
    }
    if list.len() > 64 {
        return Err(CmdError::Usage("at most 64 shards in a split".into()));
    }
    Ok(list)
}

/// Fails unless every shard of `list` is registered in the database.
pub(super) fn registered(change: &admin::Change<'_>, list: &[String]) -> Result<(), CmdError> {
    let registered = change.registered();
    match list.iter().find(|s| !registered.contains(&s.as_str())) {
        Some(s) => Err(CmdError::Usage(format!(
            "shard {s:?} is not registered in the database: run `kansas db migrate` first"
        ))),
        None => Ok(()),
    }
}

pub(super) fn weight(text: &str) -> Result<f64, CmdError> {
    match text.trim().parse::<f64>() {
        Ok(w) if w.is_finite() && w >= 0.0 => Ok(w),
        _ => Err(CmdError::Usage(format!(
            "weight {text:?} must be a finite number >= 0"
        ))),
    }
}

/// A file an operator names (bounded like the config file).
pub(super) fn read(path: &Path) -> Result<String, CmdError> {
    crate::config::read_text(path).map_err(|source| CmdError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A value kept in the database and printed in tables (`--by`, `--note`): at most `MAX`
/// characters and no control characters (a newline or an escape sequence would break
/// `kansas assignments` and the terminal showing it).
pub(super) fn one_line<const MAX: usize>(text: &str) -> Result<String, String> {
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(format!("control character {c:?} not allowed"));
    }
    if text.chars().count() > MAX {
        return Err(format!("at most {MAX} characters"));
    }
    Ok(text.to_string())
}
