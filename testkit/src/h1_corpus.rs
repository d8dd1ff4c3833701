//! The HTTP/1 conformance corpus (`tests/data/http/*.txt`, format in `docs/http.md`): reading
//! its cases, running one through `kansas::h1::pipeline`, and writing the outcome in the
//! corpus's own text form, so a case passes when the outcome's text equals its expectation.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use kansas::h1::pipeline::{forward_requests, relay_response, End, Exchange};
use kansas::h1::response::ToClient;
use kansas::h1::{Limits, Version};

/// The client address every case's requests come from.
pub const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
/// The request id given to requests without a sane one.
pub const NEW_ID: &[u8] = b"generated-id";

/// Which side a case's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direction {
    Request,
    /// A shard's answer to a request with this method, from a client of this version that
    /// allowed keep-alive or not.
    Response {
        method: String,
        version: Version,
        keep_alive: bool,
    },
}

/// One case.
#[derive(Debug, Clone)]
pub struct Case {
    /// `file:name`.
    pub name: String,
    pub direction: Direction,
    pub limits: Limits,
    pub input: Vec<u8>,
    /// The expected outcome, in [`outcome`]'s form.
    pub expect: String,
}

/// Every case of every `*.txt` file in `dir`, in file then case order.
pub fn load(dir: &Path) -> Vec<Case> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("corpus directory")
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("corpus file");
        let stem = f.file_stem().unwrap().to_string_lossy().to_string();
        cases.extend(parse_file(&stem, &text));
    }
    cases
}

/// The cases of one file.
pub fn parse_file(file: &str, text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for block in text.split("\n=== ").skip(1) {
        let (name, rest) = block.split_once('\n').expect("a case has lines");
        let name = format!("{file}:{}", name.trim());
        let (header, rest) = rest
            .split_once("\n<<<\n")
            .unwrap_or_else(|| panic!("{name}: no <<<"));
        let (input, expect) = rest
            .split_once("\n>>>\n")
            .unwrap_or_else(|| panic!("{name}: no >>>"));
        let header = header
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty());
        let (direction, limits) = parse_header(&name, &header.collect::<Vec<_>>().join(" "));
        let expect = expect
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        cases.push(Case {
            name,
            direction,
            limits,
            input: unescape_lines(input),
            expect,
        });
    }
    cases
}

/// `request [head=N] [body=N]` or `response METHOD 1.0|1.1 keep-alive|close [...]`.
fn parse_header(name: &str, header: &str) -> (Direction, Limits) {
    let mut words = header.split_whitespace();
    let mut limits = Limits::default();
    let direction = match words.next() {
        Some("request") => Direction::Request,
        Some("response") => {
            let method = words.next().expect("response METHOD").to_string();
            let version = match words.next() {
                Some("1.0") => Version::Http10,
                _ => Version::Http11,
            };
            let keep_alive = words.next() != Some("close");
            Direction::Response {
                method,
                version,
                keep_alive,
            }
        }
        other => panic!("{name}: direction {other:?}"),
    };
    for w in words {
        match w.split_once('=') {
            Some(("head", n)) => limits.max_head_bytes = n.parse().unwrap(),
            Some(("body", n)) => limits.max_body_bytes = n.parse().unwrap(),
            Some(("response-head", n)) => limits.max_response_head_bytes = n.parse().unwrap(),
            Some(("trailer", n)) => limits.max_trailer_bytes = n.parse().unwrap(),
            _ => panic!("{name}: unknown option {w}"),
        }
    }
    (direction, limits)
}

/// The bytes of an input block: each line unescaped, line breaks dropped; a line
/// `@repeat N TEXT` is TEXT N times, with `{i}` replaced by the repetition's index.
pub fn unescape_lines(block: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in block.lines() {
        if let Some(rest) = line.strip_prefix("@repeat ") {
            let (n, text) = rest.split_once(' ').expect("@repeat N TEXT");
            for i in 0..n.parse::<usize>().expect("@repeat count") {
                out.extend(unescape(&text.replace("{i}", &i.to_string())));
            }
        } else {
            out.extend(unescape(line));
        }
    }
    out
}

