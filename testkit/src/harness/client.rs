//! A raw HTTP/1.1 client: writes exactly the bytes a test gives and parses what comes back, so
//! tests can send bad hosts, oversized heads, stalled heads and hop-by-hop headers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    /// Lower-cased names; repeated headers joined with ", ".
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|s| s.as_str())
    }
}

/// Sends `raw` (a complete request with `Connection: close`) and reads the response to EOF.
pub async fn send(addr: SocketAddr, raw: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
        .await
        .expect("response within 30 s")
        .expect("read response");
    parse(&buf).unwrap_or_else(|| panic!("no HTTP response in {:?}", String::from_utf8_lossy(&buf)))
}

/// A GET with the given Host and extra header lines, `Connection: close`.
pub async fn get(addr: SocketAddr, host: &str, path: &str, extra: &[(&str, &str)]) -> Resp {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    send(addr, req.as_bytes()).await
}

/// [`get`] from synchronous code (also inside a runtime: it runs on its own thread).
pub fn blocking_get(addr: SocketAddr, host: &str, path: &str) -> Resp {
    let (host, path) = (host.to_string(), path.to_string());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(get(addr, &host, &path, &[]))
    })
    .join()
    .expect("the request's thread")
}

/// Parses one response (content-length, chunked, or to EOF).
pub fn parse(buf: &[u8]) -> Option<Resp> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf).ok()? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return None,
    };
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for h in resp.headers.iter() {
        let v = String::from_utf8_lossy(h.value).to_string();
        map.entry(h.name.to_ascii_lowercase())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v)
            })
            .or_insert(v);
    }
    let rest = &buf[head_len..];
    let body = if map.get("transfer-encoding").map(|v| v.contains("chunked")) == Some(true) {
        dechunk(rest)?
    } else if let Some(len) = map.get("content-length") {
        rest[..len.parse::<usize>().ok()?.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Some(Resp {
        status: resp.code?,
        headers: map,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}
