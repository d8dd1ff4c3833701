//! PostgreSQL as the authority for realm assignments, regex rules and shard weights. The
//! database refers to shards by name; addresses stay in the config file. kansas loads the whole
//! state at start, follows changes with LISTEN/NOTIFY ([`follow`]), re-syncs periodically, and
//! routes from memory whatever the database does: no request ever waits on it.
//!
//! With a database, realm assignments and rules come from it alone once it has been read; a
//! shard's weight comes from its `kansas.shard_weights` row when there is one, else from the
//! config file. Until the database has been read once, the config file's routing applies.

pub mod admin;
pub mod follow;
pub mod schema;
pub mod zulip;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_postgres::{Client, NoTls};

use crate::config::DatabaseConfig;
pub use crate::routing::state::Ignored;
use crate::routing::state::{RoutingState, StateRule, StateShard};
use crate::routing::{Snapshot, Window};

/// Why a database operation failed. Messages never contain the connection string.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database.url_env names {0}, which is not set")]
    UrlEnvUnset(String),
    #[error("the database URL is not valid (it is not shown here, as it may hold a password)")]
    BadUrl,
    #[error("cannot connect to the database at {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("connecting to the database at {0} timed out")]
    ConnectTimeout(String),
    #[error("database error: {0}")]
    Query(String),
    #[error(
        "the database has kansas schema version {found}, this kansas needs {wanted}: \
         run `kansas db migrate --config FILE`"
    )]
    SchemaNotMigrated { found: i32, wanted: i32 },
    #[error(
        "the database has kansas schema version {found}, newer than this kansas knows ({known}): \
         upgrade kansas"
    )]
    SchemaTooNew { found: i32, known: i32 },
    #[error("the database connection closed")]
    Closed,
    #[error(
        "{open} drain windows are open (queues.max_drain_windows is {max}); the next closes at \
         {next_close} UTC: wait, or close one with `kansas residency --close ID`"
    )]
    TooManyWindows {
        open: usize,
        max: usize,
        next_close: String,
    },
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // Server-side errors carry a useful message; client-side ones never echo the URL.
        match e.as_db_error() {
            Some(db) => StoreError::Query(format!("{}: {}", db.code().code(), db.message())),
            None => StoreError::Query(e.to_string()),
        }
    }
}

/// The connection string, from the config or the environment variable it names.
pub fn url(db: &DatabaseConfig) -> Result<String, StoreError> {
    match (&db.url, &db.url_env) {
        (Some(url), _) => Ok(url.clone()),
        (None, Some(var)) => std::env::var(var).map_err(|_| StoreError::UrlEnvUnset(var.clone())),
        (None, None) => Err(StoreError::BadUrl),
    }
}

/// Where a connection goes, for logs: hosts, port and database name, never the password.
pub fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("(default)");
    format!("{}:{port}/{db}", hosts.join(","))
}

/// Opens a connection; the returned task drives it and forwards notifications.
pub async fn connect(
    db: &DatabaseConfig,
) -> Result<(Client, tokio::sync::mpsc::UnboundedReceiver<String>), StoreError> {
    use futures_util::StreamExt;
    let url = url(db)?;
    let mut config: tokio_postgres::Config = url.parse().map_err(|_| StoreError::BadUrl)?;
    config.connect_timeout(db.connect_timeout);
    if config.get_application_name().is_none() {
        config.application_name("kansas");
    }
    let target = describe(&config);
    let connecting = config.connect(NoTls);
    let (client, mut connection) = match tokio::time::timeout(db.connect_timeout, connecting).await
    {
        Err(_) => return Err(StoreError::ConnectTimeout(target)),
        Ok(Err(e)) => {
            return Err(StoreError::Connect {
                target,
                reason: e.to_string(),
            })
        }
        Ok(Ok(pair)) => pair,
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(msg) = messages.next().await {
            match msg {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    let _ = tx.send(n.payload().to_string());
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "database connection ended");
                    break;
                }
            }
        }
    });
    Ok((client, rx))
}

/// One drain window as stored (`kansas.drain_windows`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRow {
    pub opened_at: f64,
    pub until: f64,
    pub change: String,
    pub changed_by: String,
    pub before: RoutingState,
    pub after: RoutingState,
}

/// What the database says about routing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DbState {
    /// Shard name → (Tornado port, weight); a row without a port is not registered yet.
    pub shards: BTreeMap<String, (Option<u16>, f64)>,
    /// Realm → its shards (several: split by user).
    pub assignments: BTreeMap<String, Vec<String>>,
    /// Priority → (pattern, shards), applied in priority order.
    pub rules: BTreeMap<i32, (String, Vec<String>)>,
    /// Drain windows open when last read, by id.
    pub windows: BTreeMap<i64, WindowRow>,
}

