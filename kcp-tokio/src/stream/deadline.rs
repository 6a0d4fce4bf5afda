//! Read and write timeouts (kcp-go's deadlines, as a duration per operation).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::error::KcpError;

/// A read or write timeout: armed when an operation first has to wait, cleared when one
/// completes. `None` waits for ever.
#[derive(Default)]
pub(super) struct Deadline {
    pub(super) timeout: Option<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Deadline {
    pub(super) fn new(timeout: Option<Duration>) -> Deadline {
        Deadline {
            timeout,
            sleep: None,
        }
    }

    pub(super) fn wrap<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<T>>,
        err: KcpError,
    ) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(v) => {
                self.sleep = None;
                Poll::Ready(v)
            }
            Poll::Pending => {
                let Some(t) = self.timeout else {
                    return Poll::Pending;
                };
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(t)));
                if sleep.as_mut().poll(cx).is_ready() {
                    self.sleep = None;
                    Poll::Ready(Err(err.into()))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}
