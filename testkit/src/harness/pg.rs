//! A throwaway PostgreSQL server for tests: `initdb` into a temporary directory and `pg_ctl
//! start` on a free loopback port, as the `postgres` user when the tests run as root (PostgreSQL
//! refuses to run as root). Tests that only need a database can use `KANSAS_TEST_DATABASE_URL`
//! instead (a fresh database is created there per test). If neither works, the test fails and
//! says how to fix it; it never passes silently.

use std::path::{Path, PathBuf};
use std::process::Command;

const HOW_TO_FIX: &str = "PostgreSQL tests need the server binaries (initdb, pg_ctl, postgres): \
    `apt-get install postgresql` (Debian), or set KANSAS_TEST_DATABASE_URL to a server where \
    the tests may create databases";

fn bin_dir() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
    {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !p.is_empty() {
            let real = std::fs::canonicalize(&p).unwrap_or_else(|_| PathBuf::from(&p));
            return real.parent().unwrap().to_path_buf();
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.join("initdb").exists());
    versions.sort();
    versions
        .pop()
        .unwrap_or_else(|| panic!("no initdb found. {HOW_TO_FIX}"))
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs a PostgreSQL tool, as `postgres` when we are root.
fn pg_tool(bin: &Path, tool: &str, args: &[&str]) -> std::process::Output {
    let exe = bin.join(tool);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}. {HOW_TO_FIX}", exe.display()))
}

/// A PostgreSQL server of our own; stopped when dropped.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

impl PgServer {
    /// initdb + start on a free port.
    pub fn start() -> PgServer {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("kansas-pg")
            .tempdir()
            .unwrap();
        if is_root() {
            let user = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .unwrap_or_else(|| {
                    panic!("running as root, but there is no postgres user. {HOW_TO_FIX}")
                });
            nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).unwrap();
        }
        let data = dir.path().join("data");
        let out = pg_tool(
            &bin,
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}{}\n{HOW_TO_FIX}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let server = PgServer {
            dir,
            bin,
            port: free_port(),
        };
        server.start_on(server.port);
        server
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_str().unwrap().to_string()
    }

    /// (Re)starts the server on `port`.
    pub fn start_on(&self, port: u16) {
        let sock = self.dir.path().to_str().unwrap().to_string();
        let opts = format!(
            "-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        );
        let log = format!("{sock}/server.log");
        let data = self.data();
        let out = pg_tool(
            &self.bin,
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-w", "-t", "60", "-o", &opts, "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}\nlog: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server (fast shutdown: open connections are closed).
    pub fn stop(&self) {
        let data = self.data();
        let _ = pg_tool(
            &self.bin,
            "pg_ctl",
            &["-D", &data, "-m", "fast", "-w", "stop"],
        );
    }

    /// A URL for the `postgres` database on `port`.
    pub fn url_on(&self, port: u16) -> String {
        format!("postgresql://postgres@127.0.0.1:{port}/postgres")
    }

    pub fn url(&self) -> String {
        self.url_on(self.port)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data();
        let _ = pg_tool(
            &self.bin,
            "pg_ctl",
            &["-D", &data, "-m", "immediate", "-w", "stop"],
        );
    }
}

/// A database for one test: on `KANSAS_TEST_DATABASE_URL` (a fresh database), or on a server
/// of its own.
pub struct TestDb {
    pub url: String,
    _server: Option<PgServer>,
}

impl TestDb {
    /// Creates the database (starting a server when needed): no `Default`, which would hide that.
    #[allow(clippy::new_without_default)]
    pub fn new() -> TestDb {
        if let Ok(base) = std::env::var("KANSAS_TEST_DATABASE_URL") {
            let name = format!("kansas_test_{:08x}", fastrand::u32(..));
            run_sql(&base, &format!("CREATE DATABASE {name}"));
            return TestDb {
                url: with_dbname(&base, &name),
                _server: None,
            };
        }
        let server = PgServer::start();
        TestDb {
            url: server.url(),
            _server: Some(server),
        }
    }
}

/// Rewrites the database name in a URL (`.../old` → `.../name`).
fn with_dbname(base: &str, name: &str) -> String {
    match base.rsplit_once('/') {
        Some((head, tail)) if !head.ends_with('/') => {
            let query = tail
                .split_once('?')
                .map(|(_, q)| format!("?{q}"))
                .unwrap_or_default();
            format!("{head}/{name}{query}")
        }
        _ => format!("{}/{name}", base.trim_end_matches('/')),
    }
}

/// Runs SQL statements on `url`, panicking on error.
pub fn run_sql(url: &str, sql: &str) {
    // On a thread of its own, so async tests can call it too.
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || run_sql_here(&url, &sql))
        .join()
        .unwrap();
}

fn run_sql_here(url: &str, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test database: {e}"));
        let task = tokio::spawn(conn);
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        drop(client);
        let _ = task.await;
    });
}

pub use super::fake::free_port;