/// `\r`, `\n`, `\t`, `\\`, `\xNN`; every other character is itself.
pub fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("\\xNN");
                out.push(u8::from_str_radix(hex, 16).expect("\\xNN"));
                i += 2;
            }
            other => panic!("unknown escape \\{other:?} in {s:?}"),
        }
        i += 2;
    }
    out
}

/// Bytes in the corpus's text form: escaped, a line break after each `\n`, a line's leading
/// `@` and trailing space escaped.
pub fn escape(bytes: &[u8]) -> String {
    let mut lines = Vec::new();
    let mut line = String::new();
    for &c in bytes {
        match c {
            b'\r' => line.push_str("\\r"),
            b'\n' => line.push_str("\\n"),
            b'\t' => line.push_str("\\t"),
            b'\\' => line.push_str("\\\\"),
            b'@' if line.is_empty() => line.push_str("\\x40"),
            0x20..=0x7e => line.push(c as char),
            _ => line.push_str(&format!("\\x{c:02x}")),
        }
        if c == b'\n' {
            lines.push(std::mem::take(&mut line));
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    for l in &mut lines {
        if l.ends_with(' ') {
            l.pop();
            l.push_str("\\x20");
        }
    }
    lines.join("\n")
}

/// Runs a case and writes its outcome in the corpus's form.
pub fn outcome(case: &Case) -> String {
    match &case.direction {
        Direction::Request => request_outcome(case),
        Direction::Response {
            method,
            version,
            keep_alive,
        } => {
            let to = ToClient {
                request_id: b"rid",
                version: *version,
                keep_alive: *keep_alive,
            };
            let r = relay_response(&case.input, &case.limits, method == "HEAD", &to);
            let mut out = Vec::new();
            if !r.client.is_empty() {
                out.push("@client".to_string());
                out.push(escape(&r.client));
            }
            match (r.error, r.client.is_empty()) {
                (Some(e), true) => out.push(format!("@answer {} {}", e.status(), e.rule())),
                (Some(e), false) => out.push(format!("@abort {}", e.rule())),
                (None, _) => {}
            }
            out.push(match (r.error, r.incomplete) {
                (Some(_), _) => "@end shard=close".to_string(),
                (None, true) => "@end incomplete".to_string(),
                (None, false) => format!(
                    "@end client={} shard={}",
                    if r.client_keep_alive {
                        "keep-alive"
                    } else {
                        "close"
                    },
                    if r.shard_reusable { "reuse" } else { "close" }
                ),
            });
            out.join("\n")
        }
    }
}

fn request_outcome(case: &Case) -> String {
    let (exchanges, end) = forward_requests(&case.input, &case.limits, CLIENT, NEW_ID);
    let mut out = Vec::new();
    for x in exchanges {
        match x {
            Exchange::Forwarded {
                bytes, continued, ..
            } => {
                out.push(
                    if continued {
                        "@forward continue"
                    } else {
                        "@forward"
                    }
                    .to_string(),
                );
                out.push(escape(&bytes));
            }
            Exchange::Refused { refusal, sent } => {
                if !sent.is_empty() {
                    out.push("@sent".to_string());
                    out.push(escape(&sent));
                }
                let close = if refusal.close { " close" } else { "" };
                out.push(format!(
                    "@answer {} {}{close}",
                    refusal.status(),
                    refusal.error.rule()
                ));
            }
        }
    }
    out.push(
        match end {
            End::Idle => "@end idle",
            End::Incomplete => "@end incomplete",
            End::Close => "@end close",
        }
        .to_string(),
    );
    out.retain(|l| !l.is_empty());
    out.join("\n")
}
