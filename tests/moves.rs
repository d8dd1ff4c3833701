//! Queue tracking and realm moves with real processes: a realm moved under load with `reload`
//! (each of its clients reloads exactly once, the old shard drops its queues) and with `drain`
//! (nothing visible, old queues stay, new ones land on the new shard); a shard drained by
//! lowering its weight in five steps; and Zulip's user-split realms through X-Accel-Redirect.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use kansas_testkit::harness::client::{blocking_get, get};
use kansas_testkit::harness::fake::{free_port, shards, Fake};
use kansas_testkit::harness::kansas::{config_text, Kansas};
use kansas_testkit::harness::load::{LoadRun, RunningLoad};
use kansas_testkit::harness::metrics::scrape_blocking;
use kansas_testkit::harness::pg::TestDb;

const RUN: &str = "mv";

fn realm(i: usize) -> String {
    format!("r{i}.{RUN}.load.example.com")
}

fn kansas_cli(config: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kansas"))
        .args(args)
        .args(["--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts kansas-load (realms r0..r{realms}).
fn start_load(
    proxy: SocketAddr,
    fakes: &[&Fake],
    clients: usize,
    realms: usize,
    secs: u64,
) -> RunningLoad {
    let shards: Vec<SocketAddr> = fakes.iter().map(|f| f.addr).collect();
    LoadRun::new(proxy)
        .shards(&shards)
        .args(["--clients", &clients.to_string()])
        .args(["--realms", &realms.to_string()])
        .args(["--duration", &format!("{secs}s"), "--publish-rate", "100/s"])
        .args(["--settle", "15s", "--run-id", RUN, "--backoff-scale", "0.1"])
        .args(["--keep-queues"])
        .spawn()
}

/// A GET from a thread of its own (usable from sync and async tests alike).
fn queues_of(fake: &Fake, realm: &str) -> u64 {
    let r = blocking_get(fake.addr, "x", &format!("/fake/queues?realm={realm}"));
    r.json()["count"].as_u64().unwrap()
}

/// Two shards behind kansas with a database; returns the shard index realm r0 hashes to.
struct Setup {
    _db: TestDb,
    fakes: Vec<Fake>,
    config: String,
    kansas: Kansas,
    home: usize,
}

fn setup(n: usize) -> Setup {
    let db = TestDb::new();
    let fakes: Vec<Fake> = (0..n)
        .map(|_| Fake::start(&["--heartbeat-secs", "2"]))
        .collect();
    let refs: Vec<&Fake> = fakes.iter().collect();
    let body = format!("[database]\nurl = \"{}\"\n{}", db.url, shards(&refs));
    let config = config_text(&body);
    kansas_cli(&config, &["db", "migrate"]);
    let snapshot = kansas::config::parse(&config).unwrap().routing;
    let home = snapshot.hash(&realm(0)).unwrap();
    let kansas = Kansas::start(&body);
    Setup {
        _db: db,
        fakes,
        config,
        kansas,
        home,
    }
}

fn move_realm_under_load(policy: &str) -> (Setup, serde_json::Value) {
    let s = setup(2);
    let other = 1 - s.home;
    let refs: Vec<&Fake> = s.fakes.iter().collect();
    // 80 clients over 4 realms: 20 clients in r0.
    let load = start_load(s.kansas.proxy, &refs, 80, 4, 12);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        queues_of(&s.fakes[s.home], &realm(0)),
        20,
        "r0's queues start on its hashed shard"
    );
    kansas_cli(
        &s.config,
        &["assign", &realm(0), &format!("s{other}"), "--move", policy],
    );
    let report = load.wait_clean();
    (s, report)
}

#[test]
fn a_reload_move_reloads_each_client_of_the_realm_once() {
    let (s, report) = move_realm_under_load("reload");
    let other = 1 - s.home;
    assert_eq!(
        report["reloads"], 20,
        "each of r0's 20 clients reloads exactly once: {report:#}"
    );
    assert_eq!(report["registrations"], 100, "{report:#}");
    assert_eq!(
        queues_of(&s.fakes[other], &realm(0)),
        20,
        "re-registered on the new shard"
    );
    // The background DELETEs freed the old queues.
    let mut left = queues_of(&s.fakes[s.home], &realm(0));
    for _ in 0..50 {
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        left = queues_of(&s.fakes[s.home], &realm(0));
    }
    assert_eq!(left, 0, "the old shard no longer holds r0's queues");
    let m = scrape_blocking(s.kansas.admin);
    assert!(
        m.contains("kansas_queue_moves_total{policy=\"reload\"} 20"),
        "{m}"
    );
}

#[test]
fn a_drain_move_is_invisible_and_new_queues_land_on_the_new_shard() {
    let (s, report) = move_realm_under_load("drain");
    let other = 1 - s.home;
    assert_eq!(report["reloads"], 0, "{report:#}");
    assert_eq!(
        queues_of(&s.fakes[s.home], &realm(0)),
        20,
        "existing queues stay on the old shard"
    );
    assert_eq!(queues_of(&s.fakes[other], &realm(0)), 0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(get(
        s.kansas.proxy,
        &realm(0),
        "/json/events?dont_block=true",
        &[],
    ));
    assert_eq!(r.status, 200);
    assert_eq!(
        queues_of(&s.fakes[other], &realm(0)),
        1,
        "a new registration lands on the new shard"
    );
    let m = scrape_blocking(s.kansas.admin);
    assert!(
        !m.contains("kansas_queue_moves_total{policy=\"drain\"} 0\n"),
        "{m}"
    );
}

#[test]
fn draining_a_shard_in_five_steps_moves_its_realms_only_elsewhere() {
    let s = setup(3);
    let refs: Vec<&Fake> = s.fakes.iter().collect();
    let realms = 12;
    let before = kansas::config::parse(&s.config).unwrap().routing;
    let load = start_load(s.kansas.proxy, &refs, 120, realms, 12);
    std::thread::sleep(Duration::from_secs(3));
    for w in ["0.8", "0.6", "0.4", "0.2", "0"] {
        kansas_cli(&s.config, &["weight", "s0", w]);
        std::thread::sleep(Duration::from_millis(1500));
    }
    let report = load.wait_clean();
    assert_eq!(report["reloads"], 0, "{report:#}");
    for i in 0..realms {
        let r = realm(i);
        let was = before.shard(before.hash(&r).unwrap()).name.clone();
        let now = kansas_cli(&s.config, &["route", &r]);
        let now = now
            .lines()
            .find_map(|l| l.strip_prefix("shard:  "))
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        assert_ne!(now, "s0", "{r}: weight 0 gets no hashed realm");
        if was != "s0" {
            assert_eq!(now, was, "{r}: realms of other shards never move");
        }
    }
    let m = scrape_blocking(s.kansas.admin);
    assert!(
        m.contains("kansas_queue_moves_total{policy=\"drain\"}"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn user_split_realms_follow_x_accel_redirect() {
    let (pa, pb, pc, nowhere) = (free_port(), free_port(), free_port(), free_port());
    let split = format!("{pa},{pb}");
    let a = Fake::start_on(&format!("127.0.0.1:{pa}"), &["--user-split", &split]);
    let b = Fake::start_on(&format!("127.0.0.1:{pb}"), &["--user-split", &split]);
    // c splits with a port kansas does not know.
    let c = Fake::start_on(
        &format!("127.0.0.1:{pc}"),
        &["--user-split", &format!("{pc},{nowhere}")],
    );
    let body = format!(
        "[[shards]]\nname = \"a\"\naddress = \"{}\"\n[[shards]]\nname = \"b\"\naddress = \"{}\"\n\
         [[shards]]\nname = \"c\"\naddress = \"{}\"\n[assignments]\n\"split.example.com\" = \"a\"\n\
         \"broken.example.com\" = \"c\"\n",
        a.addr, b.addr, c.addr
    );
    let k = Kansas::start(&body);
    // User 1 lives on b: kansas follows a's redirect; the header never reaches the client.
    let r = get(
        k.proxy,
        "split.example.com",
        "/json/events?dont_block=true",
        &[("X-Zulip-User-Id", "1")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.header("x-accel-redirect").is_none());
    let q = r.json()["queue_id"].as_str().unwrap().to_string();
    assert_eq!(queues_of(&b, "split.example.com"), 1);
    assert_eq!(queues_of(&a, "split.example.com"), 0);
    let redirects = |m: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix("kansas_redirects_total "))
            .unwrap()
            .to_string()
    };
    let m1 = redirects(&scrape_blocking(k.admin));
    assert_eq!(m1, "1");
    // The queue was learned on b: its polls go there directly.
    let r = get(
        k.proxy,
        "split.example.com",
        &format!("/json/events?queue_id={q}&last_event_id=-1&dont_block=true"),
        &[("X-Zulip-User-Id", "1")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["queue_id"], q.as_str());
    assert_eq!(
        redirects(&scrape_blocking(k.admin)),
        "1",
        "no second redirect for a known queue"
    );
    // User 0 lives on a: no redirect.
    let r = get(
        k.proxy,
        "split.example.com",
        "/json/events?dont_block=true",
        &[("X-Zulip-User-Id", "0")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(queues_of(&a, "split.example.com"), 1);
    // A redirect to a port that is no configured shard is refused.
    let r = get(
        k.proxy,
        "broken.example.com",
        "/json/events?dont_block=true",
        &[("X-Zulip-User-Id", "1")],
    )
    .await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["result"], "error");
    assert!(r.header("x-accel-redirect").is_none());
    assert!(k
        .wait_log(Duration::from_secs(5), |l| l["port"] == nowhere
            && l["level"] == "ERROR")
        .is_some());
}

#[test]
fn user_split_realms_under_load() {
    let (pa, pb) = (free_port(), free_port());
    let split = format!("{pa},{pb}");
    let a = Fake::start_on(
        &format!("127.0.0.1:{pa}"),
        &["--user-split", &split, "--heartbeat-secs", "2"],
    );
    let b = Fake::start_on(
        &format!("127.0.0.1:{pb}"),
        &["--user-split", &split, "--heartbeat-secs", "2"],
    );
    let body = format!(
        "[[shards]]\nname = \"a\"\naddress = \"{}\"\n[[shards]]\nname = \"b\"\naddress = \"{}\"\n\
         [[rules]]\npattern = '.*'\nshard = \"a\"\n",
        a.addr, b.addr
    );
    let k = Kansas::start(&body);
    let report = start_load(k.proxy, &[&a, &b], 60, 3, 8).wait_clean();
    assert_eq!(report["registrations"], 60, "{report:#}");
    assert_eq!(
        queues_of(&b, &realm(0)) + queues_of(&b, &realm(1)) + queues_of(&b, &realm(2)),
        30,
        "odd users on b"
    );
}
