//! The database side of the operator commands. Every routing change is one [`Change`]: a
//! transaction, serialized with every other writer, that records the routing state before and
//! after the change and, unless its drain window is zero, opens a window
//! (`docs/residency.md` §4). Inputs are validated by the caller (`crate::cli`) against the
//! config file before anything here runs.

use std::time::Duration;

use tokio_postgres::{Client, Transaction};

use super::{load_tables, StoreError};
use crate::routing::state::RoutingState;

/// Advisory lock key serializing routing writers (so each change's "before" is the previous
/// change's "after").
const WRITE_LOCK: i64 = 0x6b61_6e73_6177;

/// Drain windows that closed longer ago than this are deleted by the next write.
const KEEP_CLOSED: &str = "1 day";

/// One routing change in progress.
pub struct Change<'a> {
    tx: Transaction<'a>,
    before: RoutingState,
}

/// What a committed change did.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// Whether the routing state changed at all.
    pub changed: bool,
    /// The drain window opened: its id and when it closes (seconds since the epoch).
    pub window: Option<(i64, f64)>,
}

impl<'a> Change<'a> {
    /// Starts a change: takes the writers' lock and reads the state before it.
    pub async fn begin(client: &'a mut Client) -> Result<Change<'a>, StoreError> {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
            .await?;
        // Readers see the change whole: one notification at commit instead of one per row.
        tx.execute("SELECT set_config('kansas.notify', 'commit', true)", &[])
            .await?;
        let before = load_tables(&tx).await?.current();
        Ok(Change { tx, before })
    }

    pub fn tx(&self) -> &Transaction<'a> {
        &self.tx
    }

    /// The routing state before this change.
    pub fn before(&self) -> &RoutingState {
        &self.before
    }

    /// Names of the registered shards (with a port).
    pub fn registered(&self) -> Vec<&str> {
        self.before.shards.iter().map(|s| s.name.as_str()).collect()
    }

