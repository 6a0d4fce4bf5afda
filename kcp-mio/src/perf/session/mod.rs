//! The kcp-perf protocol's per-session state machines over a kcp-mio [`Endpoint`].

mod client;
mod server;

pub use client::ClientSession;
pub use server::ServerSession;

use std::io;
use std::time::Instant;

use super::*;
use crate::{Endpoint, SessionId};

/// What `drive` says.
#[derive(Debug)]
pub enum Status {
    /// Waiting for the session to become readable or writable (or, client, for
    /// [`ClientSession::wake_at`]).
    Pending,
    /// The test finished and was verified. Close the session gracefully
    /// ([`Endpoint::close_after_flush`]) so its last bytes are acknowledged.
    Done(Report),
    /// The test failed (bad data, bad header, the session ended).
    Failed(io::Error),
}

// ---- session I/O --------------------------------------------------------------------------

/// Pending output of a session, not yet accepted by `send`. In message mode it goes out in
/// messages of at most `piece` bytes. Its buffer is reused.
#[derive(Debug, Default)]
struct Out {
    buf: Vec<u8>,
    off: usize,
    piece: usize,
}

impl Out {
    fn is_empty(&self) -> bool {
        self.off >= self.buf.len()
    }

    /// Empties the buffer for new output in messages of at most `piece` bytes.
    fn start(&mut self, piece: usize) -> &mut Vec<u8> {
        self.buf.clear();
        self.off = 0;
        self.piece = piece.max(1);
        &mut self.buf
    }

    /// New output of one message of its own (message mode).
    fn message(&mut self, data: &[u8]) {
        self.start(data.len()).extend_from_slice(data);
    }

    /// Sends what is pending; `Ok(true)` when nothing is left.
    fn flush(&mut self, ep: &mut Endpoint, id: SessionId, message: bool) -> io::Result<bool> {
        while !self.is_empty() {
            let end = if message {
                self.buf.len().min(self.off + self.piece)
            } else {
                self.buf.len()
            };
            match ep.send(id, &self.buf[self.off..end]) {
                Ok(n) => self.off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// Reads once: `Ok(None)` when nothing is ready. Stream mode reads at most `max` bytes;
/// message mode reads one message, which must not exceed `max`.
fn read(
    ep: &mut Endpoint,
    id: SessionId,
    buf: &mut [u8],
    message: bool,
    max: usize,
) -> io::Result<Option<usize>> {
    let want = if message {
        buf.len()
    } else {
        max.min(buf.len())
    };
    if want == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty read buffer (drive needs READ_BUF bytes)",
        ));
    }
    match ep.recv(id, &mut buf[..want]) {
        Ok(0) => Ok(None),
        Ok(n) if message && n > max => Err(bad(format!(
            "a message of {n} bytes, expected at most {max}"
        ))),
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) if message && e.kind() == io::ErrorKind::InvalidInput => Err(bad(format!(
            "a message of {} bytes, larger than the {} byte read buffer",
            ep.peek_size(id).unwrap_or(0),
            buf.len()
        ))),
        Err(e) => Err(e),
    }
}

fn session_counters(ep: &Endpoint, id: SessionId) -> (u64, u64) {
    ep.session_info(id)
        .map(|s| (s.kcp.retrans_segs, s.session.fec_recovered))
        .unwrap_or((0, 0))
}

/// The message size for bulk data: one segment.
fn mss(ep: &Endpoint, id: SessionId) -> usize {
    ep.session_info(id).map_or(READ_BUF, |s| s.mss.max(1))
}

/// A per-session seed: the conversation id and the clock.
fn seed(ep: &Endpoint, id: SessionId) -> u64 {
    let conv = ep.session_info(id).map_or(0, |s| u64::from(s.conv));
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (conv << 32) ^ t
}

fn seconds(start: Option<Instant>, end: Option<Instant>) -> f64 {
    match (start, end) {
        (Some(s), Some(e)) => e.saturating_duration_since(s).as_secs_f64(),
        _ => 0.0,
    }
}
