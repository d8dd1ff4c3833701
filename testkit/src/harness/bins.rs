//! Where the binaries under test are. The tests run from `target/<profile>/deps/`; the binaries
//! sit one level up. `kansas` is built by `cargo test` itself (it is the tested package's
//! binary); `fake-tornado` and `kansas-load` belong to this crate, so the first call builds them
//! (`cargo build -p kansas-testkit --bins`, the test's own profile and target directory: a no-op
//! when they are up to date), so a test never runs a stale or missing tool.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// `target/<profile>/`, the directory of the test executable's parent.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("target/<profile>")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// Builds this crate's binaries once per test process, for the test's profile.
fn build_tools(dir: &Path) {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let target = dir.parent().expect("the target directory");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "kansas-testkit", "--bins"])
            .arg("--target-dir")
            .arg(target)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo to build the test tools");
        assert!(
            status.success(),
            "cargo build -p kansas-testkit --bins failed"
        );
    });
}

/// The `kansas` binary `cargo test` built for the tests (with the `test-faults` switch).
pub fn kansas() -> PathBuf {
    let path = profile_dir().join("kansas");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

/// The `fake-tornado` binary, built if needed.
pub fn fake_tornado() -> PathBuf {
    tool("fake-tornado")
}

/// The `kansas-load` binary, built if needed.
pub fn kansas_load() -> PathBuf {
    tool("kansas-load")
}

fn tool(name: &str) -> PathBuf {
    let dir = profile_dir();
    build_tools(&dir);
    dir.join(name)
}
