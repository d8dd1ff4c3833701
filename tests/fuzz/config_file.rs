//! The configuration file: arbitrary, generated and mutated TOML through parsing and
//! validation. Every input gives a configuration or a non-empty list of problems, never a panic;
//! a number out of range (NaN, infinities, negatives, huge values, wrong types) is a problem
//! named by its key.

use kansas::config::{parse, ConfigError};
use proptest::collection::vec;
use proptest::prelude::*;

use crate::mutate::{apply, edits};

const EXAMPLE: &str = include_str!("../../config/kansas.example.toml");

/// A minimal valid file: one shard.
const BASE: &str = "[[shards]]\nname = \"s0\"\naddress = \"127.0.0.1:9800\"\n";

/// Every duration key (seconds, fractions allowed).
const DURATIONS: &[(&str, &str)] = &[
    ("timeouts", "upstream_connect_secs"),
    ("timeouts", "client_header_secs"),
    ("timeouts", "upstream_response_secs"),
    ("timeouts", "drain_secs"),
    ("parking", "timeout_secs"),
    ("parking", "probe_interval_secs"),
    ("parking", "release_rate_per_sec"),
    ("master", "upgrade_timeout_secs"),
    ("queues", "idle_timeout_secs"),
    ("queues", "drain_window_secs"),
    ("queues", "reload_delay_secs"),
    ("database", "resync_secs"),
    ("database", "connect_timeout_secs"),
];

/// Every count key (integers with a range).
const COUNTS: &[(&str, &str)] = &[
    ("proxy", "max_connections"),
    ("proxy", "threads"),
    ("proxy", "max_header_bytes"),
    ("proxy", "max_body_bytes"),
    ("parking", "max_per_shard"),
    ("parking", "release_burst"),
    ("master", "max_draining"),
    ("queues", "max_entries"),
    ("queues", "max_drain_windows"),
];

/// TOML fragments a fuzzer would try.
const TOKENS: &[&[u8]] = &[
    b"nan",
    b"-inf",
    b"inf",
    b"-1",
    b"1e999",
    b"99999999999999999999999",
    b"-9223372036854775808",
    b"0x7fffffffffffffff",
    b"\"",
    b"'''",
    b"\"\"\"",
    b"[",
    b"]]",
    b"=",
    b"\n",
    b"[[shards]]\n",
    b"[[rules]]\npattern = \"(\"\n",
    b"[assignments]\n",
    b"\\u0000",
    b"\\uD800",
    b"{ a = { b = [ [ [ 1 ] ] ] } }",
    b"1979-05-27T07:32:00Z",
];

/// A TOML value of any kind, including the awkward ones.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        Just("nan".into()),
        Just("+inf".into()),
        Just("-inf".into()),
        Just("-0.0".into()),
        Just("99999999999999999999".into()),
        Just("1e308".into()),
        any::<bool>().prop_map(|v| v.to_string()),
        any::<String>().prop_map(|s| format!("{s:?}")),
        (1..200_000usize).prop_map(|n| format!("\"{}\"", "x".repeat(n))),
        Just("[1, \"a\", 2.5]".into()),
        Just("{ x = 1 }".into()),
        Just("1979-05-27".into()),
    ]
}

/// A key from the file's sections, or any other.
fn section_and_key() -> impl Strategy<Value = (String, String)> {
    let known = DURATIONS
        .iter()
        .chain(COUNTS)
        .chain(&[
            ("proxy", "listen"),
            ("admin", "listen"),
            ("log", "format"),
            ("log", "level"),
            ("parking", "enabled"),
            ("parking", "timeout_answer"),
            ("queues", "move_policy"),
            ("database", "url"),
            ("database", "url_env"),
        ])
        .map(|(s, k)| (s.to_string(), k.to_string()))
        .collect::<Vec<_>>();
    prop_oneof![
        4 => proptest::sample::select(known),
        1 => ("[a-z]{1,8}", "[a-z_]{1,12}"),
    ]
}

