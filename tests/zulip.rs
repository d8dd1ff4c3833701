//! Every scenario under a harness that behaves like Zulip: fake-tornado shards that follow the
//! routing in PostgreSQL (they redirect users they do not serve and refuse registrations for
//! them), and kansas-load publishing as Django does (each event only to the realm's resident
//! ports at that moment) and registering as Django does (straight to the current shard). Each
//! scenario runs through one kansas, then through two kansas instances behind one nginx
//! (round-robin) sharing the database: a shard restart, ten upgrades, user-split realms, a
//! reload move, a drain move and a five-step weight drain, each with 0 lost, duplicated or
//! reordered events. And the harness can see a loss: a publisher that ignores residency makes
//! the drained queues lose events and the run fail.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kansas_testkit::harness::cli::Cli;
use kansas_testkit::harness::fake::{free_port, Fake};
use kansas_testkit::harness::kansas::Kansas;
use kansas_testkit::harness::load::{LoadRun, RunningLoad};
use kansas_testkit::harness::metrics::{scrape_blocking, value};
use kansas_testkit::harness::nginx::Nginx;
use kansas_testkit::harness::pg::TestDb;

/// One Zulip-like installation: PostgreSQL, fake shards following it, one or two kansas.
struct World {
    cli: Cli,
    fakes: Vec<Fake>,
    ports: Vec<u16>,
    kansas: Vec<Kansas>,
    nginx: Option<Nginx>,
    dir: tempfile::TempDir,
    run: String,
    _db: TestDb,
}

impl World {
    /// `shards` fake shards s0.. on fixed ports, `fronts` kansas instances (two or more: behind
    /// nginx), everything following one database.
    fn new(shards: usize, fronts: usize, run: &str) -> World {
        let db = TestDb::new();
        let ports: Vec<u16> = (0..shards).map(|_| free_port()).collect();
        let config: String = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("[[shards]]\nname = \"s{i}\"\naddress = \"127.0.0.1:{p}\"\n"))
            .collect();
        let cli = Cli::new(&config, &db.url);
        cli.ok(&["db", "migrate"]);
        let dir = tempfile::tempdir().unwrap();
        let mut world = World {
            fakes: Vec::new(),
            kansas: (0..fronts)
                .map(|_| {
                    Kansas::start(&format!(
                        "[master]\nmax_draining = 12\n[database]\nurl = \"{}\"\n{config}",
                        db.url
                    ))
                })
                .collect(),
            nginx: None,
            ports,
            cli,
            dir,
            run: run.to_string(),
            _db: db,
        };
        world.fakes = (0..shards).map(|i| world.start_fake(i)).collect();
        if fronts > 1 {
            let fronts: Vec<SocketAddr> = world.kansas.iter().map(|k| k.proxy).collect();
            world.nginx = Some(Nginx::start(&fronts));
        }
        world
    }

    fn start_fake(&self, i: usize) -> Fake {
        let state = self.dir.path().join(format!("s{i}.json"));
        Fake::start_on(
            &format!("127.0.0.1:{}", self.ports[i]),
            &[
                "--routing-config",
                &self.cli.config,
                "--heartbeat-secs",
                "2",
                "--heartbeat-jitter-secs",
                "1",
                "--state-file",
                state.to_str().unwrap(),
            ],
        )
    }

    /// Where clients connect: nginx, or the only kansas.
    fn target(&self) -> SocketAddr {
        self.nginx
            .as_ref()
            .map_or_else(|| self.kansas[0].proxy, |n| n.addr)
    }

    fn realm(&self, i: usize) -> String {
        format!("r{i}.{}.load.example.com", self.run)
    }

    /// The shard a realm routes to now.
    fn shard_of(&self, i: usize) -> usize {
        let out = self.cli.ok(&["route", &self.realm(i)]);
        let line = out.lines().find(|l| l.starts_with("shard:")).unwrap();
        line.split_whitespace().nth(1).unwrap()[1..]
            .parse()
            .unwrap()
    }

    fn queues_on(&self, shard: usize, realm: usize) -> u64 {
        self.queue_list(shard, realm)["count"].as_u64().unwrap()
    }

    /// `/fake/queues` for one realm on one shard.
    fn queue_list(&self, shard: usize, realm: usize) -> serde_json::Value {
        let fake = &self.fakes[shard];
        let path = format!("/fake/queues?realm={}", self.realm(realm));
        block_on(kansas_testkit::harness::client::get(
            fake.addr,
            "x",
            &path,
            &[],
        ))
        .json()
    }

    /// A counter summed over every kansas (`name` with its labels, as exposed).
    fn counter(&self, name: &str) -> u64 {
        self.kansas
            .iter()
            .map(|k| value(&scrape_blocking(k.admin), name) as u64)
            .sum()
    }

    /// Reload answers given by every kansas so far.
    fn reload_answers(&self) -> u64 {
        self.counter("kansas_queue_moves_total{policy=\"reload\"}")
    }

    /// Starts kansas-load: `clients` over `realms`, publishing for `secs`.
    fn load(&self, clients: usize, realms: usize, secs: u64, extra: &[&str]) -> Load {
        let load = LoadRun::new(self.target())
            .args(["--routing-config", &self.cli.config])
            .args(["--clients", &clients.to_string()])
            .args(["--realms", &realms.to_string()])
            .args(["--duration", &format!("{secs}s"), "--publish-rate", "100/s"])
            .args(["--settle", "20s", "--run-id", &self.run])
            .args(["--backoff-scale", "0.1", "--keep-queues"])
            .args(extra)
            .spawn();
        Load(load)
    }
}

