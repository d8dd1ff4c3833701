//! The Zulip-side Python package (`python/kansas_zulip`) under pytest, so `cargo test` runs the
//! whole suite: its golden vectors, the module against a live PostgreSQL, and its cross-check
//! with this build's `kansas route --batch` after random routing changes. `python/test.sh`
//! creates (or reuses) the virtualenv in `target/pyvenv` and passes its arguments to pytest.

use std::process::Command;

#[test]
fn the_python_package_passes_its_tests() {
    let root = env!("CARGO_MANIFEST_DIR");
    let status = Command::new("bash")
        .arg(format!("{root}/python/test.sh"))
        .args(["-q", "-p", "no:cacheprovider"])
        .env("KANSAS_BIN", env!("CARGO_BIN_EXE_kansas"))
        .current_dir(root)
        .status()
        .expect("run python/test.sh (bash)");
    assert!(
        status.success(),
        "pytest failed: see its output above (rerun: KANSAS_BIN=target/debug/kansas bash python/test.sh)"
    );
}
