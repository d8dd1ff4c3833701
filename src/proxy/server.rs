//! The accept loops: one per serving thread, each a single-threaded event loop that takes
//! connections from the shared listener (as nginx's worker processes do) and keeps its own
//! connections to the shards. HTTP/1.1 with bounded header size and header-read time, a
//! process-wide cap on concurrent connections (accepting pauses at the cap; the kernel backlog
//! holds the rest), and a graceful stop that lets in-flight requests finish up to the drain
//! timeout.

use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{handle, Proxy};
use crate::limits::out_of_fds;
use crate::logging::throttle::Throttle;

/// Connection-level limits of the client listener.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub drain: Duration,
    /// Which engine serves each connection.
    pub engine: crate::config::Engine,
}

/// Serves the listener on [`Proxy::threads`] serving threads until `shutdown` resolves; then
/// every thread stops accepting and waits for its open connections to finish (idle keep-alive
/// connections close at once) up to `limits.drain`. Returns whether everything finished within
/// the drain timeout.
pub async fn serve(
    listener: StdListener,
    proxy: Arc<Proxy>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<bool> {
    listener.set_nonblocking(true)?;
    let stop = CancellationToken::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut finished = Vec::with_capacity(proxy.threads());
    for index in 0..proxy.threads() {
        let (done, finish) = tokio::sync::oneshot::channel();
        let (proxy, permits, thread_stop) = (proxy.clone(), permits.clone(), stop.clone());
        let spawned = listener.try_clone().and_then(|listener| {
            std::thread::Builder::new()
                .name(format!("kansas-serve-{index}"))
                .spawn(move || {
                    let drained =
                        serve_thread(index, listener, proxy, limits, permits, thread_stop);
                    let _ = done.send(drained);
                })
        });
        if let Err(e) = spawned {
            // Stop the threads already serving before reporting the failure.
            stop.cancel();
            for finish in finished {
                let _ = finish.await;
            }
            return Err(e);
        }
        finished.push(finish);
    }
    drop(listener);
    shutdown.await;
    tracing::info!(
        open_connections = proxy.metrics.connections().get(),
        "stopped accepting; draining"
    );
    stop.cancel();
    let mut drained = true;
    for finish in finished {
        drained &= finish.await.unwrap_or(false);
    }
    Ok(drained)
}

/// One serving thread: its event loop, its accept loop, its drain.
fn serve_thread(
    index: usize,
    listener: StdListener,
    proxy: Arc<Proxy>,
    limits: ServerLimits,
    permits: Arc<Semaphore>,
    stop: CancellationToken,
) -> bool {
    super::set_serving_thread(index);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(thread = index, error = %e, "serving thread: cannot start its event loop");
            return false;
        }
    };
    runtime.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(thread = index, error = %e, "serving thread: cannot watch the listener");
                return false;
            }
        };
        accept_loop(listener, proxy, limits, permits, stop).await
    })
}

async fn accept_loop(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    limits: ServerLimits,
    permits: Arc<Semaphore>,
    stop: CancellationToken,
) -> bool {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    // The kansas engine's connections, and the signal that closes the idle ones at a drain.
    let engine = (limits.engine == crate::config::Engine::Kansas).then(|| {
        let engine = crate::engine::Engine::new(proxy.clone(), limits.max_header_bytes);
        engine.init_thread();
        tokio::spawn(sweep_shard_connections());
        engine
    });
    let tracker = tokio_util::task::TaskTracker::new();
    let idle_close = CancellationToken::new();
    let mut pause = FIRST_ACCEPT_PAUSE;
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
            _ = stop.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(conn) => {
                    pause = FIRST_ACCEPT_PAUSE;
                    conn
                }
                Err(e) => {
                    drop(permit);
                    accept_failed(&e, &mut pause, &stop).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        if let Some(engine) = &engine {
            proxy.metrics.connections().inc();
            let open = Open {
                metrics: proxy.metrics.clone(),
                _permit: permit,
            };
            // Spawned as it is: a wrapping `async move { conn.await; ... }` would store the
            // connection's future twice for its whole life.
            tracker.spawn(crate::engine::conn::serve(
                engine.clone(),
                stream,
                peer,
                idle_close.clone(),
                open,
            ));
            continue;
        }
        let proxy_for_conn = proxy.clone();
        let service = service_fn(move |req| handle(proxy_for_conn.clone(), req, peer));
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        let metrics = proxy.metrics.clone();
        metrics.connections().inc();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                log_connection_error(&e, peer);
            }
            metrics.connections().dec();
            drop(permit);
        });
    }
    drop(listener);
    drain(&proxy, limits.drain, graceful, tracker, idle_close).await
}