impl DbState {
    /// The current routing state: registered shards (by name), assignments, rules in order.
    pub fn current(&self) -> RoutingState {
        RoutingState {
            shards: self
                .shards
                .iter()
                .filter_map(|(name, (port, weight))| {
                    port.map(|port| StateShard {
                        name: name.clone(),
                        port,
                        weight: *weight,
                    })
                })
                .collect(),
            assignments: self.assignments.clone(),
            rules: self
                .rules
                .iter()
                .map(|(priority, (pattern, shards))| StateRule {
                    priority: *priority,
                    pattern: pattern.clone(),
                    shards: shards.clone(),
                })
                .collect(),
        }
    }
}

fn shard_list(first: String, split: Option<Vec<String>>) -> Vec<String> {
    match split {
        Some(list) if !list.is_empty() => list,
        _ => vec![first],
    }
}

/// Reads the routing tables (not the windows) inside an open transaction.
pub async fn load_tables(tx: &tokio_postgres::Transaction<'_>) -> Result<DbState, StoreError> {
    let mut state = DbState::default();
    for row in tx
        .query("SELECT name, port, weight FROM kansas.shards", &[])
        .await?
    {
        let port: Option<i32> = row.get(1);
        state.shards.insert(
            row.get(0),
            (port.and_then(|p| u16::try_from(p).ok()), row.get(2)),
        );
    }
    for row in tx
        .query(
            "SELECT realm, shard, split_shards FROM kansas.realm_assignments",
            &[],
        )
        .await?
    {
        state
            .assignments
            .insert(row.get(0), shard_list(row.get(1), row.get(2)));
    }
    for row in tx
        .query(
            "SELECT priority, pattern, shard, split_shards FROM kansas.realm_rules",
            &[],
        )
        .await?
    {
        state
            .rules
            .insert(row.get(0), (row.get(1), shard_list(row.get(2), row.get(3))));
    }
    Ok(state)
}

/// Reads the drain windows still open inside an open transaction.
pub async fn load_windows(
    tx: &tokio_postgres::Transaction<'_>,
) -> Result<BTreeMap<i64, WindowRow>, StoreError> {
    let mut windows = BTreeMap::new();
    for row in tx
        .query(
            "SELECT id, extract(epoch FROM opened_at)::float8, extract(epoch FROM until)::float8,
                    change, changed_by, before::text, after::text
             FROM kansas.drain_windows WHERE until > now() ORDER BY id",
            &[],
        )
        .await?
    {
        let id: i64 = row.get(0);
        let parse = |i: usize| -> Result<RoutingState, StoreError> {
            serde_json::from_str(row.get::<_, &str>(i))
                .map_err(|e| StoreError::Query(format!("drain window {id}: {e}")))
        };
        windows.insert(
            id,
            WindowRow {
                opened_at: row.get(1),
                until: row.get(2),
                change: row.get(3),
                changed_by: row.get(4),
                before: parse(5)?,
                after: parse(6)?,
            },
        );
    }
    Ok(windows)
}

/// Reads the whole state in one consistent snapshot.
pub async fn load(client: &mut Client) -> Result<DbState, StoreError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let mut state = load_tables(&tx).await?;
    state.windows = load_windows(&tx).await?;
    tx.commit().await?;
    Ok(state)
}

/// One change announced by the `kansas.notify_change` trigger.
#[derive(Debug, Deserialize)]
struct Change {
    table: String,
    op: String,
    old: Option<serde_json::Value>,
    new: Option<serde_json::Value>,
}

impl DbState {
    /// Applies one notification payload. `false` when it cannot be applied incrementally
    /// (a TRUNCATE, a drain window, a whole change committed by a kansas command, or a payload
    /// it does not understand): then the caller re-reads everything.
    pub fn apply(&mut self, payload: &str) -> bool {
        let Ok(change) = serde_json::from_str::<Change>(payload) else {
            return false;
        };
        if change.op == "TRUNCATE" || change.op == "COMMIT" {
            return false;
        }
        if let Some(old) = &change.old {
            if !self.remove(&change.table, old) {
                return false;
            }
        }
        match &change.new {
            Some(new) => self.insert(&change.table, new),
            None => change.old.is_some(),
        }
    }

    fn remove(&mut self, table: &str, row: &serde_json::Value) -> bool {
        match table {
            "shards" => row["name"]
                .as_str()
                .map(|k| self.shards.remove(k))
                .is_some(),
            "realm_assignments" => row["realm"]
                .as_str()
                .map(|k| self.assignments.remove(k))
                .is_some(),
            "realm_rules" => row["priority"]
                .as_i64()
                .map(|p| self.rules.remove(&(p as i32)))
                .is_some(),
            _ => false,
        }
    }

