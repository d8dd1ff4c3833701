//! The `kansas` command line against a config file of its own (shards plus `[database] url`):
//! run a command and expect success (its output) or a refusal (exit 2, its error).

use std::process::{Command, Output};

use super::kansas::config_text;

pub struct Cli {
    pub dir: tempfile::TempDir,
    pub config: String,
}

impl Cli {
    /// A config file: the given shards plus `[database] url`.
    pub fn new(shards: &str, url: &str) -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kansas.toml");
        std::fs::write(
            &path,
            config_text(&format!("[database]\nurl = \"{url}\"\n{shards}")),
        )
        .unwrap();
        Cli {
            config: path.to_str().unwrap().to_string(),
            dir,
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(super::bins::kansas())
            .args(args)
            .args(["--config", &self.config])
            .env("USER", "tester")
            .output()
            .unwrap()
    }

    /// Runs and expects success; returns standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and expects exit 2; returns standard error.
    pub fn refused(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn file(&self, name: &str, body: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    }
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
