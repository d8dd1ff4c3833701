//! The deployment files as shipped: `systemd/kansas.service` passes `systemd-analyze verify`,
//! and under a real supervisord with `supervisor/kansas.conf`, `supervisorctl signal SIGUSR1
//! kansas` upgrades with zero client errors while kansas-load runs, and `supervisorctl stop
//! kansas` leaves no process behind. (`.ci/run` installs supervisor when it is missing.)

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kansas_testkit::harness::fake::Fake;
use kansas_testkit::harness::kansas::{config_text, shard};
use kansas_testkit::harness::load::LoadRun;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

fn installed(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The shipped file with the binary, config and log paths pointed at this test's.
fn shipped(file: &str, config: &Path, log: &Path) -> String {
    std::fs::read_to_string(format!("{MANIFEST}/{file}"))
        .unwrap()
        .replace("/usr/local/bin/kansas", env!("CARGO_BIN_EXE_kansas"))
        .replace("/etc/kansas/kansas.toml", config.to_str().unwrap())
        .replace("/var/log/zulip/kansas.log", log.to_str().unwrap())
}

#[test]
fn the_systemd_unit_verifies() {
    assert!(
        installed("systemd-analyze"),
        "systemd-analyze is needed (Debian package systemd)"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kansas.toml");
    std::fs::write(
        &config,
        config_text(&shard("s0", "127.0.0.1:9800".parse().unwrap())),
    )
    .unwrap();
    let unit = dir.path().join("kansas.service");
    std::fs::write(
        &unit,
        shipped("systemd/kansas.service", &config, &dir.path().join("log")),
    )
    .unwrap();
    let text = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -USR1 $MAINPID",
        "KillMode=mixed",
        "TimeoutStopSec=120",
    ] {
        assert!(text.contains(line), "{line}");
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Supervisord {
    conf: String,
}

impl Supervisord {
    fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new("supervisorctl")
            .args(["-c", &self.conf])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Supervisord {
    fn drop(&mut self) {
        self.ctl(&["shutdown"]);
    }
}

#[test]
fn under_supervisord_sigusr1_upgrades_and_stop_leaves_nothing() {
    assert!(
        installed("supervisord"),
        "supervisord is needed (Debian package supervisor)"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let fakes: Vec<Fake> = (0..2)
        .map(|_| Fake::start(&["--heartbeat-secs", "1"]))
        .collect();
    let config = dir.path().join("kansas.toml");
    std::fs::write(
        &config,
        config_text(&format!(
            "{}{}",
            shard("s0", fakes[0].addr),
            shard("s1", fakes[1].addr)
        )),
    )
    .unwrap();
    let log = dir.path().join("kansas.log");
    let program =
        shipped("supervisor/kansas.conf", &config, &log).replace("\nuser=zulip", "\n;user=zulip");
    std::fs::write(dir.path().join("kansas.conf"), program).unwrap();
    let conf = format!("{d}/supervisord.conf");
    std::fs::write(
        &conf,
        format!(
            "[unix_http_server]\nfile={d}/supervisor.sock\n[supervisord]\nlogfile={d}/supervisord.log\n\
             pidfile={d}/supervisord.pid\nchildlogdir={d}\n[rpcinterface:supervisor]\n\
             supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\
             [supervisorctl]\nserverurl=unix://{d}/supervisor.sock\n[include]\nfiles = {d}/kansas.conf\n"
        ),
    )
    .unwrap();
    let status = Command::new("supervisord")
        .args(["-c", &conf])
        .status()
        .unwrap();
    assert!(status.success());
    let sv = Supervisord { conf };
    // The proxy address, from kansas's own log.
    let deadline = Instant::now() + Duration::from_secs(20);
    let proxy = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(addr) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["message"] == "kansas listening")
            .and_then(|l| l["proxy"].as_str().map(str::to_string))
        {
            break addr;
        }
        assert!(
            Instant::now() < deadline,
            "kansas did not start: {}",
            sv.ctl(&["status"])
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // supervisor calls it RUNNING after startsecs.
    while !sv.ctl(&["status", "kansas"]).contains("RUNNING") {
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "{}",
            sv.ctl(&["status"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let load = LoadRun::new(proxy.parse().unwrap())
        .shards(&[fakes[0].addr, fakes[1].addr])
        .args(["--clients", "200", "--realms", "20", "--duration", "8s"])
        .args(["--publish-rate", "100/s", "--settle", "15s"])
        .spawn();
    std::thread::sleep(Duration::from_secs(3));
    assert!(sv
        .ctl(&["signal", "SIGUSR1", "kansas"])
        .contains("signalled"));
    load.wait_clean();
    let upgraded = std::fs::read_to_string(&log).unwrap().lines().any(|l| {
        serde_json::from_str::<serde_json::Value>(l)
            .is_ok_and(|l| l["message"] == "worker active" && l["upgrade"] == true)
    });
    assert!(upgraded, "the signal upgraded kansas");

    assert!(sv.ctl(&["stop", "kansas"]).contains("stopped"));
    let config_arg = config.to_str().unwrap();
    let left = Command::new("pgrep")
        .args(["-f", config_arg])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}