/// A generated file: sections with keys and values, shards, assignments and rules.
fn document() -> impl Strategy<Value = String> {
    let entry = (section_and_key(), value());
    let shard = (
        proptest::option::of(value()),
        proptest::option::of(prop_oneof![
            Just("\"127.0.0.1:9800\"".to_string()),
            Just("\"shard.example.com:65535\"".to_string()),
            value()
        ]),
        proptest::option::of(value()),
        proptest::option::of(value()),
    );
    let assignment = (any::<String>(), value());
    let rule = (proptest::option::of(value()), proptest::option::of(value()));
    (
        vec(entry, 0..10),
        vec(shard, 0..4),
        vec(assignment, 0..3),
        vec(rule, 0..3),
    )
        .prop_map(|(entries, shards, assignments, rules)| {
            let mut text = String::new();
            for ((section, key), v) in entries {
                text.push_str(&format!("[{section}]\n{key} = {v}\n"));
            }
            for (name, address, port, weight) in shards {
                text.push_str("[[shards]]\n");
                for (k, v) in [
                    ("name", name),
                    ("address", address),
                    ("port", port),
                    ("weight", weight),
                ] {
                    if let Some(v) = v {
                        text.push_str(&format!("{k} = {v}\n"));
                    }
                }
            }
            for (pattern, shard) in rules {
                text.push_str("[[rules]]\n");
                if let Some(p) = pattern {
                    text.push_str(&format!("pattern = {p}\n"));
                }
                if let Some(s) = shard {
                    text.push_str(&format!("shard = {s}\n"));
                }
            }
            text.push_str("[assignments]\n");
            for (realm, shard) in assignments {
                text.push_str(&format!("{realm:?} = {shard}\n"));
            }
            text
        })
}

/// Parses `text`: a configuration, or problems (at least one); never a panic.
fn parse_checked(text: &str) -> Result<(), TestCaseError> {
    match parse(text) {
        Ok(_) => Ok(()),
        Err(ConfigError::Invalid { problems }) => {
            prop_assert!(!problems.is_empty(), "refused without a problem");
            Ok(())
        }
        Err(e) => Err(TestCaseError::fail(format!("parse read a file? {e}"))),
    }
}

proptest! {
    #![proptest_config(crate::cases(256))]

    #[test]
    fn arbitrary_text_is_a_config_or_problems(text in any::<String>()) {
        parse_checked(&text)?;
    }

    #[test]
    fn generated_files_are_a_config_or_problems(text in document()) {
        parse_checked(&text)?;
    }

    #[test]
    fn mutated_example_files_are_a_config_or_problems(edits in edits(8)) {
        let bytes = apply(EXAMPLE.as_bytes().to_vec(), &edits, TOKENS);
        parse_checked(&String::from_utf8_lossy(&bytes))?;
    }

    /// A duration that is not a number of seconds in range is a problem named by its key.
    #[test]
    fn a_bad_duration_is_a_problem_at_its_key(
        at in 0..DURATIONS.len(),
        bad in prop_oneof![
            Just("nan".to_string()),
            Just("inf".to_string()),
            Just("-inf".to_string()),
            Just("1e300".to_string()),
            (f64::MIN..-1e-9).prop_map(|v| format!("{v:?}")),
            Just("\"10\"".to_string()),
            Just("true".to_string()),
        ],
    ) {
        let (section, key) = DURATIONS[at];
        let database = if section == "database" { "url_env = \"KANSAS_DB\"\n" } else { "" };
        let text = format!("{BASE}[{section}]\n{database}{key} = {bad}\n");
        refused_at(&text, section, key, &bad)?;
    }

    /// A count that is negative, huge or not an integer is a problem named by its key.
    #[test]
    fn a_bad_count_is_a_problem_at_its_key(
        at in 0..COUNTS.len(),
        bad in prop_oneof![
            (i64::MIN..-1).prop_map(|v| v.to_string()),
            (1i64 << 31..=i64::MAX).prop_map(|v| v.to_string()),
            Just("99999999999999999999".to_string()),
            Just("1.5".to_string()),
            Just("nan".to_string()),
        ],
    ) {
        let (section, key) = COUNTS[at];
        let text = format!("{BASE}[{section}]\n{key} = {bad}\n");
        refused_at(&text, section, key, &bad)?;
    }
}

/// `text` (which sets `section.key` to `bad`) is refused, with a problem naming that key.
fn refused_at(text: &str, section: &str, key: &str, bad: &str) -> Result<(), TestCaseError> {
    let problems = match parse(text) {
        Ok(_) => {
            return Err(TestCaseError::fail(format!(
                "{section}.{key} = {bad} accepted"
            )))
        }
        Err(e) => e.problems(),
    };
    let named = format!("{section}.{key}");
    prop_assert!(
        problems
            .iter()
            .any(|p| p.key == named || p.message.contains(key)),
        "{named} = {bad}: {problems:?}"
    );
    Ok(())
}

/// The base file is valid, so the properties above fail for the value they set.
#[test]
fn the_base_file_is_valid() {
    parse(BASE).unwrap();
    parse(&format!("{BASE}[database]\nurl_env = \"KANSAS_DB\"\n")).unwrap();
}
