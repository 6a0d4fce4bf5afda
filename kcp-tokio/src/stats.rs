//! The socket counters of a driver, listed once: the public snapshot ([`SocketStats`]), the
//! atomics the driver bumps without a lock, the snapshot of them and the sum over a
//! listener's sockets all come from the one list below.

#[cfg(not(target_has_atomic = "64"))]
use portable_atomic::AtomicU64;
#[cfg(target_has_atomic = "64")]
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

/// How a counter of several sockets combines: a sum, or the largest.
fn sum(a: u64, b: u64) -> u64 {
    a.saturating_add(b)
}

fn max(a: u64, b: u64) -> u64 {
    a.max(b)
}

macro_rules! socket_counters {
    ($( $(#[$doc:meta])* $name:ident: $combine:ident, )*) => {
        /// Counters of one socket's driver (a listener's are summed over its sockets).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct SocketStats {
            $( $(#[$doc])* pub $name: u64, )*
        }

        impl SocketStats {
            /// Adds another socket's counters (the largest of the maxima).
            pub(crate) fn merge(&mut self, other: &SocketStats) {
                $( self.$name = $combine(self.$name, other.$name); )*
            }
        }

        /// The driver's live counters, bumped without the state lock.
        #[derive(Default)]
        pub(crate) struct Counters {
            $( pub(crate) $name: AtomicU64, )*
        }

        impl Counters {
            /// A snapshot of every counter.
            pub(crate) fn snapshot(&self) -> SocketStats {
                SocketStats { $( $name: self.$name.load(Ordering::Relaxed), )* }
            }
        }
    };
}

socket_counters! {
    /// Datagrams the kernel took.
    datagrams_sent: sum,
    /// Send system calls (`sendmmsg` or `sendto`).
    send_calls: sum,
    /// Times the kernel refused a send because its buffer was full (`EAGAIN`); what it
    /// refused waits in the backlog.
    send_would_block: sum,
    /// Datagrams dropped on the way out: the backlog was full, or the kernel refused them
    /// with an error (unreachable destination...). KCP retransmits them.
    send_drops: sum,
    /// Datagrams waiting in the backlog now.
    backlog: sum,
    /// Datagrams read from the socket.
    datagrams_received: sum,
    /// Datagrams dropped because they were larger than the receive buffer (never passed on
    /// truncated).
    recv_truncated: sum,
    /// Times the driver task woke up.
    wakeups: sum,
    /// Receive turns: times the driver read datagrams after the socket reported them or a
    /// receive hold ended (with a hold, at most one per hold; see `KcpConfig::receive_hold`).
    /// A hold's end that finds nothing is not a turn.
    receive_turns: sum,
    /// Sends that tasks (stream writes, reads, closes) left to the driver because it was in
    /// a receive turn: their datagrams went out with the turn's batch.
    batched_writes: sum,
    /// With the `perf` feature: the longest time the state lock was held, in ns (0 without).
    /// Every hold by the driver and the other callers is timed; of the streams' reads and
    /// writes (short holds, several per message), one in 16.
    lock_hold_max_ns: max,
    /// With the `perf` feature: total time the state lock was held, in ns; an estimate, as
    /// each timed read or write hold stands for the 16 it was picked from.
    lock_hold_total_ns: sum,
    /// With the `perf` feature: how often the state lock was taken.
    lock_acquisitions: sum,
}

/// Adds `n` to a counter.
pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listeners_counters_sum_and_keep_the_largest_maximum() {
        let a = Counters::default();
        bump(&a.datagrams_sent, 3);
        a.lock_hold_max_ns.store(70, Ordering::Relaxed);
        let b = Counters::default();
        bump(&b.datagrams_sent, 4);
        b.lock_hold_max_ns.store(50, Ordering::Relaxed);
        let mut t = a.snapshot();
        t.merge(&b.snapshot());
        assert_eq!(t.datagrams_sent, 7);
        assert_eq!(t.lock_hold_max_ns, 70);
    }
}