struct Load(RunningLoad);

impl Load {
    /// Waits for the run; returns whether it passed and its report.
    fn finish(self) -> (bool, serde_json::Value) {
        let (status, report) = self.0.wait();
        (status.success(), report)
    }

    /// Waits for the run and expects it clean: nothing lost, duplicated, reordered, no error.
    fn clean(self) -> serde_json::Value {
        let report = self.0.wait_clean();
        assert!(
            report["events_received"].as_u64().unwrap() > 100,
            "{report:#}"
        );
        report
    }
}

/// Runs one request to completion from a plain test thread.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn sleep(secs: f64) {
    std::thread::sleep(Duration::from_secs_f64(secs));
}

fn fronts_of(two: bool) -> usize {
    if two {
        2
    } else {
        1
    }
}

fn shard_restart(two: bool) {
    let mut w = World::new(2, fronts_of(two), "rs");
    let load = w.load(60, 6, 12, &[]);
    sleep(4.0);
    w.fakes[0].terminate();
    sleep(3.0);
    w.fakes[0] = w.start_fake(0);
    let report = load.clean();
    assert_eq!(report["reloads"], 0, "{report:#}");
}

fn ten_upgrades(two: bool) {
    let w = World::new(2, fronts_of(two), "up");
    let load = w.load(60, 6, 16, &[]);
    sleep(3.0);
    for n in 1..=10 {
        let k = &w.kansas[n % w.kansas.len()];
        k.upgrade(k.active_upgrades() + 1);
        sleep(0.8);
    }
    let report = load.clean();
    assert_eq!(report["reloads"], 0, "{report:#}");
}

fn user_split(two: bool) {
    let w = World::new(3, fronts_of(two), "us");
    w.cli
        .ok(&["assign", &w.realm(0), "s0,s1", "--move", "reload"]);
    w.cli
        .ok(&["assign", &w.realm(1), "s1,s2,s0", "--move", "reload"]);
    // Five realms: client (= user) ids of r0 are 0, 5, 10, ... (both parities) and of r1 are
    // 1, 6, 11, ... (every residue mod 3), so each split list's every entry gets users.
    let report = w.load(75, 5, 10, &[]).clean();
    assert_eq!(report["reloads"], 0, "{report:#}");
    assert!(
        w.counter("kansas_redirects_total") > 0,
        "users not on a split realm's first shard were redirected"
    );
    // Each split realm's queues are spread over its shards, by user: 15 users each.
    let spread = |realm| [0, 1, 2].map(|s| w.queues_on(s, realm));
    let r0 = spread(0);
    assert_eq!(r0, [8, 7, 0], "r0: even users on s0, odd on s1");
    let r1 = spread(1);
    assert_eq!(r1, [5, 5, 5], "r1: users by id mod 3 over s1, s2, s0");
}

/// r0 moves at 4 s; returns the world, the old shard and the report.
fn realm_move(two: bool, how: &[&str], run: &str) -> (World, usize, serde_json::Value) {
    let w = World::new(2, fronts_of(two), run);
    let load = w.load(80, 4, 14, &[]);
    sleep(4.0);
    let old = w.shard_of(0);
    assert_eq!(w.queues_on(old, 0), 20, "r0's 20 queues start on its shard");
    let (realm, new) = (w.realm(0), format!("s{}", 1 - old));
    let mut args = vec!["assign", realm.as_str(), new.as_str()];
    args.extend_from_slice(how);
    w.cli.ok(&args);
    if how.contains(&"--drain-for") {
        sleep(2.0);
        assert_eq!(w.reload_answers(), 0, "no reload inside the window");
    }
    let report = load.clean();
    (w, old, report)
}