    /// Commits the change, opening a drain window of `window` (none when zero or when routing
    /// did not change). Refused, with nothing written, when `max_open` windows are open.
    pub async fn commit(
        self,
        what: &str,
        by: &str,
        window: Duration,
        max_open: usize,
    ) -> Result<Committed, StoreError> {
        let after = load_tables(&self.tx).await?.current();
        let changed = after != self.before;
        let mut opened = None;
        if changed && !window.is_zero() {
            let row = self
                .tx
                .query_one(
                    "SELECT count(*), to_char(min(until) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
                     FROM kansas.drain_windows WHERE until > now()",
                    &[],
                )
                .await?;
            let open: i64 = row.get(0);
            if open as usize >= max_open {
                return Err(StoreError::TooManyWindows {
                    open: open as usize,
                    max: max_open,
                    next_close: row.get::<_, Option<String>>(1).unwrap_or_default(),
                });
            }
            let json = |s: &RoutingState| serde_json::to_string(s).expect("a state serializes");
            let row = self
                .tx
                .query_one(
                    "INSERT INTO kansas.drain_windows (until, change, changed_by, before, after)
                     VALUES (now() + make_interval(secs => $1), $2, $3, $4::text::jsonb, $5::text::jsonb)
                     RETURNING id, extract(epoch FROM until)::float8",
                    &[
                        &window.as_secs_f64(),
                        &truncate(what, 2000),
                        &by,
                        &json(&self.before),
                        &json(&after),
                    ],
                )
                .await?;
            opened = Some((row.get(0), row.get(1)));
        }
        self.tx
            .execute(
                &format!(
                    "DELETE FROM kansas.drain_windows WHERE until < now() - interval '{KEEP_CLOSED}'"
                ),
                &[],
            )
            .await?;
        self.tx
            .execute(
                "SELECT pg_notify('kansas_routing', json_build_object('table', '*', 'op', 'COMMIT')::text)",
                &[],
            )
            .await?;
        self.tx.commit().await?;
        Ok(Committed {
            changed,
            window: opened,
        })
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// `split_shards` for a list of shards: NULL for one.
fn split(shards: &[String]) -> Option<Vec<String>> {
    (shards.len() > 1).then(|| shards.to_vec())
}

/// Assigns a realm; returns the shards it was assigned to before, if any.
pub async fn assign(
    tx: &Transaction<'_>,
    realm: &str,
    shards: &[String],
    note: Option<&str>,
    by: &str,
) -> Result<Option<Vec<String>>, StoreError> {
    let before = tx
        .query_opt(
            "SELECT coalesce(split_shards, ARRAY[shard]) FROM kansas.realm_assignments
             WHERE realm = $1",
            &[&realm],
        )
        .await?
        .map(|r| r.get(0));
    tx.execute(
        "INSERT INTO kansas.realm_assignments
             (realm, shard, split_shards, note, changed_by, updated_at)
         VALUES ($1, $2, $3, $4, $5, now())
         ON CONFLICT (realm) DO UPDATE SET shard = EXCLUDED.shard,
             split_shards = EXCLUDED.split_shards, note = EXCLUDED.note,
             changed_by = EXCLUDED.changed_by, updated_at = now()",
        &[&realm, &shards[0], &split(shards), &note, &by],
    )
    .await?;
    Ok(before)
}

/// Removes a realm's assignment; returns the shards it had, if any.
pub async fn unassign(
    tx: &Transaction<'_>,
    realm: &str,
) -> Result<Option<Vec<String>>, StoreError> {
    let row = tx
        .query_opt(
            "DELETE FROM kansas.realm_assignments WHERE realm = $1
             RETURNING coalesce(split_shards, ARRAY[shard])",
            &[&realm],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Sets a shard's weight, registering it with `port` if it is not registered yet; returns the
/// previous weight, if it had one.
pub async fn set_weight(
    tx: &Transaction<'_>,
    shard: &str,
    weight: f64,
    port: u16,
) -> Result<Option<f64>, StoreError> {
    let before = tx
        .query_opt(
            "SELECT weight FROM kansas.shards WHERE name = $1",
            &[&shard],
        )
        .await?
        .map(|r| r.get(0));
    tx.execute(
        "INSERT INTO kansas.shards (name, port, weight, updated_at) VALUES ($1, $2, $3, now())
         ON CONFLICT (name) DO UPDATE SET weight = EXCLUDED.weight,
             port = coalesce(kansas.shards.port, EXCLUDED.port), updated_at = now()",
        &[&shard, &i32::from(port), &weight],
    )
    .await?;
    Ok(before)
}

/// Registers shards `(name, port, weight)`: a missing one is added, a row without a port gets
/// one, a port that differs is corrected; weights already in the database are kept. Returns
/// what it did, one line per shard touched.
pub async fn register(
    tx: &Transaction<'_>,
    shards: &[(String, u16, f64)],
) -> Result<Vec<String>, StoreError> {
    let mut done = Vec::new();
    for (name, port, weight) in shards {
        let row = tx
            .query_opt("SELECT port FROM kansas.shards WHERE name = $1", &[name])
            .await?;
        let port32 = i32::from(*port);
        match row.map(|r| r.get::<_, Option<i32>>(0)) {
            None => {
                tx.execute(
                    "INSERT INTO kansas.shards (name, port, weight) VALUES ($1, $2, $3)",
                    &[name, &port32, weight],
                )
                .await?;
                done.push(format!(
                    "registered shard {name} (port {port}, weight {weight})"
                ));
            }
            Some(Some(p)) if p == port32 => {}
            Some(old) => {
                tx.execute(
                    "UPDATE kansas.shards SET port = $2, updated_at = now() WHERE name = $1",
                    &[name, &port32],
                )
                .await?;
                done.push(match old {
                    Some(p) => format!("shard {name}: port {p} -> {port}"),
                    None => format!("shard {name}: port {port}"),
                });
            }
        }
    }
    Ok(done)
}

/// Sets the rule at `priority`; returns its previous pattern and shards, if any.
pub async fn set_rule(
    tx: &Transaction<'_>,
    priority: i32,
    pattern: &str,
    shards: &[String],
) -> Result<Option<(String, Vec<String>)>, StoreError> {
    let before = tx
        .query_opt(
            "SELECT pattern, coalesce(split_shards, ARRAY[shard]) FROM kansas.realm_rules
             WHERE priority = $1",
            &[&priority],
        )
        .await?
        .map(|r| (r.get(0), r.get(1)));
    tx.execute(
        "INSERT INTO kansas.realm_rules (priority, pattern, shard, split_shards, updated_at)
         VALUES ($1, $2, $3, $4, now())
         ON CONFLICT (priority) DO UPDATE SET pattern = EXCLUDED.pattern, shard = EXCLUDED.shard,
             split_shards = EXCLUDED.split_shards, updated_at = now()",
        &[&priority, &pattern, &shards[0], &split(shards)],
    )
    .await?;
    Ok(before)
}

/// Removes the rule at `priority`; whether there was one.
pub async fn remove_rule(tx: &Transaction<'_>, priority: i32) -> Result<bool, StoreError> {
    Ok(tx
        .execute(
            "DELETE FROM kansas.realm_rules WHERE priority = $1",
            &[&priority],
        )
        .await?
        > 0)
}

/// Writes an import plan: upserts its assignments and, when it has rules, replaces the rule
/// list with them.
pub async fn import(
    tx: &Transaction<'_>,
    assignments: &[(String, Vec<String>, String)],
    rules: &[(String, Vec<String>)],
    by: &str,
) -> Result<(), StoreError> {
    for (realm, shards, note) in assignments {
        assign(tx, realm, shards, Some(note), by).await?;
    }
    if !rules.is_empty() {
        tx.execute("DELETE FROM kansas.realm_rules", &[]).await?;
        for (i, (pattern, shards)) in rules.iter().enumerate() {
            set_rule(tx, (i as i32 + 1) * 10, pattern, shards).await?;
        }
    }
    Ok(())
}

/// One `kansas.realm_assignments` row.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub realm: String,
    pub shards: Vec<String>,
    pub updated_at: String,
    pub changed_by: String,
    pub note: Option<String>,
}

/// Every assignment (of one shard, if given), by realm.
pub async fn assignments(
    client: &Client,
    shard: Option<&str>,
) -> Result<Vec<Assignment>, StoreError> {
    let rows = client
        .query(
            "SELECT realm, coalesce(split_shards, ARRAY[shard]),
                    to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                    changed_by, note
             FROM kansas.realm_assignments
             WHERE $1::text IS NULL OR $1 = ANY(coalesce(split_shards, ARRAY[shard]))
             ORDER BY realm",
            &[&shard],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Assignment {
            realm: r.get(0),
            shards: r.get(1),
            updated_at: r.get(2),
            changed_by: r.get(3),
            note: r.get(4),
        })
        .collect())
}

/// The shard registry: `(name, port, weight)` by name.
pub async fn shards(client: &Client) -> Result<Vec<(String, Option<u16>, f64)>, StoreError> {
    let rows = client
        .query(
            "SELECT name, port, weight FROM kansas.shards ORDER BY name",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let port: Option<i32> = r.get(1);
            (r.get(0), port.and_then(|p| u16::try_from(p).ok()), r.get(2))
        })
        .collect())
}