    fn insert(&mut self, table: &str, row: &serde_json::Value) -> bool {
        let text = |k: &str| row[k].as_str().map(str::to_string);
        let list = |first: String| {
            let split = row["split_shards"].as_array().map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            });
            shard_list(first, split)
        };
        match table {
            "shards" => match (text("name"), row["weight"].as_f64()) {
                (Some(name), Some(weight)) => {
                    let port = row["port"].as_u64().and_then(|p| u16::try_from(p).ok());
                    self.shards.insert(name, (port, weight));
                    true
                }
                _ => false,
            },
            "realm_assignments" => match (text("realm"), text("shard")) {
                (Some(realm), Some(shard)) => {
                    self.assignments.insert(realm, list(shard));
                    true
                }
                _ => false,
            },
            "realm_rules" => match (row["priority"].as_i64(), text("pattern"), text("shard")) {
                (Some(p), Some(pattern), Some(shard)) => {
                    self.rules.insert(p as i32, (pattern, list(shard)));
                    true
                }
                _ => false,
            },
            _ => false,
        }
    }
}

/// The routing snapshot: the database's routing state over the config file's shards, with its
/// drain windows. Rows that cannot be used, and disagreements between the database's shard
/// registry and the config file, are returned to be logged.
pub fn compose(base: &Snapshot, db: &DbState) -> (Snapshot, Vec<Ignored>) {
    let current = db.current();
    let (snapshot, mut ignored) = current.snapshot(base);
    for s in &base.shards()[..base.reachable_count()] {
        match db.shards.get(&s.name) {
            None | Some((None, _)) => ignored.push(Ignored {
                what: format!("shard {}", s.name),
                why: "in the config file but not registered in the database (run `kansas db migrate`): no realm routes to it".into(),
            }),
            Some((Some(port), _)) if *port != s.port => ignored.push(Ignored {
                what: format!("shard {}", s.name),
                why: format!(
                    "the database gives Tornado port {port}, the config file {}: Django uses the database's",
                    s.port
                ),
            }),
            _ => {}
        }
    }
    for s in &current.shards {
        if base.shard_id(&s.name).is_none() {
            ignored.push(Ignored {
                what: format!("shard {}", s.name),
                why:
                    "registered in the database but not in the config file: its realms get 503 here"
                        .into(),
            });
        }
    }
    let windows = db
        .windows
        .iter()
        .map(|(id, w)| Window {
            id: *id,
            opened_at: w.opened_at,
            until: w.until,
            change: w.change.clone(),
            changed_by: w.changed_by.clone(),
            before: w.before.snapshot(base).0,
            after: w.after.snapshot(base).0,
        })
        .collect();
    ignored.sort();
    (snapshot.with_windows(windows), ignored)
}

/// A connect timeout suitable for operator commands.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_notifications_incrementally() {
        let mut s = DbState::default();
        assert!(s.apply(r#"{"table":"realm_assignments","op":"INSERT","new":{"realm":"a.example.com","shard":"s1","split_shards":null}}"#));
        assert!(s.apply(
            r#"{"table":"shards","op":"INSERT","new":{"name":"s1","port":9801,"weight":0.5}}"#
        ));
        assert!(s.apply(r#"{"table":"realm_rules","op":"INSERT","new":{"priority":1,"pattern":"x","shard":"s2","split_shards":["s2","s3"]}}"#));
        assert!(s.apply(r#"{"table":"realm_assignments","op":"UPDATE","old":{"realm":"a.example.com","shard":"s1"},"new":{"realm":"b.example.com","shard":"s2"}}"#));
        assert_eq!(s.assignments.get("a.example.com"), None);
        assert_eq!(s.assignments["b.example.com"], ["s2"]);
        assert_eq!(s.shards["s1"], (Some(9801), 0.5));
        assert_eq!(s.rules[&1].1, ["s2", "s3"]);
        assert!(s.apply(r#"{"table":"realm_rules","op":"DELETE","old":{"priority":1}}"#));
        assert!(s.rules.is_empty());
        assert!(!s.apply(r#"{"table":"realm_rules","op":"TRUNCATE"}"#));
        assert!(!s.apply(r#"{"table":"drain_windows","op":"INSERT","id":3}"#));
        assert!(!s.apply(r#"{"table":"*","op":"COMMIT"}"#));
        assert!(!s.apply("not json"));
        assert!(!s.apply(r#"{"table":"other","op":"INSERT","new":{}}"#));
    }
}
