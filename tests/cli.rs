//! The operator commands: `kansas check-config` on valid and broken files (every problem with its
//! key path, exit 2) and `kansas route` explaining a decision.

use std::process::Command;

use kansas_testkit::harness::kansas::binary;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

/// The example file states every default: a file with only its shards must mean the same.
#[test]
fn the_example_configuration_states_the_defaults() {
    let example =
        std::fs::read_to_string(format!("{MANIFEST}/config/kansas.example.toml")).unwrap();
    let shards_only = &example
        [example.find("\n[[shards]]\n").unwrap()..example.find("\n[assignments]\n").unwrap()];
    let full = kansas::config::parse(&example).unwrap();
    let defaults = kansas::config::parse(shards_only).unwrap();
    let parts = |c: &kansas::config::Config| {
        format!(
            "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
            c.proxy, c.admin_listen, c.timeouts, c.log, c.parking, c.queues, c.master
        )
    };
    assert_eq!(parts(&full), parts(&defaults));
}

#[test]
fn shipped_configs_are_valid() {
    for f in ["config/kansas.toml", "config/kansas.example.toml"] {
        let (code, out, err) = run(&["check-config", &format!("{MANIFEST}/{f}")]);
        assert_eq!(code, 0, "{f}: {out}{err}");
        assert!(out.contains("valid"), "{out}");
    }
}

#[test]
fn check_config_reports_every_problem_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "bad.toml",
        r#"
colour = "blue"
[proxy]
listen = "not-an-address"
max_header_bytes = 10
threads = -1
typo = 1
[timeouts]
drain_secs = -1
upstream_connect_secs = 0
[log]
format = "xml"
[queues]
reload_delay_secs = -1
[[shards]]
name = "a"
address = "127.0.0.1:9800"
weight = -0.5
[[shards]]
name = "a"
address = "nowhere"
[[shards]]
address = "127.0.0.1:9802"
port = 9800
[assignments]
"bad host!" = "a"
"ok.example.com" = "nope"
[[rules]]
pattern = "(unclosed"
shard = "a"
[[rules]]
pattern = "x"
"#,
    );
    let (code, _out, err) = run(&["check-config", &f]);
    assert_eq!(code, 2, "{err}");
    let expected = [
        "colour: unknown key",
        "proxy.typo: unknown key",
        "proxy.listen:",
        "proxy.max_header_bytes:",
        "proxy.threads: must be between 0 and 1024",
        "timeouts.drain_secs:",
        "timeouts.upstream_connect_secs:",
        "log.format:",
        "queues.reload_delay_secs: must be a number of seconds",
        "shards[0].weight:",
        "shards[1].name: duplicate shard name",
        "shards[1].address:",
        "shards[2].name: required",
        "shards[2].port: Tornado port 9800 is also used by shards[0]",
        "assignments.\"bad host!\": is not a valid realm host",
        "assignments.\"ok.example.com\": unknown shard \"nope\"",
        "rules[0].pattern: invalid regular expression",
        "rules[1].shard: required",
    ];
    for want in expected {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(
        err.contains(&format!("{} problem(s)", expected.len())),
        "{err}"
    );
}

