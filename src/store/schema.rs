//! The database schema: versioned SQL migrations embedded in the binary, applied by
//! `kansas db migrate` (idempotent, serialized by an advisory lock, one transaction), and the
//! check `kansas run` makes before trusting a database.

use tokio_postgres::Client;

use super::StoreError;

/// `(version, description, SQL)`, in order.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "shard weights, realm assignments, regex rules, change notifications",
        include_str!("migrations/0001_init.sql"),
    ),
    (
        2,
        "per-assignment realm-move policy",
        include_str!("migrations/0002_move_policy.sql"),
    ),
    (
        3,
        "realm residency: shard registry with ports, user-split lists, drain windows",
        include_str!("migrations/0003_residency.sql"),
    ),
];

/// The schema version this kansas expects.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Advisory lock key serializing concurrent `kansas db migrate` runs.
const MIGRATE_LOCK: i64 = 0x6b61_6e73_6173;

/// The applied schema version, `None` when kansas's schema was never migrated here.
pub async fn version(client: &Client) -> Result<Option<i32>, StoreError> {
    let row = client
        .query_one(
            "SELECT to_regclass('kansas.schema_migrations') IS NOT NULL",
            &[],
        )
        .await?;
    if !row.get::<_, bool>(0) {
        return Ok(None);
    }
    let row = client
        .query_one("SELECT max(version) FROM kansas.schema_migrations", &[])
        .await?;
    Ok(row.get::<_, Option<i32>>(0))
}

/// Fails unless the database is at exactly the version this kansas knows.
pub async fn check(client: &Client) -> Result<(), StoreError> {
    match version(client).await? {
        Some(v) if v == latest() => Ok(()),
        Some(v) if v > latest() => Err(StoreError::SchemaTooNew {
            found: v,
            known: latest(),
        }),
        found => Err(StoreError::SchemaNotMigrated {
            found: found.unwrap_or(0),
            wanted: latest(),
        }),
    }
}

/// Applies every missing migration in one transaction; returns the versions applied.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS kansas;
         CREATE TABLE IF NOT EXISTS kansas.schema_migrations (
             version integer PRIMARY KEY,
             description text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
    )
    .await?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM kansas.schema_migrations",
            &[],
        )
        .await?
        .get(0);
    if current > latest() {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known: latest(),
        });
    }
    let mut applied = Vec::new();
    for (version, description, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO kansas.schema_migrations (version, description) VALUES ($1, $2)",
            &[version, description],
        )
        .await?;
        applied.push(*version);
    }
    tx.commit().await?;
    Ok(applied)
}
