//! The database as the commands reach it: the `[database]` section they need, a connection
//! with a migrated schema, and the routing kansas would use now.

use tokio_postgres::Client;

use super::CmdError;
use crate::config::{Config, DatabaseConfig};
use crate::routing::Snapshot;
use crate::store::{self, schema};

pub(super) fn database(config: &Config) -> Result<&DatabaseConfig, CmdError> {
    config.database.as_ref().ok_or_else(|| {
        CmdError::Usage("this command needs a [database] section in the config".into())
    })
}

/// A connection with a migrated schema.
pub(super) async fn client(config: &Config) -> Result<Client, CmdError> {
    let (client, _notifications) = store::connect(database(config)?).await?;
    schema::check(&client).await?;
    Ok(client)
}

/// The routing kansas would use now (with its drain windows): the database's if reachable,
/// else the config file's.
pub(super) async fn current_routing(config: &Config) -> Result<Snapshot, CmdError> {
    let Some(db) = &config.database else {
        return Ok(config.routing.clone());
    };
    match store::connect(db).await {
        Ok((mut client, _)) => {
            schema::check(&client).await?;
            let state = store::load(&mut client).await?;
            let (snapshot, ignored) = store::compose(&config.routing, &state);
            for row in ignored {
                eprintln!("kansas: warning: {}: {}", row.what, row.why);
            }
            Ok(snapshot)
        }
        Err(e) => {
            eprintln!("kansas: warning: {e}; showing the config file's routing");
            Ok(config.routing.clone())
        }
    }
}
