//! The proxy's counters: shared atomics updated by its task, read as snapshots.

#[cfg(not(target_has_atomic = "64"))]
use portable_atomic::AtomicU64;
use std::fmt;
#[cfg(target_has_atomic = "64")]
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

/// Counters of one direction, as read by [`Proxy::stats`](super::Proxy::stats) or [`ProxyHandle::stats`](super::ProxyHandle::stats).
///
/// Every datagram received is, eventually, exactly one of forwarded, lost, dropped by the
/// queue or a send error; while datagrams are delayed in the proxy the sum falls short of
/// `received`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Datagrams that entered the proxy in this direction.
    pub received: u64,
    /// Datagrams sent on (duplicate copies are not counted here).
    pub forwarded: u64,
    /// Datagrams dropped by the loss setting.
    pub lost: u64,
    /// Extra copies sent by the duplication setting.
    pub duplicated: u64,
    /// Datagrams (or duplicate copies) held back by the reorder setting.
    pub reordered: u64,
    /// Datagrams dropped because the bandwidth queue was full.
    pub queue_drops: u64,
    /// Payload bytes sent on, duplicate copies included.
    pub bytes: u64,
    /// Datagrams (or copies) that could not be sent, or could not get an upstream socket.
    pub send_errors: u64,
}

/// A snapshot of a proxy's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Client → server.
    pub up: DirectionStats,
    /// Server → client.
    pub down: DirectionStats,
    /// Client mappings currently open.
    pub clients: u64,
    /// Client mappings closed for idleness or evicted for room.
    pub expired: u64,
}

#[derive(Default)]
pub(super) struct DirCounters {
    pub(super) received: AtomicU64,
    pub(super) forwarded: AtomicU64,
    pub(super) lost: AtomicU64,
    pub(super) duplicated: AtomicU64,
    pub(super) reordered: AtomicU64,
    pub(super) queue_drops: AtomicU64,
    pub(super) bytes: AtomicU64,
    pub(super) send_errors: AtomicU64,
}

impl DirCounters {
    pub(super) fn snapshot(&self) -> DirectionStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DirectionStats {
            received: l(&self.received),
            forwarded: l(&self.forwarded),
            lost: l(&self.lost),
            duplicated: l(&self.duplicated),
            reordered: l(&self.reordered),
            queue_drops: l(&self.queue_drops),
            bytes: l(&self.bytes),
            send_errors: l(&self.send_errors),
        }
    }
}

pub(super) fn bump(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) up: DirCounters,
    pub(super) down: DirCounters,
    pub(super) clients: AtomicU64,
    pub(super) expired: AtomicU64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> ProxyStats {
        ProxyStats {
            up: self.up.snapshot(),
            down: self.down.snapshot(),
            clients: self.clients.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt(f)
    }
}
