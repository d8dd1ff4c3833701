//! The `Host` header and the query string, as clients send them: `normalize_host` (the realm
//! key), `decide::queue_id` (the queue a request names) and the queue map's refusal to learn
//! ids that are not Zulip-shaped.

use std::time::Duration;

use kansas::proxy::decide::queue_id;
use kansas::queues::{is_queue_id, QueueMap, QueueMetrics, MAX_QUEUE_ID_LEN};
use kansas::routing::normalize_host;
use proptest::collection::vec;
use proptest::prelude::*;

/// Host-like text: the characters hosts are made of and the ones that must be refused.
fn hostish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9._:\\- \t\\[\\]@/%é\u{0}]{0,80}",
        "([a-zA-Z0-9-]{0,70}\\.){0,6}[a-z0-9]{0,5}(:[0-9]{0,7})?\\.?",
    ]
}

/// A valid realm host: 1 to 5 labels of letters, digits, `-` and `_`, not starting or ending
/// with `-`.
fn realm() -> impl Strategy<Value = String> {
    vec("[a-z0-9]([a-z0-9_-]{0,20}[a-z0-9])?", 1..=5).prop_map(|labels| labels.join("."))
}

proptest! {
    #![proptest_config(crate::cases(512))]

    /// Any `Host` value is a realm or an error, never a panic; a realm is a normalized host
    /// (lower case, at most 253 bytes, of allowed characters) that normalizes to itself.
    #[test]
    fn a_host_is_a_normalized_realm_or_refused(raw in hostish()) {
        if let Ok(realm) = normalize_host(&raw) {
            prop_assert!(!realm.is_empty() && realm.len() <= 253, "{realm:?}");
            prop_assert!(realm
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)));
            prop_assert!(!realm.starts_with('.') && !realm.ends_with('.'));
            prop_assert_eq!(normalize_host(&realm), Ok(realm.clone()));
        }
    }

    /// However a client spells a valid host (case, port, trailing dot, spaces), kansas routes
    /// it as the realm the configuration assigned.
    #[test]
    fn a_valid_host_routes_to_its_assigned_shard(
        realm in realm(),
        upper in vec(any::<bool>(), 0..120),
        port in proptest::option::of(0..=65535u32),
        dot in any::<bool>(),
        space in any::<bool>(),
        shard in 0..3usize,
    ) {
        let mut host: String = realm
            .chars()
            .zip(upper.iter().chain(std::iter::repeat(&false)))
            .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
            .collect();
        if dot {
            host.push('.');
        }
        if let Some(port) = port {
            host.push_str(&format!(":{port}"));
        }
        if space {
            host = format!(" {host}\t");
        }
        let text = format!(
            "{}[assignments]\n\"{realm}\" = \"s{shard}\"\n",
            (0..3)
                .map(|i| format!("[[shards]]\nname = \"s{i}\"\naddress = \"127.0.0.1:{}\"\n", 9800 + i))
                .collect::<String>()
        );
        let config = kansas::config::parse(&text).expect("a valid realm is a valid assignment");
        prop_assert_eq!(normalize_host(&host), Ok(realm.clone()), "{:?}", host);
        let route = config.routing.route(&realm).expect("assigned");
        prop_assert_eq!(route.shard, shard);
    }

    /// The queue id a query names: never a panic, and the unencoded fast path gives what full
    /// form decoding gives.
    #[test]
    fn the_queue_id_is_what_form_decoding_says(
        parts in vec(
            prop_oneof![
                Just("queue_id=".to_string()),
                Just("queue_id".to_string()),
                Just("&".to_string()),
                Just("=".to_string()),
                Just("last_event_id=-1".to_string()),
                Just("queue_idx=".to_string()),
                "%[0-9A-Fa-f]{0,2}",
                "[+;#a-z0-9:_-]{0,6}",
                any::<String>(),
            ],
            0..12,
        ),
    ) {
        let query = parts.concat();
        let want = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "queue_id")
            .map(|(_, v)| v.into_owned())
            .filter(|v| !v.is_empty());
        prop_assert_eq!(queue_id(Some(&query)), want);
    }

    /// Percent-encoding round trips: whatever a client encodes as `queue_id` (the first one) is
    /// the id kansas reads back.
    #[test]
    fn an_encoded_queue_id_round_trips(
        pairs in vec(
            (
                prop_oneof![
                    Just("queue_id".to_string()),
                    Just("last_event_id".to_string()),
                    Just("dont_block".to_string()),
                    any::<String>(),
                ],
                any::<String>(),
            ),
            0..6,
        ),
    ) {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&pairs)
            .finish();
        let want = pairs
            .iter()
            .find(|(k, _)| k == "queue_id")
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty());
        prop_assert_eq!(queue_id(Some(&query)), want);
    }

    /// The queue map learns exactly the Zulip-shaped ids (at most 64 characters of
    /// `[A-Za-z0-9:_-]`); anything else a client sends is never stored.
    #[test]
    fn only_zulip_shaped_queue_ids_are_learned(
        ids in vec(
            prop_oneof![
                "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                "[0-9]{1,10}:[0-9]{1,6}",
                "[A-Za-z0-9:_-]{0,80}",
                any::<String>(),
                "[0-9a-f-]{60,70}",
                (65..17_000usize).prop_map(|n| "a".repeat(n)),
            ],
            1..8,
        ),
    ) {
        let map = QueueMap::new(1000, Duration::from_secs(600), QueueMetrics::default());
        let mut learned = std::collections::HashSet::new();
        for id in &ids {
            map.learn(id, 1, 1, "r.example.com");
            // Zulip's shape, as documented: 1 to 64 characters of `[A-Za-z0-9:_-]`.
            let shaped = (1..=64).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b":_-".contains(&b));
            prop_assert_eq!(is_queue_id(id), shaped, "{:?}", id);
            prop_assert_eq!(MAX_QUEUE_ID_LEN, 64);
            prop_assert_eq!(map.lookup(id).is_some(), shaped, "{:?}", id);
            if shaped {
                learned.insert(id.clone());
            }
        }
        prop_assert_eq!(map.len(), learned.len());
    }
}
