//! A real `kansas run` child process with a generated configuration. Both listeners bind
//! `127.0.0.1:0`; the harness learns the ports from the JSON "kansas listening" log line and
//! keeps every log line for assertions.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The kansas binary under test.
pub fn binary() -> PathBuf {
    super::bins::kansas()
}

/// A running kansas; killed when dropped.
pub struct Kansas {
    child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    logs: Arc<Mutex<Vec<serde_json::Value>>>,
    _dir: tempfile::TempDir,
}

/// A configuration with both listeners on ephemeral loopback ports and JSON logs; `body` adds
/// shards, assignments, rules, timeouts.
pub fn config_text(body: &str) -> String {
    format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [log]\nformat = \"json\"\nlevel = \"info\"\n{body}"
    )
}

impl Kansas {
    /// Starts kansas with `config_text(body)` and waits until it listens.
    pub fn start(body: &str) -> Kansas {
        Self::start_raw(&config_text(body))
    }

    /// Starts kansas with exactly this configuration text.
    pub fn start_raw(config: &str) -> Kansas {
        Self::start_with_env(config, &[])
    }

    /// Starts kansas with `config_text(body)` and extra environment variables for it alone.
    pub fn start_env(body: &str, env: &[(&str, &str)]) -> Kansas {
        Self::start_with_env(&config_text(body), env)
    }

    /// Starts the kansas binary at `bin` (a copy, say) with `config_text(body)`.
    pub fn start_from(bin: &std::path::Path, body: &str) -> Kansas {
        Self::start_bin(Command::new(bin), &config_text(body), &[], Stdio::inherit())
    }

    /// Starts kansas with `config_text(body)`, its stderr (and its workers', where a panic
    /// message goes) written to `stderr`.
    pub fn start_stderr_to(body: &str, stderr: std::fs::File) -> Kansas {
        Self::start_bin(
            Command::new(binary()),
            &config_text(body),
            &[],
            stderr.into(),
        )
    }

    /// Starts kansas with `config_text(body)` under an open-file limit of `nofile` (soft and
    /// hard; `prlimit` execs kansas, so the child is still the master).
    pub fn start_with_fd_limit(nofile: u64, body: &str) -> Kansas {
        Self::start_raw_with_fd_limit(nofile, &config_text(body))
    }

    /// Starts kansas with exactly this configuration text under an open-file limit of `nofile`.
    pub fn start_raw_with_fd_limit(nofile: u64, config: &str) -> Kansas {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}:{nofile}")).arg(binary());
        Self::start_bin(cmd, config, &[], Stdio::inherit())
    }

    fn start_with_env(config: &str, env: &[(&str, &str)]) -> Kansas {
        Self::start_bin(Command::new(binary()), config, env, Stdio::inherit())
    }

    fn start_bin(mut cmd: Command, config: &str, env: &[(&str, &str)], stderr: Stdio) -> Kansas {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kansas.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = cmd
            .args(["run", "--config"])
            .arg(&path)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn kansas");
        let stdout = child.stdout.take().unwrap();
        // The engine a run asks for: this start's own environment, else the test process's.
        let asked_engine = env
            .iter()
            .find(|(k, _)| *k == "KANSAS_TEST_ENGINE")
            .map(|(_, v)| v.to_string())
            .or_else(|| std::env::var("KANSAS_TEST_ENGINE").ok());
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    eprintln!("kansas (not JSON): {line}");
                    continue;
                };
                if v["message"] == "kansas listening" {
                    // A run that asks for an engine must be served by it.
                    if let Some(engine) = &asked_engine {
                        assert_eq!(
                            v["engine"],
                            engine.as_str(),
                            "KANSAS_TEST_ENGINE not honoured"
                        );
                    }
                    let _ = tx.send((v["proxy"].clone(), v["admin"].clone()));
                }
                sink.lock().unwrap().push(v);
            }
        });
        let (proxy, admin) = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("kansas did not report its listeners");
        Kansas {
            child,
            proxy: proxy.as_str().unwrap().parse().unwrap(),
            admin: admin.as_str().unwrap().parse().unwrap(),
            logs,
            _dir: dir,
        }
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<serde_json::Value> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits (up to `within`) for a log line matching `pred`.
    pub fn wait_log(
        &self,
        within: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = self.logs().into_iter().find(|v| pred(v)) {
                return Some(v);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many upgrades have completed (a new worker active after SIGUSR1).
    pub fn active_upgrades(&self) -> usize {
        self.logs()
            .iter()
            .filter(|l| l["message"] == "worker active" && l["upgrade"] == true)
            .count()
    }

    /// Sends SIGUSR1 and waits until `n` upgrades have completed.
    pub fn upgrade(&self, n: usize) {
        self.signal(10);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.active_upgrades() < n {
            assert!(Instant::now() < deadline, "upgrade {n} did not complete");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal by number (15 = SIGTERM).
    pub fn signal(&self, sig: i32) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit (up to `within`).
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Kansas {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `[[shards]]` entry.
pub fn shard(name: &str, addr: SocketAddr) -> String {
    format!("[[shards]]\nname = \"{name}\"\naddress = \"{addr}\"\n")
}
