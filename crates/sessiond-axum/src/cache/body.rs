//! Reading an answer's body for the cache without ever holding more than
//! the entry limit: past it, what was read goes to the client followed by
//! the rest, unbuffered.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt as _;

pub(crate) enum Collected {
    /// The whole body, within the limit.
    Whole(Bytes),
    /// Over the limit, a trailer, or an error: the body to send instead
    /// (what was read, then the rest as it comes).
    Partial(Body),
}

pub(crate) async fn collect_limited(mut body: Body, limit: usize) -> Collected {
    let mut read: Vec<u8> = Vec::new();
    loop {
        match body.frame().await {
            None => return Collected::Whole(Bytes::from(read)),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if read.len() + data.len() <= limit => read.extend_from_slice(&data),
                Ok(data) => {
                    read.extend_from_slice(&data);
                    return Collected::Partial(Body::new(Prefixed::new(read, None, body)));
                }
                Err(frame) => {
                    return Collected::Partial(Body::new(Prefixed::new(
                        read,
                        Some(Ok(frame)),
                        body,
                    )));
                }
            },
            Some(Err(e)) => {
                return Collected::Partial(Body::new(Prefixed::new(read, Some(Err(e)), body)));
            }
        }
    }
}

/// Bytes already read, a frame already taken, then the rest of the body.
struct Prefixed {
    prefix: Option<Bytes>,
    taken: Option<Result<Frame<Bytes>, axum::Error>>,
    rest: Body,
}

impl Prefixed {
    fn new(prefix: Vec<u8>, taken: Option<Result<Frame<Bytes>, axum::Error>>, rest: Body) -> Self {
        Self {
            prefix: (!prefix.is_empty()).then(|| Bytes::from(prefix)),
            taken,
            rest,
        }
    }
}

impl HttpBody for Prefixed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        if let Some(taken) = self.taken.take() {
            return Poll::Ready(Some(taken));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.rest.size_hint();
        let extra = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let lower = hint.lower() + extra;
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + extra);
        }
        hint.set_lower(lower);
        hint
    }
}