#[test]
fn check_config_on_unreadable_and_unparsable_files() {
    let (code, _, err) = run(&["check-config", "/nonexistent/kansas.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "syntax.toml", "[proxy\nlisten = 1\n");
    let (code, _, err) = run(&["check-config", &f]);
    assert_eq!(code, 2);
    assert!(
        err.contains("line 1"),
        "TOML errors carry the position: {err}"
    );

    let f = write(&dir, "types.toml", "[proxy]\nlisten = 9799\n");
    let (code, _, err) = run(&["check-config", &f]);
    assert_eq!(code, 2);
    assert!(err.contains("listen"), "{err}");

    let f = write(&dir, "empty.toml", "");
    let (code, _, err) = run(&["check-config", &f]);
    assert_eq!(code, 2);
    assert!(err.contains("shards: at least one"), "{err}");

    // Reading is bounded: a huge file, or one that never ends, is refused, not read whole.
    let huge = write(&dir, "huge.toml", &"# padding\n".repeat(1_700_000));
    for f in [huge.as_str(), "/dev/zero"] {
        let (code, _, err) = run(&["check-config", f]);
        assert_eq!(code, 2, "{f}");
        assert!(err.contains("larger than 16 MiB"), "{f}: {err}");
    }
}

#[test]
fn run_refuses_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "bad.toml", "[[shards]]\nname = \"a\"\n");
    let (code, _, err) = run(&["run", "--config", &f]);
    assert_eq!(code, 2);
    assert!(err.contains("shards[0].address: required"), "{err}");
}

#[test]
fn route_explains_each_source() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "k.toml",
        r#"
[[shards]]
name = "s1"
address = "127.0.0.1:9800"
[[shards]]
name = "s2"
address = "127.0.0.1:9801"
weight = 2.5
[[shards]]
name = "s3"
address = "127.0.0.1:9802"
weight = 0
[assignments]
"big.example.com" = "s3"
[[rules]]
pattern = '.*\.eu\.example\.com'
shard = "s1"
"#,
    );
    let (code, out, _) = run(&["route", "Big.Example.com:443", "--config", &f]);
    assert_eq!(code, 0);
    assert!(out.contains("realm:  big.example.com"), "{out}");
    assert!(out.contains("shard:  s3 (127.0.0.1:9802)"), "{out}");
    assert!(out.contains("source: assignment"), "{out}");

    let (_, out, _) = run(&["route", "chat.eu.example.com", "--config", &f]);
    assert!(out.contains("shard:  s1"), "{out}");
    assert!(out.contains("source: rules[0] pattern"), "{out}");

    let (_, out, _) = run(&["route", "hashed.example.org", "--config", &f]);
    assert!(out.contains("source: weighted rendezvous hashing"), "{out}");
    let snapshot = kansas::config::load(std::path::Path::new(&f))
        .unwrap()
        .routing;
    let want = &snapshot
        .shard(snapshot.hash("hashed.example.org").unwrap())
        .name;
    assert!(out.contains(&format!("shard:  {want} ")), "{out}");
    // Every shard's score is listed, the winner marked.
    for s in ["s1", "s2", "s3"] {
        assert!(out.contains(s), "{out}");
    }
    assert!(out.contains(&format!("* {want}")), "{out}");
    assert!(out.contains("weight 0 "), "{out}");

    let (code, _, err) = run(&["route", "bad host", "--config", &f]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid Host"), "{err}");
}

/// Durations on the command line are checked before anything else happens: one too long to
/// represent is refused (exit 2), not a panic, and the message names the flag.
#[test]
fn durations_too_long_are_refused_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "k.toml",
        "[[shards]]\nname = \"s1\"\naddress = \"127.0.0.1:9800\"\n",
    );
    for (args, flag) in [
        (["drain", "s1", "--every", "1e300h"], "--every"),
        (
            ["assign", "r.example.com", "s1", "--drain-for=1e300h"],
            "--drain-for",
        ),
    ] {
        let (code, _, err) = run(&[&args[..], &["--config", &f]].concat());
        assert_eq!(code, 2, "{args:?}: {err}");
        let want = format!("kansas: {flag}: \"1e300h\" is not a duration");
        assert!(err.contains(&want), "{args:?}: {err}");
    }
}

/// Configuration problems are printed one way by every command: the file, the count, then each
/// problem indented on a line of its own; exit 2.
#[test]
fn every_command_prints_config_problems_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "bad.toml", "colour = 1\n[[shards]]\nname = \"a\"\n");
    let want = format!(
        "kansas: invalid configuration {f}: 2 problem(s)\n  colour: unknown key\n  \
         shards[0].address: required\n"
    );
    for args in [
        vec!["check-config", &f],
        vec!["route", "r.example.com", "--config", &f],
        vec!["weight", "a", "1", "--config", &f],
        vec!["run", "--config", &f],
    ] {
        let (code, out, err) = run(&args);
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (2, "", want.as_str()),
            "{args:?}"
        );
    }
}