/// A serving thread's drain: every answer from now on closes its connection, so busy clients
/// reconnect (to the next generation, or find the listener closed) between requests, never in
/// the middle of one; after a grace, idle keep-alive connections are closed; requests in flight
/// (long-polls, parked GETs) finish, up to the drain timeout. Whether all finished in time.
async fn drain(
    proxy: &Proxy,
    drain: Duration,
    graceful: GracefulShutdown,
    tracker: tokio_util::task::TaskTracker,
    idle_close: CancellationToken,
) -> bool {
    proxy.set_draining();
    let deadline = tokio::time::Instant::now() + drain;
    let grace = tokio::time::Instant::now() + DRAIN_GRACE.min(drain);
    while proxy.metrics.connections().get() > 0 && tokio::time::Instant::now() < grace {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    idle_close.cancel();
    tracker.close();
    tokio::select! {
        _ = async { tokio::join!(graceful.shutdown(), tracker.wait()) } => true,
        _ = tokio::time::sleep_until(deadline) => {
            tracing::warn!(drain_secs = drain.as_secs_f64(), "drain timeout: closing remaining connections");
            false
        }
    }
}

/// An open engine connection: counted while it lives, and holding its place under
/// `proxy.max_connections`.
struct Open {
    metrics: Arc<crate::metrics::Metrics>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.metrics.connections().dec();
    }
}

/// Closes the serving thread's idle shard connections past their timeout, twice a timeout.
async fn sweep_shard_connections() {
    loop {
        tokio::time::sleep(crate::engine::shard::IDLE_TIMEOUT / 2).await;
        crate::engine::shard::sweep_thread();
    }
}

/// The first pause after a failed accept; each failure in a row doubles it, up to
/// [`MAX_ACCEPT_PAUSE`].
const FIRST_ACCEPT_PAUSE: Duration = Duration::from_millis(20);
const MAX_ACCEPT_PAUSE: Duration = Duration::from_secs(1);
/// At most one "accept failed" line per this interval.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// After a failed accept. Out of descriptors (EMFILE, ENFILE), the listener stays readable (the
/// connection waits in the backlog), so the loop pauses, longer each time in a row, until
/// connections close; and logs at most once per [`ACCEPT_LOG_EVERY`], however often it fails.
async fn accept_failed(e: &std::io::Error, pause: &mut Duration, stop: &CancellationToken) {
    static LOG: LazyLock<Throttle> = LazyLock::new(|| Throttle::new(ACCEPT_LOG_EVERY));
    if let Some(unlogged) = LOG.tick() {
        if out_of_fds(e) {
            tracing::error!(error = %e, unlogged, "accept failed: kansas is out of file descriptors; accepting pauses until connections close (raise the open-file limit or lower proxy.max_connections)");
        } else {
            tracing::error!(error = %e, unlogged, "accept failed");
        }
    }
    tokio::select! {
        _ = tokio::time::sleep(*pause) => {}
        _ = stop.cancelled() => {}
    }
    *pause = (*pause * 2).min(MAX_ACCEPT_PAUSE);
}

/// How long a draining process lets busy keep-alive clients leave on their own before closing
/// idle connections.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

fn log_connection_error(e: &hyper::Error, peer: SocketAddr) {
    if e.is_timeout() {
        tracing::debug!(%peer, "client connection timed out reading the request head");
    } else if e.is_incomplete_message() || e.is_canceled() {
        tracing::debug!(%peer, error = %e, "client connection closed");
    } else {
        tracing::info!(%peer, error = %e, "client connection error");
    }
}

/// Binds a listening socket with a deep backlog (bursts of thousands of reconnecting clients).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}
