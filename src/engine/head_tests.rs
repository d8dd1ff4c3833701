//! Tests of the head reader on real sockets (127.0.0.1:0), on the test's current-thread
//! runtime, so the thread's buffer pool can be read between the reader's steps.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::h1::{Framing, RequestError};

/// A connected pair: (the client's end, kansas's end).
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

/// What the tests keep of a head.
fn summary(h: &RequestHead<'_, '_>) -> (String, String, Vec<u8>, Framing) {
    (
        h.method.to_string(),
        h.target.to_string(),
        h.host.to_vec(),
        h.framing,
    )
}

fn limits() -> Limits {
    Limits::default()
}

/// Lets the other tasks of this thread run until `done` holds (bounded in steps, not time).
async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the reader made no progress");
}

#[tokio::test]
async fn a_head_in_one_read_is_parsed_and_the_buffer_returned() {
    let (mut client, server) = pair().await;
    client
        .write_all(b"GET /json/events?queue_id=q HTTP/1.1\r\nHost: r.example.com\r\n\r\n")
        .await
        .unwrap();
    let mut reader = HeadReader::new();
    let got = reader.next(&server, &limits(), summary).await.unwrap();
    assert_eq!(got.0, "GET");
    assert_eq!(got.1, "/json/events?queue_id=q");
    assert_eq!(got.2, b"r.example.com");
    assert_eq!(reader.pending(), 0);
    assert_eq!(pool::with(pool::BufPool::lent), 0);
}

#[tokio::test]
async fn a_head_split_over_many_reads_holds_no_buffer_between_them() {
    let (mut client, server) = pair().await;
    let read = tokio::spawn(async move {
        let mut reader = HeadReader::new();
        let got = reader.next(&server, &limits(), summary).await;
        (got.map_err(|e| e.to_string()), reader.pending())
    });
    let head = b"GET /a HTTP/1.1\r\nHost: split.example.com\r\nX-Long: 0123456789\r\n\r\n";
    let parts: Vec<_> = head.chunks(7).collect();
    for (i, part) in parts.iter().enumerate() {
        let taken = pool::with(pool::BufPool::taken);
        client.write_all(part).await.unwrap();
        if i + 1 == parts.len() {
            break;
        }
        // The part is read (the reader borrowed a buffer for it), then the reader waits for
        // the next one: this test runs only while the reader waits, and nothing is lent.
        until(|| pool::with(pool::BufPool::taken) > taken).await;
        assert_eq!(pool::with(pool::BufPool::lent), 0, "after part {i}");
    }
    let (got, pending) = read.await.unwrap();
    let got = got.unwrap();
    assert_eq!(
        (got.1.as_str(), got.2.as_slice()),
        ("/a", &b"split.example.com"[..])
    );
    assert_eq!(pending, 0);
    assert_eq!(pool::with(pool::BufPool::lent), 0);
}

#[tokio::test]
async fn a_head_over_the_limit_is_refused_431_and_one_under_it_grows_its_buffer() {
    let limits = Limits {
        max_head_bytes: 9000,
        ..Limits::default()
    };
    let (mut client, server) = pair().await;
    let long = "x".repeat(8000);
    let head = format!("GET / HTTP/1.1\r\nHost: r.example.com\r\nX-Long: {long}\r\n\r\n");
    client.write_all(head.as_bytes()).await.unwrap();
    let mut reader = HeadReader::new();
    let got = reader.next(&server, &limits, |h| h.head_len).await.unwrap();
    assert_eq!(
        got,
        head.len(),
        "a head larger than a small buffer fits a large one"
    );

    let long = "x".repeat(9000);
    let head = format!("GET / HTTP/1.1\r\nHost: r.example.com\r\nX-Long: {long}\r\n\r\n");
    let write = tokio::spawn(async move {
        let _ = client.write_all(head.as_bytes()).await;
        client
    });
    match reader.next(&server, &limits, |_| ()).await {
        Err(ReadError::Refused(r)) => {
            assert_eq!(r.error, RequestError::HeadTooLarge);
            assert_eq!((r.status(), r.close), (431, true));
        }
        other => panic!("{other:?}"),
    }
    drop(write.await.unwrap());
    assert_eq!(pool::with(pool::BufPool::lent), 0);
}

#[tokio::test]
async fn pipelined_requests_are_read_in_order_and_their_bytes_kept_only_until_used() {
    let (mut client, server) = pair().await;
    let second = b"GET /second HTTP/1.1\r\nHost: r.example.com\r\n\r\n";
    let mut both = b"GET /first HTTP/1.1\r\nHost: r.example.com\r\n\r\n".to_vec();
    both.extend_from_slice(second);
    client.write_all(&both).await.unwrap();
    // Nothing more will come: the second head is read from what is pending, not the socket.
    client.shutdown().await.unwrap();
    let mut reader = HeadReader::new();
    let first = reader.next(&server, &limits(), summary).await.unwrap();
    assert_eq!(first.1, "/first");
    assert_eq!(reader.pending(), second.len());
    let next = reader.next(&server, &limits(), summary).await.unwrap();
    assert_eq!(next.1, "/second");
    assert_eq!(reader.pending(), 0, "the carry is freed once used");
    match reader.next(&server, &limits(), summary).await {
        Err(ReadError::Closed) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_body_start_stays_pending_for_the_caller() {
    let (mut client, server) = pair().await;
    client
        .write_all(b"POST /x HTTP/1.1\r\nHost: r.example.com\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let mut reader = HeadReader::new();
    let got = reader.next(&server, &limits(), summary).await.unwrap();
    assert_eq!(got.3, Framing::Length(5));
    assert_eq!(reader.take_pending().as_deref(), Some(&b"hello"[..]));
    assert_eq!(reader.pending(), 0);
}

#[tokio::test]
async fn closes_and_malformed_heads() {
    let (client, server) = pair().await;
    drop(client);
    let mut reader = HeadReader::new();
    assert!(matches!(
        reader.next(&server, &limits(), |_| ()).await,
        Err(ReadError::Closed)
    ));

    let (mut client, server) = pair().await;
    client.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    drop(client);
    let mut reader = HeadReader::new();
    assert!(matches!(
        reader.next(&server, &limits(), |_| ()).await,
        Err(ReadError::ClosedMidHead)
    ));

    let (mut client, server) = pair().await;
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: r.example.com\r\nBad Name: x\r\n\r\n")
        .await
        .unwrap();
    let mut reader = HeadReader::new();
    match reader.next(&server, &limits(), |_| ()).await {
        Err(ReadError::Refused(r)) => assert_eq!((r.status(), r.close), (400, true)),
        other => panic!("{other:?}"),
    }
    // An HTTP/0.9 line is refused as soon as its line ends, not at the header timeout.
    let (mut client, server) = pair().await;
    client.write_all(b"GET /\r\n").await.unwrap();
    let mut reader = HeadReader::new();
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        reader.next(&server, &limits(), |_| ()),
    )
    .await
    .expect("answered without more bytes");
    assert!(matches!(refused, Err(ReadError::Refused(_))), "{refused:?}");
    drop(client);
}

/// What an idle client connection's task holds while it waits for the next request is this
/// future (every task pays for its largest state): the wait is on the socket's own readiness
/// slot (`poll_read_ready`), not a `readable()` future with its waiter stored in the task.
#[tokio::test]
async fn the_idle_wait_is_small() {
    let (_client, server) = pair().await;
    let mut reader = HeadReader::new();
    let l = limits();
    let next = reader.next(&server, &l, |_| ());
    let size = std::mem::size_of_val(&next);
    assert!(size <= 96, "HeadReader::next's future is {size} bytes");
}
