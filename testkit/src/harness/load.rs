//! Running `kansas-load` from a test: one builder for every test that drives simulated Zulip
//! clients through kansas. It always writes the JSON report to a temporary file and runs quietly;
//! the test adds what its scenario needs and reads the report back.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

/// A `kansas-load` run being prepared.
pub struct LoadRun {
    cmd: Command,
    dir: tempfile::TempDir,
}

/// A `kansas-load` run under way.
pub struct RunningLoad {
    pub child: Child,
    json: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoadRun {
    /// Clients long-polling `target` (kansas, or nginx in front of it).
    pub fn new(target: SocketAddr) -> LoadRun {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut cmd = Command::new(super::bins::kansas_load());
        cmd.args(["--target", &format!("http://{target}"), "--quiet"]);
        cmd.arg("--json").arg(dir.path().join("report.json"));
        LoadRun { cmd, dir }
    }

    /// The shards the harness publishes to and checks (`--shards`).
    pub fn shards(mut self, shards: &[SocketAddr]) -> LoadRun {
        let list: Vec<String> = shards.iter().map(|s| s.to_string()).collect();
        self.cmd.args(["--shards", &list.join(",")]);
        self
    }

    /// Any other arguments.
    pub fn args<I, S>(mut self, args: I) -> LoadRun
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Starts it (standard output discarded: the report is the JSON file).
    pub fn spawn(mut self) -> RunningLoad {
        let json = self.dir.path().join("report.json");
        let child = self
            .cmd
            .stdout(Stdio::null())
            .spawn()
            .expect("starting kansas-load");
        RunningLoad {
            child,
            json,
            _dir: self.dir,
        }
    }

    /// Runs it to the end: its output and its report (`null` when it wrote none).
    pub fn run(mut self) -> (Output, serde_json::Value) {
        let out = self.cmd.output().expect("running kansas-load");
        let report = read_report(&self.dir.path().join("report.json"));
        (out, report)
    }
}

impl RunningLoad {
    /// Waits for the end: its exit status and its report (`null` when it wrote none).
    pub fn wait(mut self) -> (std::process::ExitStatus, serde_json::Value) {
        let status = self.child.wait().expect("waiting for kansas-load");
        (status, read_report(&self.json))
    }
}

impl RunningLoad {
    /// Waits for the end and expects it clean: exit 0, no event lost, duplicated or reordered,
    /// no error of any kind. Returns the report.
    pub fn wait_clean(self) -> serde_json::Value {
        let (status, report) = self.wait();
        assert!(status.success(), "kansas-load failed: {report:#}");
        for key in ["events_lost", "events_duplicated", "events_out_of_order"] {
            assert_eq!(report[key], 0, "{key}: {report:#}");
        }
        assert_eq!(report["errors"], serde_json::json!({}), "{report:#}");
        report
    }
}

fn read_report(path: &std::path::Path) -> serde_json::Value {
    std::fs::read_to_string(path)
        .map(|t| serde_json::from_str(&t).expect("the report is JSON"))
        .unwrap_or(serde_json::Value::Null)
}
