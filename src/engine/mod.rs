//! The event-path engine (issue 13, `docs/engine.md`): kansas's own HTTP/1 connection handling
//! on top of the I/O-free framing core [`crate::h1`], built so that a connection that waits holds
//! no buffer. These are its first I/O pieces, **not wired into the proxy yet** (the hyper path
//! in [`crate::proxy`] still serves): the per-thread buffer pool ([`pool`]), reading one request
//! head from a client socket without holding a buffer while idle ([`head`]), and the per-thread
//! pool of idle keep-alive connections to the shards ([`upstream`]). Each serving thread owns
//! its pools (no locks); values are moved in and out between awaits, so futures stay `Send`.

pub mod head;
pub mod pool;
pub mod upstream;
