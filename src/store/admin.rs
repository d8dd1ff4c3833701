//! The database side of the operator commands: assignments, weights, and the import of Zulip's
//! sharding. Each write is one transaction. Inputs are validated by the caller (`crate::cli`)
//! against the config file before anything here runs.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::StoreError;

/// One `kansas.realm_assignments` row.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub realm: String,
    pub shard: String,
    pub updated_at: String,
    pub changed_by: String,
    pub note: Option<String>,
    pub move_policy: Option<String>,
}

/// Assigns a realm; returns the shard it was assigned to before, if any.
pub async fn assign(
    client: &mut Client,
    realm: &str,
    shard: &str,
    note: Option<&str>,
    by: &str,
    move_policy: Option<&str>,
) -> Result<Option<String>, StoreError> {
    let tx = client.transaction().await?;
    let before = tx
        .query_opt(
            "SELECT shard FROM kansas.realm_assignments WHERE realm = $1 FOR UPDATE",
            &[&realm],
        )
        .await?
        .map(|r| r.get(0));
    tx.execute(
        "INSERT INTO kansas.realm_assignments
             (realm, shard, note, changed_by, move_policy, updated_at)
         VALUES ($1, $2, $3, $4, $5, now())
         ON CONFLICT (realm) DO UPDATE SET shard = EXCLUDED.shard, note = EXCLUDED.note,
             changed_by = EXCLUDED.changed_by, move_policy = EXCLUDED.move_policy,
             updated_at = now()",
        &[&realm, &shard, &note, &by, &move_policy],
    )
    .await?;
    tx.commit().await?;
    Ok(before)
}

/// Removes a realm's assignment; returns the shard it had, if any.
pub async fn unassign(client: &mut Client, realm: &str) -> Result<Option<String>, StoreError> {
    let row = client
        .query_opt(
            "DELETE FROM kansas.realm_assignments WHERE realm = $1 RETURNING shard",
            &[&realm],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Every assignment (of one shard, if given), by realm.
pub async fn assignments(
    client: &Client,
    shard: Option<&str>,
) -> Result<Vec<Assignment>, StoreError> {
    let rows = client
        .query(
            "SELECT realm, shard, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                    changed_by, note, move_policy
             FROM kansas.realm_assignments
             WHERE $1::text IS NULL OR shard = $1
             ORDER BY realm",
            &[&shard],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Assignment {
            realm: r.get(0),
            shard: r.get(1),
            updated_at: r.get(2),
            changed_by: r.get(3),
            note: r.get(4),
            move_policy: r.get(5),
        })
        .collect())
}

/// Sets a shard's weight; returns the previous database weight, if any.
pub async fn set_weight(
    client: &mut Client,
    shard: &str,
    weight: f64,
) -> Result<Option<f64>, StoreError> {
    let tx = client.transaction().await?;
    let before = tx
        .query_opt(
            "SELECT weight FROM kansas.shard_weights WHERE shard = $1 FOR UPDATE",
            &[&shard],
        )
        .await?
        .map(|r| r.get(0));
    tx.execute(
        "INSERT INTO kansas.shard_weights (shard, weight, updated_at) VALUES ($1, $2, now())
         ON CONFLICT (shard) DO UPDATE SET weight = EXCLUDED.weight, updated_at = now()",
        &[&shard, &weight],
    )
    .await?;
    tx.commit().await?;
    Ok(before)
}

/// Database weights by shard.
pub async fn weights(client: &Client) -> Result<HashMap<String, f64>, StoreError> {
    let rows = client
        .query("SELECT shard, weight FROM kansas.shard_weights", &[])
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Assigned realms per shard.
pub async fn assigned_counts(client: &Client) -> Result<HashMap<String, i64>, StoreError> {
    let rows = client
        .query(
            "SELECT shard, count(*) FROM kansas.realm_assignments GROUP BY shard",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Writes an import plan in one transaction: upserts its assignments and, when it has rules,
/// replaces the rule list with them.
pub async fn import(
    client: &mut Client,
    assignments: &[(String, String, String)],
    rules: &[(String, String)],
    by: &str,
) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    for (realm, shard, note) in assignments {
        tx.execute(
            "INSERT INTO kansas.realm_assignments (realm, shard, note, changed_by, updated_at)
             VALUES ($1, $2, $3, $4, now())
             ON CONFLICT (realm) DO UPDATE SET shard = EXCLUDED.shard, note = EXCLUDED.note,
                 changed_by = EXCLUDED.changed_by, updated_at = now()",
            &[realm, shard, note, &by],
        )
        .await?;
    }
    if !rules.is_empty() {
        tx.execute("DELETE FROM kansas.realm_rules", &[]).await?;
        for (i, (pattern, shard)) in rules.iter().enumerate() {
            let priority = (i as i32 + 1) * 10;
            tx.execute(
                "INSERT INTO kansas.realm_rules (priority, pattern, shard) VALUES ($1, $2, $3)",
                &[&priority, pattern, shard],
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}