fn reload_move(two: bool) {
    let (w, old, report) = realm_move(two, &["--move", "reload"], "rl");
    assert_eq!(
        report["reloads"], 20,
        "each of r0's clients once: {report:#}"
    );
    assert_eq!(report["registrations"], 100, "{report:#}");
    assert_eq!(
        w.queues_on(1 - old, 0),
        20,
        "re-registered on the new shard"
    );
    wait_empty(&w, old);
}

fn drain_move(two: bool) {
    let (w, old, report) = realm_move(two, &["--drain-for", "4s"], "dm");
    assert_eq!(
        report["reloads"], 20,
        "exactly one per old queue, after the window: {report:#}"
    );
    assert_eq!(w.queues_on(1 - old, 0), 20);
    wait_empty(&w, old);
}

/// The old shard is left with none of r0's queues (the reload answers' DELETEs).
fn wait_empty(w: &World, old: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.queues_on(old, 0) > 0 {
        if Instant::now() > deadline {
            let deleted = w
                .kansas
                .iter()
                .flat_map(|k| k.logs())
                .filter(|l| l["message"] == "realm moved: old queue deleted")
                .count();
            panic!(
                "the old shard still holds r0's queues (kansas deleted {deleted}): {:#}",
                w.queue_list(old, 0)
            );
        }
        sleep(0.1);
    }
}

fn weight_drain(two: bool) {
    let w = World::new(3, fronts_of(two), "wd");
    let realms = 6;
    let before: Vec<usize> = (0..realms).map(|i| w.shard_of(i)).collect();
    let on_s2 = before.iter().filter(|&&s| s == 2).count();
    assert!(on_s2 > 0, "some realm hashes to s2: {before:?}");
    let load = w.load(60, realms, 16, &[]);
    sleep(3.0);
    w.cli.ok(&[
        "drain",
        "s2",
        "--to",
        "0",
        "--step",
        "0.2",
        "--every",
        "1s",
        "--drain-for",
        "2s",
    ]);
    let report = load.clean();
    let after: Vec<usize> = (0..realms).map(|i| w.shard_of(i)).collect();
    for i in 0..realms {
        if before[i] == 2 {
            assert_ne!(after[i], 2, "r{i} left s2");
        } else {
            assert_eq!(after[i], before[i], "r{i} never moved");
        }
    }
    assert_eq!(
        report["reloads"],
        (on_s2 * 10) as u64,
        "each client of a realm that left s2 reloads once: {report:#}"
    );
}

macro_rules! both {
    ($($scenario:ident: $one:ident, $two:ident;)*) => {$(
        #[test]
        fn $one() {
            $scenario(false);
        }
        #[test]
        fn $two() {
            $scenario(true);
        }
    )*};
}

both! {
    shard_restart: a_shard_restart_loses_nothing, a_shard_restart_loses_nothing_behind_two_kansas;
    ten_upgrades: ten_upgrades_lose_nothing, ten_upgrades_lose_nothing_behind_two_kansas;
    user_split: user_split_realms_lose_nothing, user_split_realms_lose_nothing_behind_two_kansas;
    reload_move: a_reload_move_reloads_each_client_once, a_reload_move_reloads_each_client_once_behind_two_kansas;
    drain_move: a_drain_move_is_invisible_until_its_window_closes, a_drain_move_is_invisible_until_its_window_closes_behind_two_kansas;
    weight_drain: a_five_step_weight_drain_loses_nothing, a_five_step_weight_drain_loses_nothing_behind_two_kansas;
}

#[test]
fn a_publisher_that_ignores_residency_loses_the_drained_queues_events() {
    let w = World::new(2, 1, "lv");
    let load = w.load(40, 2, 10, &["--publish-current-only"]);
    sleep(3.0);
    let old = w.shard_of(0);
    let realm = w.realm(0);
    w.cli.ok(&[
        "assign",
        &realm,
        &format!("s{}", 1 - old),
        "--drain-for",
        "1h",
    ]);
    let (passed, report) = load.finish();
    assert!(!passed, "the run must fail: {report:#}");
    assert!(
        report["events_lost"].as_u64().unwrap() > 0,
        "the drained queues' events are lost: {report:#}"
    );
}
