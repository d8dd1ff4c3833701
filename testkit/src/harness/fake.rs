//! A real `fake-tornado` child process. It listens on `127.0.0.1:0` unless told otherwise; the
//! harness reads the bound address from its "fake-tornado listening" log line.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running fake shard; killed when dropped.
pub struct Fake {
    child: Child,
    pub addr: SocketAddr,
}

impl Fake {
    /// Starts `fake-tornado --listen 127.0.0.1:0 ARGS...`.
    pub fn start(args: &[&str]) -> Fake {
        Self::start_on("127.0.0.1:0", args)
    }

    /// Starts `fake-tornado --listen LISTEN ARGS...`.
    pub fn start_on(listen: &str, args: &[&str]) -> Fake {
        let mut child = Command::new(super::bins::fake_tornado())
            .args(["--listen", listen])
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn fake-tornado");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listen=").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("fake-tornado did not report its address")
            .parse()
            .unwrap();
        Fake { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait(Duration::from_secs(20))
            .expect("fake-tornado exits on SIGTERM")
    }

    /// SIGKILL, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn wait(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port that was free a moment ago (for processes that must know each other's ports).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `[[shards]]` entries s0, s1, ... for these fakes, in order.
pub fn shards(fakes: &[&Fake]) -> String {
    fakes
        .iter()
        .enumerate()
        .map(|(i, f)| format!("[[shards]]\nname = \"s{i}\"\naddress = \"{}\"\n", f.addr))
        .collect()
}
