//! Endpoint-wide counters: every kcp-go v5.6.1 SNMP counter, by kcp-go's names, plus the
//! endpoint's own (admission, memory). The set is defined once, in the table below; the
//! struct, kcp-go's header and slice order, and summing are derived from it.

use crate::session::Session;

use super::{Endpoint, PeerAddr};

macro_rules! endpoint_stats {
    (
        kcp_go { $($(#[$kd:meta])* $kf:ident = $kname:literal,)* }
        ours { $($(#[$od:meta])* $of:ident,)* }
        gauges { $($gf:ident),* }
    ) => {
        /// kcp-go's `Snmp` for one endpoint (`docs/protocol.md`, "Sessions and listeners"),
        /// then this endpoint's own counters.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct EndpointStats {
            $($(#[$kd])* pub $kf: u64,)*
            $($(#[$od])* pub $of: u64,)*
        }

        impl EndpointStats {
            /// kcp-go's `Header()`: the names of its counters in [`to_slice`](Self::to_slice)
            /// order.
            pub const HEADER: [&'static str; 24] = [$($kname),*];

            /// kcp-go's `ToSlice()`: its 24 counters in kcp-go's order.
            pub fn to_slice(&self) -> [u64; 24] {
                [$(self.$kf),*]
            }

            /// Adds every counter of `o` except the gauges.
            pub(super) fn add(&mut self, o: &EndpointStats) {
                let keep = ($(self.$gf),*);
                $(self.$kf += o.$kf;)*
                $(self.$of += o.$of;)*
                ($(self.$gf),*) = keep;
            }

            /// Counters of two endpoints together; gauges (`max_conn`, `curr_estab`,
            /// `half_open`, `pooled_bytes`, `recv_bytes`) add up too, as for sockets sharing a port.
            pub fn merged(&self, o: &EndpointStats) -> EndpointStats {
                let mut m = *self;
                m.add(o);
                $(m.$gf = self.$gf + o.$gf;)*
                m
            }
        }
    };
}

endpoint_stats! {
    kcp_go {
        /// Bytes accepted by `send` (`BytesSent`).
        bytes_sent = "BytesSent",
        /// Bytes returned by `recv` (`BytesReceived`).
        bytes_received = "BytesReceived",
        /// Most sessions at once (`MaxConn`).
        max_conn = "MaxConn",
        /// Sessions opened by `connect` (`ActiveOpens`).
        active_opens = "ActiveOpens",
        /// Sessions opened by peers (`PassiveOpens`).
        passive_opens = "PassiveOpens",
        /// Live sessions (`CurrEstab`).
        curr_estab = "CurrEstab",
        /// Datagrams dropped before reaching a session: no session, too short, not a
        /// plausible first datagram (`InErrs`).
        in_errs = "InErrs",
        /// Integrity failures, endpoint or session layers (`InCsumErrors`).
        in_csum_errors = "InCsumErrors",
        /// Datagrams the engines rejected (`KCPInErrors`).
        kcp_in_errors = "KCPInErrors",
        /// Datagrams received (`InPkts`).
        in_pkts = "InPkts",
        /// Datagrams sent (`OutPkts`).
        out_pkts = "OutPkts",
        /// Segments parsed (`InSegs`).
        in_segs = "InSegs",
        /// Segments emitted (`OutSegs`).
        out_segs = "OutSegs",
        /// Bytes received (`InBytes`).
        in_bytes = "InBytes",
        /// Bytes sent (`OutBytes`).
        out_bytes = "OutBytes",
        /// All retransmissions (`RetransSegs`).
        retrans_segs = "RetransSegs",
        /// Fast retransmissions (`FastRetransSegs`).
        fast_retrans_segs = "FastRetransSegs",
        /// Early retransmissions (`EarlyRetransSegs`).
        early_retrans_segs = "EarlyRetransSegs",
        /// RTO retransmissions (`LostSegs`).
        lost_segs = "LostSegs",
        /// Duplicate or out-of-window PUSH segments (`RepeatSegs`).
        repeat_segs = "RepeatSegs",
        /// FEC parity datagrams received (`FECParityShards`).
        fec_parity_shards = "FECParityShards",
        /// Rebuilt datagrams with a bad size field (`FECErrs`).
        fec_errs = "FECErrs",
        /// Rebuilt datagrams the engines accepted (`FECRecovered`).
        fec_recovered = "FECRecovered",
        /// Data shards evicted before their group completed (`FECShortShards`).
        fec_short_shards = "FECShortShards",
    }
    ours {
        /// First flights or confirmations refused: backlog, session limit or a per-host
        /// session limit full, or half-open entries too young to evict filling the host's
        /// share or the table.
        refused,
        /// Datagrams for an unknown conversation that could not be a peer's first flight
        /// (counted in `in_errs` too).
        not_first_flight,
        /// Half-open sessions now (gauge).
        half_open,
        /// Half-open entries whose peer never answered (timed out or evicted).
        unconfirmed,
        /// Of those, evicted to make room for a newer first flight (SYN cache).
        half_open_evicted,
        /// Answers to a probe of an entry evicted before they came (the host's answer
        /// time learns from them).
        half_open_late_answers,
        /// Of those, answers to a probe that went out, which opened their session (as the
        /// entry's confirmation would have, the first flight's segments left for the peer
        /// to retransmit).
        half_open_late_opens,
        /// First flights refused while entries too young to evict filled their host's
        /// share or the table, answered with a probe all the same because their host's
        /// peers had answered probes before: the answer opens the session as a late answer
        /// does (`half_open_late_opens`).
        half_open_refusal_probes,
        /// Datagrams for a half-open entry that were not its peer's answer and that the
        /// entry did not keep (no room in its byte budget, or nothing new without inner
        /// layers; dropped unacknowledged, the peer retransmits them), and parity from an
        /// address with a session and a half-open entry that neither owns.
        half_open_dropped,
        /// Datagrams for a half-open entry that were not its peer's answer and that the
        /// entry kept within its byte budget, whole (with inner layers such as FEC) or as
        /// their new segments, parity included (taken by the session once confirmed).
        half_open_held,
        /// Peers whose answer to a probe came while the accept backlog was full (and only
        /// it), counted once each: the entry remembers the answer and its session opens as
        /// soon as the application accepts one (or the backlog otherwise has room), instead
        /// of when the peer answers the next probe a second later. Not counted in `refused`.
        half_open_deferred,
        /// Datagrams longer than `max_datagram`, dropped before parsing (in `in_errs` too).
        oversize,
        /// Copies of a remembered first flight or confirmation (in `in_errs` too).
        replayed,
        /// Probes not sent to an unconfirmed address, and datagrams of a migrated session
        /// not sent to its new address before the peer answered there: they would have
        /// exceeded three times the bytes received from it.
        amplification_limited,
        /// Peer-opened sessions the application did not accept in time.
        not_accepted,
        /// Payload bytes the endpoint keeps for its sessions to reuse (gauge).
        pooled_bytes,
        /// PUSH segments refused, unacknowledged, while the receive budget was spent.
        recv_over_budget,
        /// Receive-side heap bytes of all sessions, counted against the budget (gauge).
        recv_bytes,
        /// Packets without a conversation id (FEC parity) dropped because no single session
        /// on their address owned their group.
        parity_unrouted,
        /// Keepalive window probes sent to quiet peers.
        keepalives,
        /// Datagrams a replay-protected layer dropped as replays (a session's
        /// `crypto_replays` counter).
        replays,
        /// Sessions moved to a new peer address (`EndpointConfig::migration`).
        migrations,
        /// Datagrams of a live session from another address that did not move it: not
        /// authenticated by a demux layer, a copy in the replay record or refused by the
        /// session's layers, not fresh, or its conversation id is that of several sessions.
        migrations_refused,
    }
    gauges { max_conn, curr_estab, half_open, pooled_bytes, recv_bytes }
}

impl EndpointStats {
    /// Adds a session's own counters (engine, session, layers).
    pub(super) fn absorb_session(&mut self, s: &Session<'_>) {
        let k = s.kcp().stats();
        self.bytes_sent += k.bytes_sent;
        self.bytes_received += k.bytes_received;
        self.in_segs += k.in_segs;
        self.out_segs += k.out_segs;
        self.retrans_segs += k.retrans_segs;
        self.fast_retrans_segs += k.fast_retrans_segs;
        self.early_retrans_segs += k.early_retrans_segs;
        self.lost_segs += k.lost_segs;
        self.repeat_segs += k.repeat_segs;
        self.recv_over_budget += k.in_over_budget;
        let ss = s.stats();
        self.in_csum_errors += ss.in_csum_errors;
        self.kcp_in_errors += ss.kcp_in_errors;
        self.fec_recovered += ss.fec_recovered;
        let c = s.layer_counters();
        self.fec_parity_shards += c.fec_parity_shards;
        self.fec_errs += c.fec_errs;
        self.fec_short_shards += c.fec_short_shards;
        self.replays += c.crypto_replays;
    }
}

impl<A: PeerAddr> Endpoint<A> {
    /// kcp-go's SNMP counters for the whole endpoint: its own packet counters plus the sum of
    /// every live and ended session's.
    pub fn stats(&self) -> EndpointStats {
        let mut s = self.stats;
        s.add(&self.retired);
        for slot in self.slots.iter().flatten() {
            s.absorb_session(&slot.session);
        }
        self.gauges(&mut s);
        s
    }

    /// The counters the endpoint keeps itself, without the sessions' sums: datagrams in and
    /// out, admission (`refused` and the rest), errors found before a session took a
    /// datagram, and the gauges. What each session counts (bytes, segments,
    /// retransmissions, FEC recoveries, its own checksum failures) reads zero here, live or
    /// ended; [`stats`](Self::stats) adds it, walking every session. This one costs no walk,
    /// so a large server can poll it often (to log refusals, say) without holding up its
    /// input for the walk over cold sessions.
    pub fn own_stats(&self) -> EndpointStats {
        let mut s = self.stats;
        self.gauges(&mut s);
        s
    }

    fn gauges(&self, s: &mut EndpointStats) {
        s.half_open = self.half.len() as u64;
        s.pooled_bytes = self.cache.heap_bytes() as u64;
        s.recv_bytes = self.recv_total as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::EndpointStats;

    #[test]
    fn header_and_slice_follow_kcp_go_order() {
        let s = EndpointStats {
            bytes_sent: 1,
            fec_short_shards: 24,
            ..EndpointStats::default()
        };
        let v = s.to_slice();
        assert_eq!((v[0], v[23]), (1, 24));
        assert_eq!(EndpointStats::HEADER[0], "BytesSent");
        assert_eq!(EndpointStats::HEADER[23], "FECShortShards");
    }

    #[test]
    fn merging_sums_counters_and_gauges() {
        let a = EndpointStats {
            in_pkts: 3,
            curr_estab: 2,
            unconfirmed: 1,
            ..EndpointStats::default()
        };
        let m = a.merged(&a);
        assert_eq!((m.in_pkts, m.curr_estab, m.unconfirmed), (6, 4, 2));
        let mut b = a;
        b.add(&a);
        assert_eq!((b.in_pkts, b.curr_estab), (6, 2), "add keeps gauges");
    }
}