/// Realms assigned per shard (a split realm counts for each of its shards).
pub async fn assigned_counts(
    client: &Client,
) -> Result<std::collections::HashMap<String, i64>, StoreError> {
    let rows = client
        .query(
            "SELECT s, count(*) FROM kansas.realm_assignments,
                 unnest(coalesce(split_shards, ARRAY[shard])) AS s GROUP BY s",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// One drain window, for listings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WindowInfo {
    pub id: i64,
    pub opened_at: f64,
    pub until: f64,
    pub change: String,
    pub changed_by: String,
}

/// The open drain windows, newest first.
pub async fn windows(client: &Client) -> Result<Vec<WindowInfo>, StoreError> {
    let rows = client
        .query(
            "SELECT id, extract(epoch FROM opened_at)::float8, extract(epoch FROM until)::float8,
                    change, changed_by
             FROM kansas.drain_windows WHERE until > now() ORDER BY opened_at DESC, id DESC",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| WindowInfo {
            id: r.get(0),
            opened_at: r.get(1),
            until: r.get(2),
            change: r.get(3),
            changed_by: r.get(4),
        })
        .collect())
}

/// Closes open windows now (one, or all); returns how many.
pub async fn close_windows(client: &Client, id: Option<i64>) -> Result<u64, StoreError> {
    Ok(client
        .execute(
            "UPDATE kansas.drain_windows SET until = greatest(opened_at, now())
             WHERE until > now() AND ($1::bigint IS NULL OR id = $1)",
            &[&id],
        )
        .await?)
}
