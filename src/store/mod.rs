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

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;
use tokio_postgres::{Client, NoTls};

use crate::config::DatabaseConfig;
use crate::routing::{normalize_host, MovePolicy, Rule, Snapshot};

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

/// What the database says about routing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DbState {
    pub weights: HashMap<String, f64>,
    /// realm → shard name.
    pub assignments: HashMap<String, String>,
    /// realm → its assignment's move policy, where set.
    pub policies: HashMap<String, MovePolicy>,
    /// priority → (pattern, shard name), applied in priority order.
    pub rules: BTreeMap<i32, (String, String)>,
}

/// Reads the whole state in one consistent snapshot.
pub async fn load(client: &mut Client) -> Result<DbState, StoreError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let mut state = DbState::default();
    for row in tx
        .query("SELECT shard, weight FROM kansas.shard_weights", &[])
        .await?
    {
        state.weights.insert(row.get(0), row.get(1));
    }
    for row in tx
        .query(
            "SELECT realm, shard, move_policy FROM kansas.realm_assignments",
            &[],
        )
        .await?
    {
        let realm: String = row.get(0);
        if let Some(p) = row
            .get::<_, Option<String>>(2)
            .as_deref()
            .and_then(MovePolicy::parse)
        {
            state.policies.insert(realm.clone(), p);
        }
        state.assignments.insert(realm, row.get(1));
    }
    for row in tx
        .query(
            "SELECT priority, pattern, shard FROM kansas.realm_rules",
            &[],
        )
        .await?
    {
        state.rules.insert(row.get(0), (row.get(1), row.get(2)));
    }
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
    /// (a TRUNCATE, or a payload it does not understand): then the caller re-reads everything.
    pub fn apply(&mut self, payload: &str) -> bool {
        let Ok(change) = serde_json::from_str::<Change>(payload) else {
            return false;
        };
        if change.op == "TRUNCATE" {
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
            "shard_weights" => row["shard"]
                .as_str()
                .map(|k| self.weights.remove(k))
                .is_some(),
            "realm_assignments" => row["realm"]
                .as_str()
                .map(|k| {
                    self.policies.remove(k);
                    self.assignments.remove(k)
                })
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
        match table {
            "shard_weights" => match (text("shard"), row["weight"].as_f64()) {
                (Some(shard), Some(weight)) => {
                    self.weights.insert(shard, weight);
                    true
                }
                _ => false,
            },
            "realm_assignments" => match (text("realm"), text("shard")) {
                (Some(realm), Some(shard)) => {
                    match row["move_policy"].as_str().and_then(MovePolicy::parse) {
                        Some(p) => self.policies.insert(realm.clone(), p),
                        None => self.policies.remove(&realm),
                    };
                    self.assignments.insert(realm, shard);
                    true
                }
                _ => false,
            },
            "realm_rules" => match (row["priority"].as_i64(), text("pattern"), text("shard")) {
                (Some(p), Some(pattern), Some(shard)) => {
                    self.rules.insert(p as i32, (pattern, shard));
                    true
                }
                _ => false,
            },
            _ => false,
        }
    }
}

/// A database row that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ignored {
    pub what: String,
    pub why: String,
}

/// The routing snapshot: the config's shards with the database's weights, assignments and rules.
/// Rows naming a shard the config does not know (or an invalid host or pattern) are skipped
/// and returned.
pub fn compose(base: &Snapshot, db: &DbState) -> (Snapshot, Vec<Ignored>) {
    let mut ignored = Vec::new();
    let mut shards = base.shards().to_vec();
    for (name, weight) in &db.weights {
        match shards.iter_mut().find(|s| &s.name == name) {
            Some(s) => s.weight = *weight,
            None => ignored.push(Ignored {
                what: format!("shard_weights row for {name:?}"),
                why: "no such shard in the config file".into(),
            }),
        }
    }
    let mut assignments = HashMap::with_capacity(db.assignments.len());
    for (realm, shard) in &db.assignments {
        match (base.shard_id(shard), normalize_host(realm)) {
            (Some(id), Ok(norm)) if &norm == realm => {
                assignments.insert(norm, id);
            }
            (None, _) => ignored.push(Ignored {
                what: format!("assignment {realm} -> {shard}"),
                why: format!("no shard {shard:?} in the config file"),
            }),
            _ => ignored.push(Ignored {
                what: format!("assignment {realm} -> {shard}"),
                why: "not a valid realm host".into(),
            }),
        }
    }
    let mut rules = Vec::with_capacity(db.rules.len());
    for (priority, (pattern, shard)) in &db.rules {
        let what = format!("rule {priority} {pattern:?} -> {shard}");
        match base.shard_id(shard) {
            None => ignored.push(Ignored {
                what,
                why: format!("no shard {shard:?} in the config file"),
            }),
            Some(id) => match Rule::new(pattern, id) {
                Ok(rule) => rules.push(rule),
                Err(_) => ignored.push(Ignored {
                    what,
                    why: "invalid regular expression".into(),
                }),
            },
        }
    }
    let policies = db
        .policies
        .iter()
        .filter(|(realm, _)| assignments.contains_key(realm.as_str()))
        .map(|(r, p)| (r.clone(), *p))
        .collect();
    let snapshot = Snapshot::new(shards, assignments, rules)
        .expect("the config's shard list is valid")
        .with_origin(crate::routing::Origin::Database)
        .with_move_policies(policies);
    ignored.sort();
    (snapshot, ignored)
}

/// A connect timeout suitable for operator commands.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_notifications_incrementally() {
        let mut s = DbState::default();
        assert!(s.apply(r#"{"table":"realm_assignments","op":"INSERT","new":{"realm":"a.example.com","shard":"s1"}}"#));
        assert!(
            s.apply(r#"{"table":"shard_weights","op":"INSERT","new":{"shard":"s1","weight":0.5}}"#)
        );
        assert!(s.apply(r#"{"table":"realm_rules","op":"INSERT","new":{"priority":1,"pattern":"x","shard":"s2"}}"#));
        assert!(s.apply(r#"{"table":"realm_assignments","op":"UPDATE","old":{"realm":"a.example.com","shard":"s1"},"new":{"realm":"b.example.com","shard":"s2"}}"#));
        assert_eq!(s.assignments.get("a.example.com"), None);
        assert_eq!(s.assignments["b.example.com"], "s2");
        assert_eq!(s.weights["s1"], 0.5);
        assert!(s.apply(r#"{"table":"realm_rules","op":"DELETE","old":{"priority":1}}"#));
        assert!(s.rules.is_empty());
        assert!(!s.apply(r#"{"table":"realm_rules","op":"TRUNCATE"}"#));
        assert!(!s.apply("not json"));
        assert!(!s.apply(r#"{"table":"other","op":"INSERT","new":{}}"#));
    }
}
