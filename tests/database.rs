//! PostgreSQL as the routing authority, against a real PostgreSQL server: migrations, refusing an
//! unmigrated or newer schema, live assignment within a second, surviving the database going
//! away (and starting without it), operator commands and their bad inputs, Zulip import/export,
//! drains, unknown-shard rows, and never printing the password.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use kansas_testkit::harness::cli::{text, Cli};
use kansas_testkit::harness::client::get;
use kansas_testkit::harness::kansas::{config_text, shard, Kansas};
use kansas_testkit::harness::metrics::scrape;
use kansas_testkit::harness::pg::{run_sql, PgServer, TestDb};
use kansas_testkit::harness::upstream::Upstream;

fn fake_shards(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[shards]]\nname = \"s{i}\"\naddress = \"127.0.0.1:{}\"\n",
                9800 + i
            )
        })
        .collect()
}

async fn shard_of(proxy: SocketAddr, realm: &str) -> String {
    let r = get(proxy, realm, "/json/events?dont_block=true", &[]).await;
    assert_eq!(r.status, 200);
    r.json()["shard"].as_str().unwrap().to_string()
}

/// Polls until `realm` reaches `want`; returns how long it took.
async fn wait_route(proxy: SocketAddr, realm: &str, want: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if shard_of(proxy, realm).await == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{realm} did not move to {want} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Two upstreams `a` and `b`, and a realm that hashes to `a`.
async fn two_upstreams() -> (Upstream, Upstream, String, String) {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let shards = format!("{}{}", shard("a", a.addr), shard("b", b.addr));
    let snapshot = kansas::config::parse(&config_text(&shards))
        .unwrap()
        .routing;
    let realm = (0..)
        .map(|i| format!("r{i}.example.com"))
        .find(|r| snapshot.shard(snapshot.hash(r).unwrap()).name == "a")
        .unwrap();
    (a, b, shards, realm)
}

/// A migrated database, two upstreams `a` and `b`, and kansas following the database; `realm`
/// hashes to `a`.
struct Running {
    db: TestDb,
    cli: Cli,
    k: Kansas,
    realm: String,
    _upstreams: (Upstream, Upstream),
}

async fn migrated_kansas() -> Running {
    let db = TestDb::new();
    let (a, b, shards, realm) = two_upstreams().await;
    let cli = Cli::new(&shards, &db.url);
    cli.ok(&["db", "migrate"]);
    let k = Kansas::start(&format!("[database]\nurl = \"{}\"\n{shards}", db.url));
    Running {
        db,
        cli,
        k,
        realm,
        _upstreams: (a, b),
    }
}

#[test]
fn migrations_are_idempotent_and_run_refuses_an_unready_schema() {
    let db = TestDb::new();
    let cli = Cli::new(&fake_shards(2), &db.url);
    let err = cli.refused(&["run"]);
    assert!(err.contains("kansas db migrate"), "{err}");
    assert!(cli.ok(&["db", "status"]).contains("not migrated"));
    let latest = kansas::store::schema::latest();
    let all: Vec<String> = (1..=latest).map(|v| v.to_string()).collect();
    let out = cli.ok(&["db", "migrate"]);
    assert!(
        out.contains(&format!("applied migration(s) {}", all.join(", "))),
        "{out}"
    );
    assert!(cli.ok(&["db", "migrate"]).contains("up to date"));
    assert!(cli
        .ok(&["db", "status"])
        .contains(&format!("version {latest}")));
    run_sql(
        &db.url,
        "INSERT INTO kansas.schema_migrations (version, description) VALUES (99, 'future')",
    );
    let err = cli.refused(&["run"]);
    assert!(err.contains("newer than this kansas knows"), "{err}");
    let err = cli.refused(&["assign", "a.example.com", "s0"]);
    assert!(err.contains("upgrade kansas"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_assignment_reaches_routing_within_a_second() {
    let run = migrated_kansas().await;
    let (cli, k, realm) = (&run.cli, &run.k, run.realm.clone());
    assert_eq!(shard_of(k.proxy, &realm).await, "a");
    let out = cli.ok(&["assign", &realm, "b", "--note", "move for the test"]);
    assert!(out.contains(&format!("{realm} -> b")), "{out}");
    let took = wait_route(k.proxy, &realm, "b", Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let list = cli.ok(&["assignments"]);
    assert!(
        list.contains(&realm) && list.contains("move for the test") && list.contains("tester"),
        "{list}"
    );
    cli.ok(&["unassign", &realm]);
    wait_route(k.proxy, &realm, "a", Duration::from_secs(1)).await;
    // Weights: with b at 0, nothing hashes there.
    cli.ok(&["weight", "a", "0"]);
    wait_route(k.proxy, &realm, "b", Duration::from_secs(1)).await;
    let m = scrape(k.admin).await;
    assert!(m.contains("kansas_db_connected 1"), "{m}");
    assert!(!m.contains("kansas_db_notifications_total 0\n"), "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn routing_survives_the_database_going_away_and_catches_up() {
    let pg = PgServer::start();
    let (_a, _b, shards, realm) = two_upstreams().await;
    let cli = Cli::new(&shards, &pg.url());
    cli.ok(&["db", "migrate"]);
    cli.ok(&["assign", &realm, "b"]);
    let k = Kansas::start(&format!("[database]\nurl = \"{}\"\n{shards}", pg.url()));
    assert_eq!(
        shard_of(k.proxy, &realm).await,
        "b",
        "the database's routing from the start"
    );

    pg.stop();
    assert!(k
        .wait_log(Duration::from_secs(10), |l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("keeping the last routing snapshot")))
        .is_some());
    for _ in 0..20 {
        assert_eq!(
            shard_of(k.proxy, &realm).await,
            "b",
            "requests keep flowing on the old snapshot"
        );
    }
    // Change the assignment where kansas cannot see it (the server on another port), then
    // bring the server back where kansas looks: the change is applied after it reconnects.
    let other = kansas_testkit::harness::pg::free_port();
    pg.start_on(other);
    Cli::new(&shards, &pg.url_on(other)).ok(&["unassign", &realm]);
    pg.stop();
    assert_eq!(shard_of(k.proxy, &realm).await, "b");
    pg.start_on(pg.port);
    wait_route(k.proxy, &realm, "a", Duration::from_secs(45)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kansas_starts_without_the_database_and_catches_up() {
    let pg = PgServer::start();
    let (_a, _b, shards, realm) = two_upstreams().await;
    let cli = Cli::new(&shards, &pg.url());
    cli.ok(&["db", "migrate"]);
    cli.ok(&["assign", &realm, "b"]);
    pg.stop();
    let k = Kansas::start(&format!("[database]\nurl = \"{}\"\n{shards}", pg.url()));
    assert_eq!(
        shard_of(k.proxy, &realm).await,
        "a",
        "config and hashing while the database is down"
    );
    pg.start_on(pg.port);
    wait_route(k.proxy, &realm, "b", Duration::from_secs(45)).await;
}

#[test]
fn commands_validate_their_input_and_write_nothing_when_refused() {
    let db = TestDb::new();
    let cli = Cli::new(&fake_shards(3), &db.url);
    cli.ok(&["db", "migrate"]);
    cli.ok(&["assign", "Chat.Example.com:443", "s1"]);
    for (args, why) in [
        (vec!["assign", "x.example.com", "nope"], "unknown shard"),
        (vec!["assign", "bad host!", "s1"], "not a valid realm host"),
        (vec!["weight", "s1", "-1"], "finite number >= 0"),
        (vec!["weight", "s1", "NaN"], "finite number >= 0"),
        (vec!["weight", "s1", "inf"], "finite number >= 0"),
        (vec!["weight", "ghost", "1"], "unknown shard"),
        (vec!["assignments", "--shard", "ghost"], "unknown shard"),
        (vec!["drain", "s1", "--step", "0"], "--step"),
        (
            vec!["import-zulip", "--sharding-json", "/nonexistent.json"],
            "cannot read",
        ),
        (
            vec!["export-zulip", "--realms", "/nonexistent.txt"],
            "cannot read",
        ),
        (
            vec!["assign", "x.example.com", "s1", "--drain-for", "-5m"],
            "--drain-for",
        ),
        (
            vec!["assign", "x.example.com", "s1", "--drain-for", "soon"],
            "--drain-for",
        ),
        (
            vec!["assign", "x.example.com", "s1", "--move", "sideways"],
            "reload or drain",
        ),
        (
            vec![
                "weight",
                "s1",
                "0.5",
                "--move",
                "reload",
                "--drain-for",
                "1h",
            ],
            "--drain-for goes with --move drain",
        ),
        (vec!["assign", "x.example.com", "s1,s1"], "listed twice"),
        (vec!["assign", "x.example.com", "s1,nope"], "unknown shard"),
        (
            vec!["rule", "set", "10", "(unclosed", "s1"],
            "not a valid regular expression",
        ),
        (vec!["residency", "--close", "999"], "no open drain window"),
        (
            vec!["assign", "x.example.com", "s1", "--by", "ops\nfake row"],
            "control character",
        ),
        (
            vec!["assign", "x.example.com", "s1", "--note", "\u{1b}[31mred"],
            "control character",
        ),
        (
            vec!["weight", "s1", "0.5", "--by", "\t"],
            "control character",
        ),
    ] {
        let err = cli.refused(&args);
        assert!(err.contains(why), "{args:?}: {err}");
    }
    let bad_regex = cli.file(
        "bad.json",
        r#"{"shard_map": {}, "shard_regexes": [["(unclosed", 9801]]}"#,
    );
    assert!(cli
        .refused(&["import-zulip", "--sharding-json", &bad_regex])
        .contains("not valid"));
    let bad_port = cli.file("port.json", r#"{"shard_map": {"y.example.com": 9999}}"#);
    assert!(cli
        .refused(&["import-zulip", "--sharding-json", &bad_port])
        .contains("9999"));
    // Nothing of the refused commands was written.
    let list = cli.ok(&["assignments"]);
    assert!(
        list.contains("chat.example.com") && list.contains("1 assignment(s)"),
        "{list}"
    );
    let shards = cli.ok(&["shards"]);
    assert!(
        shards
            .lines()
            .any(|l| l.starts_with("s1") && l.contains(" 1 ") && l.contains("yes")),
        "no weight was written: {shards}"
    );
    let windows = cli.ok(&["residency"]);
    assert!(
        windows.contains("1 open drain window(s)"),
        "only the assignment's: {windows}"
    );
    assert!(cli.ok(&["unassign", "chat.example.com"]).contains("was s1"));
    assert!(cli
        .ok(&["unassign", "chat.example.com"])
        .contains("nothing to do"));
}

#[test]
fn import_and_export_round_trip_zulips_sharding() {
    let db = TestDb::new();
    // Shards answering Tornado ports 9800-9803.
    let cli = Cli::new(&fake_shards(4), &db.url);
    cli.ok(&["db", "migrate"]);
    let json = cli.file(
        "sharding.json",
        r#"{"shard_map": {"big.example.com": 9801, "split.example.com": [9802, 9803]},
            "shard_regexes": [["^.*\\.eu\\.example\\.com$", 9803]]}"#,
    );
    let conf = cli.file(
        "zulip.conf",
        "[machine]\ndeploy_type = production\n\n[tornado_sharding]\n9802 = team other.example.org\n",
    );
    let plan = cli.ok(&[
        "import-zulip",
        "--sharding-json",
        &json,
        "--zulip-conf",
        &conf,
        "--external-host",
        "example.com",
        "--dry-run",
    ]);
    assert!(plan.contains("dry run: nothing written"), "{plan}");
    assert!(cli.ok(&["assignments"]).contains("0 assignment(s)"));
    let out = cli.ok(&[
        "import-zulip",
        "--sharding-json",
        &json,
        "--zulip-conf",
        &conf,
        "--external-host",
        "example.com",
    ]);
    assert!(
        out.contains("imported 4 assignment(s) and 2 rule(s)"),
        "the regex, then every other realm to Zulip's first port: {out}"
    );
    let list = cli.ok(&["assignments"]);
    for (realm, shard) in [
        ("big.example.com", "s1"),
        ("split.example.com", "s2,s3"),
        ("team.example.com", "s2"),
        ("other.example.org", "s2"),
    ] {
        assert!(
            list.lines()
                .any(|l| l.starts_with(realm) && l.contains(shard)),
            "{realm}: {list}"
        );
    }
    let route = cli.ok(&["route", "chat.eu.example.com"]);
    assert!(
        route.contains("shard:  s3") && route.contains("rules[0]"),
        "{route}"
    );
    assert!(route.contains("routing data: database"), "{route}");

    let realms = cli.file(
        "realms.txt",
        "big.example.com\nsplit.example.com\nchat.eu.example.com\nhashed.example.net\n",
    );
    let out_path = cli.dir.path().join("out.json");
    cli.ok(&[
        "export-zulip",
        "--realms",
        &realms,
        "--output",
        out_path.to_str().unwrap(),
    ]);
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    let map = &exported["shard_map"];
    assert_eq!(map["big.example.com"], 9801);
    assert_eq!(map["split.example.com"], serde_json::json!([9802, 9803]));
    assert_eq!(
        map["team.example.com"], 9802,
        "every assignment is exported"
    );
    assert_eq!(map["chat.eu.example.com"], 9803);
    let unlisted = cli.ok(&["route", "hashed.example.net"]);
    assert_eq!(map["hashed.example.net"], 9800);
    assert!(unlisted.contains("shard:  s0"), "as Zulip: {unlisted}");
    assert_eq!(
        exported["shard_regexes"],
        serde_json::json!([["^.*\\.eu\\.example\\.com$", 9803], [".*", 9800]])
    );
    // What was exported imports again to the same routing; Zulip's `{}` and an old install's
    // bare map import too.
    let again = cli.ok(&[
        "import-zulip",
        "--sharding-json",
        out_path.to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(
        again.contains("assign split.example.com -> s2,s3"),
        "{again}"
    );
    let empty = cli.file("empty.json", "{}");
    let plan = cli.ok(&["import-zulip", "--sharding-json", &empty, "--dry-run"]);
    assert!(plan.contains("rule 10 \".*\" -> s0"), "{plan}");
    let legacy = cli.file("legacy.json", r#"{"old.example.com": 9803}"#);
    let plan = cli.ok(&["import-zulip", "--sharding-json", &legacy, "--dry-run"]);
    assert!(plan.contains("assign old.example.com -> s3"), "{plan}");
    let dup = cli.file("dup.conf", "[tornado_sharding]\n9802 = big.example.com\n");
    assert!(cli
        .refused(&[
            "import-zulip",
            "--sharding-json",
            &json,
            "--zulip-conf",
            &dup
        ])
        .contains("twice"));
}

#[test]
fn drain_steps_down_and_resumes_after_an_interruption() {
    let db = TestDb::new();
    let cli = Cli::new(&fake_shards(2), &db.url);
    cli.ok(&["db", "migrate"]);
    // Interrupted after its first step...
    let mut child = Command::new(env!("CARGO_BIN_EXE_kansas"))
        .args([
            "drain",
            "s1",
            "--to",
            "0",
            "--step",
            "0.25",
            "--every",
            "30s",
            "--config",
            &cli.config,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cli
        .ok(&["shards"])
        .lines()
        .any(|l| l.starts_with("s1") && l.contains("0.75"))
    {
        assert!(Instant::now() < deadline, "first drain step");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    let _ = child.wait();
    // ...and run again: it continues from 0.75.
    let out = cli.ok(&[
        "drain", "s1", "--to", "0", "--step", "0.25", "--every", "10ms",
    ]);
    assert!(out.contains("weight 0.75 -> 0.5"), "{out}");
    assert!(out.contains("weight 0.25 -> 0"), "{out}");
    assert!(out.contains("drained"), "{out}");
    let shards = cli.ok(&["shards"]);
    assert!(
        shards
            .lines()
            .any(|l| l.starts_with("s1") && l.contains(" 0 ") && l.contains("yes")),
        "{shards}"
    );
    assert!(
        cli.ok(&["drain", "s1"]).contains("drained"),
        "nothing left to do"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_for_unknown_shards_are_ignored_and_counted() {
    let run = migrated_kansas().await;
    let (db, k, realm) = (&run.db, &run.k, run.realm.clone());
    run_sql(
        &db.url,
        &format!(
            "INSERT INTO kansas.realm_assignments (realm, shard) VALUES ('{realm}', 'ghost');
         INSERT INTO kansas.shards (name, port, weight) VALUES ('phantom', 9999, 0);"
        ),
    );
    for name in ["ghost", "phantom"] {
        assert!(
            k.wait_log(Duration::from_secs(5), |l| l["message"]
                == "ignoring database row"
                && l["row"].as_str().is_some_and(|r| r.contains(name)))
                .is_some(),
            "{name}"
        );
    }
    assert_eq!(
        shard_of(k.proxy, &realm).await,
        "a",
        "the row is ignored; hashing decides"
    );
    let m = scrape(k.admin).await;
    assert!(m.contains("kansas_db_rows_ignored 2"), "{m}");
}

#[test]
fn the_password_never_appears() {
    let port = kansas_testkit::harness::pg::free_port();
    let url = format!("postgresql://kansas:s3cret-pw@127.0.0.1:{port}/zulip");
    let cli = Cli::new(&fake_shards(1), &url);
    let out = cli.run(&["assign", "a.example.com", "s0"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "unreachable database: {}",
        text(&out)
    );
    assert!(!text(&out).contains("s3cret"), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("127.0.0.1:{port}/zulip")),
        "{}",
        text(&out)
    );
    // The daemon starts anyway (the database is not reachable) and logs without the password.
    let k = Kansas::start(&format!(
        "[database]\nurl = \"{url}\"\nconnect_timeout_secs = 1\n{}",
        fake_shards(1)
    ));
    k.wait_log(Duration::from_secs(10), |l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.contains("keeping the last routing snapshot"))
    })
    .expect("the follower reports the failure");
    for line in k.logs() {
        assert!(!line.to_string().contains("s3cret"), "{line}");
    }
    let bad = Cli::new(&fake_shards(1), "postgresql://kansas:s3cret-pw@[bad");
    let out = Command::new(env!("CARGO_BIN_EXE_kansas"))
        .args(["check-config", &bad.config])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!text(&out).contains("s3cret"), "{}", text(&out));
}

/// The figure for the closing note: commit → routing change over 100 changes, measured through a
/// running kansas (`cargo test --test database propagation -- --nocapture` prints it). Asserts
/// that every change arrives; the timing is reported, not asserted.
#[tokio::test(flavor = "multi_thread")]
async fn propagation_over_100_changes() {
    let db = TestDb::new();
    let (_a, _b, shards, realm) = two_upstreams().await;
    Cli::new(&shards, &db.url).ok(&["db", "migrate"]);
    let k = Kansas::start(&format!("[database]\nurl = \"{}\"\n{shards}", db.url));
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut took = Vec::new();
    for i in 0..100 {
        let target = if i % 2 == 0 { "b" } else { "a" };
        client
            .execute(
                "INSERT INTO kansas.realm_assignments (realm, shard) VALUES ($1, $2)
                 ON CONFLICT (realm) DO UPDATE SET shard = EXCLUDED.shard",
                &[&realm, &target],
            )
            .await
            .unwrap();
        took.push(wait_route(k.proxy, &realm, target, Duration::from_secs(10)).await);
    }
    took.sort();
    eprintln!(
        "commit -> routing over 100 changes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        took[49].as_secs_f64() * 1e3,
        took[98].as_secs_f64() * 1e3,
        took[99].as_secs_f64() * 1e3
    );
    assert_eq!(took.len(), 100);
}

/// A kansas command's change reaches readers whole: one notification at commit (a reader that
/// applied the assignment before the drain window would see the realm gone from its old shard),
/// while a row written by hand is still announced by itself.
#[tokio::test(flavor = "multi_thread")]
async fn a_command_is_announced_once_at_commit_and_a_hand_written_row_by_itself() {
    use futures_util::StreamExt;
    let db = TestDb::new();
    let (_a, _b, shards, realm) = two_upstreams().await;
    let cli = Cli::new(&shards, &db.url);
    cli.ok(&["db", "migrate"]);
    let (client, mut conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.payload().to_string());
            }
        }
    });
    client.batch_execute("LISTEN kansas_routing").await.unwrap();
    let mut heard = async |what: &str| {
        let mut got = Vec::new();
        // Notifications of one commit arrive together; wait a little for any stragglers.
        while let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            got.push(serde_json::from_str::<serde_json::Value>(&p).unwrap());
        }
        eprintln!("{what}: {got:?}");
        got
    };
    for args in [
        vec!["assign", realm.as_str(), "b", "--drain-for", "1h"],
        vec!["weight", "a", "0.5"],
        vec!["unassign", realm.as_str(), "--move", "reload"],
    ] {
        cli.ok(&args);
        let got = heard(&args.join(" ")).await;
        assert_eq!(got, [serde_json::json!({"table": "*", "op": "COMMIT"})]);
    }
    client
        .execute(
            "INSERT INTO kansas.realm_assignments (realm, shard) VALUES ($1, 'b')",
            &[&realm],
        )
        .await
        .unwrap();
    let got = heard("by hand").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["table"], "realm_assignments");
    assert_eq!(got[0]["new"]["shard"], "b");
}
