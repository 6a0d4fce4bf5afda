//! ARQ-level counters: the KCP part of kcp-go's SNMP, plus counters for dropped input.

/// Counters of one engine. All wrap on overflow; they only ever increase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Segments parsed from input (kcp-go `InSegs`).
    pub in_segs: u64,
    /// Segment headers emitted: ACK, WASK, WINS, PUSH incl. retransmissions (`OutSegs`).
    pub out_segs: u64,
    /// Datagrams emitted by `poll_transmit`.
    pub out_datagrams: u64,
    /// Bytes emitted by `poll_transmit` (KCP bytes, without codec headers).
    pub out_bytes: u64,
    /// Datagrams handed to `handle_datagram`.
    pub in_datagrams: u64,
    /// Bytes handed to `handle_datagram`.
    pub in_bytes: u64,
    /// ... of which datagrams rebuilt by a codec (`handle_recovered`).
    pub in_recovered: u64,
    /// All retransmissions: lost + fast + early (`RetransSegs`).
    pub retrans_segs: u64,
    /// Fast retransmissions (`FastRetransSegs`).
    pub fast_retrans_segs: u64,
    /// Early retransmissions (`EarlyRetransSegs`).
    pub early_retrans_segs: u64,
    /// Retransmissions after a timeout (`LostSegs`).
    pub lost_segs: u64,
    /// Regular PUSH segments that were duplicates or outside the window (`RepeatSegs`).
    pub repeat_segs: u64,
    /// ACK segments received.
    pub acks_in: u64,
    /// ACK segments emitted.
    pub acks_out: u64,
    /// Datagrams rejected by `handle_datagram` (`KCPInErrors`), whatever the reason.
    pub in_errors: u64,
    /// ... of which: conversation id did not match.
    pub in_conv_mismatch: u64,
    /// ... of which: truncated header or payload overrunning the datagram.
    pub in_truncated: u64,
    /// ... of which: unknown command byte.
    pub in_unknown_cmd: u64,
    /// PUSH segments with a payload larger than this engine's segment size, dropped.
    pub in_oversized: u64,
    /// PUSH segments dropped because no payload buffer was free (the peer retransmits).
    pub in_no_buffer: u64,
    /// PUSH segments refused, unacknowledged, because the owner's receive-memory budget was
    /// spent ([`Kcp::set_receive_limited`](crate::Kcp::set_receive_limited)); the peer
    /// retransmits them.
    pub in_over_budget: u64,
    /// ACK segments whose fast-ack counting stopped at the per-datagram bound (a datagram
    /// packed with ACKs beyond many holes).
    pub fastack_skipped: u64,
    /// ACKs not queued because the ACK list was full (the peer retransmits).
    pub ack_list_full: u64,
    /// FEC-rebuilt PUSH segments too old to acknowledge explicitly (covered by `una` instead,
    /// so the sender takes no inflated RTT sample).
    pub stale_recovered: u64,
    /// Zero-length messages received and skipped (ikcp.c `ikcp_send(.., 0)`;
    /// `docs/protocol.md`, hazard H6).
    pub empty_messages: u64,
    /// Bytes accepted by `send`.
    pub bytes_sent: u64,
    /// Bytes returned by `recv`.
    pub bytes_received: u64,
}
