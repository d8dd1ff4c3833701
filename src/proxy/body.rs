//! The body types of an answer: what the client receives ([`ClientBody`]: the shard's answer or
//! kansas's own), and the shard's answer body as relayed ([`Watched`]): streamed frame by frame,
//! with a failure after the response head (the shard died mid-answer) logged and counted. hyper
//! then closes the client connection, as nginx does; such an answer cannot be replayed. (What is
//! sent to the shard is [`super::upstream::UpstreamBody`].)

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::error::ProxyError;
use crate::metrics::Metrics;

/// What the client receives: the shard's streamed answer or kansas's own.
pub type ClientBody = Either<Watched, Full<Bytes>>;

pin_project_lite::pin_project! {
    /// An upstream body that reports its own failure.
    pub struct Watched {
        #[pin]
        inner: Incoming,
        metrics: Arc<Metrics>,
    }
}

impl Watched {
    pub fn new(inner: Incoming, metrics: Arc<Metrics>) -> Watched {
        Watched { inner, metrics }
    }
}

impl Body for Watched {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Err(e))) = &polled {
            this.metrics.error(ProxyError::UpstreamBodyFailed);
            tracing::warn!(error = %e, "shard failed after its response head: closing the client connection");
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
