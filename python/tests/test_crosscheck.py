"""The cross-check: this module and kansas (Rust) give the same answers, change after change.

A fresh database is migrated by ``kansas db migrate``; then ~40 random routing changes are made
with kansas's command line (assign, unassign, weight, rule set/remove, closing windows, with and
without drain windows). After every change, 10,000 realms (assigned ones, ones matching the
rules, random ones; a user id each) are answered at one fixed time T by a fresh load of this
module and by ``kansas route --batch --at T``, and every field is compared.

The kansas binary is ``$KANSAS_BIN``, else ``<repo>/target/debug/kansas``. Without it, or if its
``route`` has no ``--batch``, this test fails (it is never skipped).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, Database
from kansas_zulip import store
from kansas_zulip.residency import Residency
from kansas_zulip.routing import normalize_host

N_SHARDS = 6
N_CHANGES = 40
N_REALMS = 10_000
SHARD_NAMES = [f"s{i}" for i in range(N_SHARDS)]
PORT = {name: 9850 + i for i, name in enumerate(SHARD_NAMES)}
ASSIGNABLE = [f"a{i}.example.com" for i in range(40)] + ["eu3.example.com", "chat-15.example.com"]
PATTERNS = [r"eu\d*\.", r"[a-c]+-team\.", r".*\.example\.org", r"chat-(1|2)\d\.", r"x",
            r"a1\d?\.example\.com", r"[^.]+\.corp\.example\.net"]


def kansas_binary() -> str:
    path = os.environ.get("KANSAS_BIN") or str(REPO / "target" / "debug" / "kansas")
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        pytest.fail(
            f"the cross-check needs the kansas binary: {path} does not exist (build it with "
            "`cargo build`, or set KANSAS_BIN)",
            pytrace=False,
        )
    r = subprocess.run([path, "route", "--help"], capture_output=True, text=True, timeout=60)
    if "--batch" not in r.stdout + r.stderr:
        pytest.fail(f"the cross-check needs `kansas route --batch`; {path} has no --batch "
                    "(rebuild kansas)", pytrace=False)
    return path


class Kansas:
    def __init__(self, binary: str, config: Path) -> None:
        self.binary = binary
        self.config = config
        self.env = {**os.environ, "USER": "crosscheck", "RUST_LOG": "warn", "NO_COLOR": "1"}

    def run(self, *args: str, input: str | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [self.binary, *args, "--config", str(self.config)]
        r = subprocess.run(cmd, input=input, capture_output=True, text=True, env=self.env,
                           timeout=timeout)
        if check and r.returncode != 0:
            pytest.fail(f"`{' '.join(cmd)}` exited {r.returncode}:\n{r.stdout}\n{r.stderr}",
                        pytrace=False)
        return r


def write_config(path: Path, dsn: str) -> None:
    lines = ["[queues]", "max_drain_windows = 64", ""]
    for name in SHARD_NAMES:
        lines += ["[[shards]]", f'name = "{name}"', f'address = "127.0.0.1:{PORT[name]}"',
                  f"port = {PORT[name]}", ""]
    lines += ["[database]", f"url = {json.dumps(dsn)}", ""]
    path.write_text("\n".join(lines))


def realm_inputs(rng: random.Random) -> list[tuple[str, int]]:
    hosts: list[str] = []
    hosts += ASSIGNABLE * 3
    rule_hosts = [
        "eu.example.com", "eu12.example.com", "EU7.Example.com:443", "abc-team.example.net",
        "cab-team.zulip.example", "chat.example.org", "team.example.org.", "chat-17.example.com",
        "chat-20.example.com", "chat-3.example.com", "xylophone.example.com", "x.y",
        "a15.example.com", "a1.example.com", "eng.corp.example.net", "sales.corp.example.net",
    ]
    hosts += rule_hosts * 20
    while len(hosts) < N_REALMS:
        tld = rng.choice(["com", "net", "org", "example.org", "corp.example.net", "io"])
        name = rng.choice(["r", "chat", "eu", "x", "team", "abc-team", "zulip"])
        host = f"{name}{rng.randrange(100000)}.{tld}"
        if rng.random() < 0.05:
            host = host.upper() + ":443"
        hosts.append(host)
    hosts = hosts[:N_REALMS]
    rng.shuffle(hosts)
    return [(h, rng.randrange(1_000_000)) for h in hosts]


def expected(res: Residency, host: str, user_id: int, at: float) -> dict[str, Any]:
    realm = normalize_host(host)
    targets = res.current_targets(realm)
    return {
        "realm": realm,
        "targets": None if targets is None else list(targets),
        "ports": res.current_ports(realm),
        "resident": [[r.shard, r.port, r.until] for r in res.resident(realm, at)],
        "user_id": user_id,
        "user_port": res.user_port(realm, user_id),
        "user_resident_ports": res.user_resident(realm, user_id, at),
    }


#: How many answers fell in the case docs/residency.md leaves open (see compare()).
def compare(got: dict[str, Any], want: dict[str, Any]) -> str | None:
    for key in ("realm", "targets", "ports", "user_id", "user_resident_ports"):
        if got.get(key) != want[key]:
            return f"{key}: kansas says {got.get(key)!r}, kansas_zulip says {want[key]!r}"
    # user_port is the user's current port: none when the realm has no current shard.
    if got.get("user_port") != want["user_port"]:
        return f"user_port: kansas says {got.get('user_port')!r}, kansas_zulip says " \
            f"{want['user_port']!r}"
    resident = [[r.get("shard"), r.get("port"), r.get("until")] for r in got.get("resident", [])]
    ok = len(resident) == len(want["resident"]) and all(
        g[0] == w[0] and g[1] == w[1]
        and ((g[2] is None and w[2] is None)
             or (g[2] is not None and w[2] is not None and abs(g[2] - w[2]) <= 1e-3))
        for g, w in zip(resident, want["resident"])
    )
    if not ok:
        return f"resident: kansas says {resident!r}, kansas_zulip says {want['resident']!r}"
    return None


class Model:
    """What the test has asked kansas to do, to pick sensible next changes."""

    def __init__(self) -> None:
        self.assigned: set[str] = set()
        self.rules: dict[int, str] = {}
        self.weights = {name: 1.0 for name in SHARD_NAMES}


def move_options(rng: random.Random, window: str) -> list[str]:
    return rng.choice([[], ["--move", "reload"], ["--move", "drain", "--drain-for", window],
                       ["--drain-for", window], ["--drain-for", window]])


def shard_list(rng: random.Random) -> str:
    k = rng.choice([1, 1, 1, 2, 3])
    return ",".join(rng.sample(SHARD_NAMES, k))


def next_change(step: int, rng: random.Random, model: Model, kansas: Kansas) -> list[str]:
    # steps 18-24: every weight goes to 0 one by one (realms no rule or assignment covers end
    # up with no shard), then back
    if 18 <= step < 18 + N_SHARDS:
        name = SHARD_NAMES[step - 18]
        model.weights[name] = 0.0
        return ["weight", name, "0", *move_options(rng, "25s")]
    if step == 18 + N_SHARDS:
        model.weights["s2"] = 1.5
        return ["weight", "s2", "1.5", "--drain-for", "30s"]
    kind = rng.choice(["assign", "assign", "unassign", "weight", "rule", "rule", "unrule",
                       "close"])
    if kind == "unassign" and model.assigned:
        realm = rng.choice(sorted(model.assigned))
        model.assigned.discard(realm)
        return ["unassign", realm, *move_options(rng, "30s")]
    if kind == "weight":
        name = rng.choice(SHARD_NAMES)
        w = rng.choice([0.0, 0.5, 1.0, 2.0, 3.0])
        model.weights[name] = w
        return ["weight", name, str(w), *move_options(rng, "20s")]
    if kind == "rule":
        priority = rng.choice([5, 10, 20, 30, 40])
        pattern = rng.choice(PATTERNS)
        model.rules[priority] = pattern
        return ["rule", "set", str(priority), pattern, shard_list(rng),
                *rng.choice([[], ["--drain-for", "30s"], ["--move", "reload"]])]
    if kind == "unrule" and model.rules:
        priority = rng.choice(sorted(model.rules))
        del model.rules[priority]
        return ["rule", "remove", str(priority), *rng.choice([[], ["--drain-for", "25s"]])]
    if kind == "close":
        windows = json.loads(kansas.run("residency", "--json").stdout)["windows"]
        if windows:
            return ["residency", "--close", str(rng.choice(windows)["id"])]
    realm = rng.choice(ASSIGNABLE)
    model.assigned.add(realm)
    return ["assign", realm, shard_list(rng), *move_options(rng, "30s")]


def test_crosscheck_with_kansas(empty_db: Database, tmp_path: Path) -> None:
    binary = kansas_binary()
    # Keep this binary for the whole run, even if a build replaces the file meanwhile.
    pinned = tmp_path / "kansas"
    try:
        os.link(binary, pinned)
    except OSError:
        shutil.copy2(binary, pinned)
    binary = str(pinned)
    config = tmp_path / "kansas.toml"
    write_config(config, empty_db.dsn)
    kansas = Kansas(binary, config)
    kansas.run("db", "migrate")
    kansas.run("db", "migrate")  # safe to run twice
    rng = random.Random(int(os.environ.get("KANSAS_CROSSCHECK_SEED", "20251124")))
    inputs = realm_inputs(rng)
    stdin = "".join(f"{h} {u}\n" for h, u in inputs)
    model = Model()
    done: list[str] = []
    refused = 0
    checked = 0
    seen = {"resident>1": 0, "resident>2": 0, "split": 0, "no shard": 0, "user moved": 0}
    for step in range(N_CHANGES + 1):
        if step > 0:
            args = next_change(step, rng, model, kansas)
            r = kansas.run(*args, check=False)
            if r.returncode != 0:
                refused += 1
                done.append(f"REFUSED {' '.join(args)}: {r.stderr.strip()[:200]}")
            else:
                done.append(" ".join(args))
        at = time.time() + rng.choice([2.0, 2.0, 12.0, 22.0, 27.0, 45.0])
        res = store.load_dsn(empty_db.dsn)
        r = kansas.run("route", "--batch", "--at", repr(at), input=stdin)
        lines = r.stdout.splitlines()
        assert len(lines) == len(inputs), (
            f"kansas route --batch printed {len(lines)} lines for {len(inputs)} realms")
        for (host, user_id), line in zip(inputs, lines):
            got = json.loads(line)
            want = expected(res, host, user_id, at)
            problem = compare(got, want)
            if problem is not None:
                history = "\n  ".join(done[-8:]) or "(none)"
                pytest.fail(
                    f"after change {step} ({done[-1] if done else 'none'}), at T={at!r}, realm "
                    f"{host!r} user {user_id}: {problem}\n"
                    f"kansas: {line}\nkansas_zulip: {json.dumps(want)}\n"
                    f"open windows: {[(w.id, w.until, w.change) for w in res.windows]}\n"
                    f"last changes:\n  {history}",
                    pytrace=False,
                )
            checked += 1
            seen["resident>1"] += len(want["resident"]) > 1
            seen["resident>2"] += len(want["resident"]) > 2
            seen["split"] += len(want["targets"] or ()) > 1
            seen["no shard"] += want["targets"] is None
            seen["user moved"] += len(want["user_resident_ports"]) > 1
    assert refused <= N_CHANGES // 4, "kansas refused too many changes:\n" + "\n".join(done)
    assert checked == (N_CHANGES + 1) * N_REALMS
    print(f"cross-check: {checked} answers agree over {N_CHANGES} changes ({refused} refused); "
          f"{seen}")
    # the changes exercised what they are meant to
    assert all(count > 0 for count in seen.values()), seen
