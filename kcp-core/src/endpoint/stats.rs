//! Endpoint-wide counters: every kcp-go v5.6.1 SNMP counter, by kcp-go's names.

use crate::session::Session;

/// kcp-go's `Snmp` for one endpoint (kcp-spec 6.5), plus `refused`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// Bytes accepted by `send` (`BytesSent`).
    pub bytes_sent: u64,
    /// Bytes returned by `recv` (`BytesReceived`).
    pub bytes_received: u64,
    /// Most sessions at once (`MaxConn`).
    pub max_conn: u64,
    /// Sessions opened by `connect` (`ActiveOpens`).
    pub active_opens: u64,
    /// Sessions opened by peers (`PassiveOpens`).
    pub passive_opens: u64,
    /// Live sessions (`CurrEstab`).
    pub curr_estab: u64,
    /// Datagrams dropped before reaching a session: no session, too short (`InErrs`).
    pub in_errs: u64,
    /// Integrity failures, endpoint or session layers (`InCsumErrors`).
    pub in_csum_errors: u64,
    /// Datagrams the engines rejected (`KCPInErrors`).
    pub kcp_in_errors: u64,
    /// Datagrams received (`InPkts`).
    pub in_pkts: u64,
    /// Datagrams sent (`OutPkts`).
    pub out_pkts: u64,
    /// Segments parsed (`InSegs`).
    pub in_segs: u64,
    /// Segments emitted (`OutSegs`).
    pub out_segs: u64,
    /// Bytes received (`InBytes`).
    pub in_bytes: u64,
    /// Bytes sent (`OutBytes`).
    pub out_bytes: u64,
    /// All retransmissions (`RetransSegs`).
    pub retrans_segs: u64,
    /// Fast retransmissions (`FastRetransSegs`).
    pub fast_retrans_segs: u64,
    /// Early retransmissions (`EarlyRetransSegs`).
    pub early_retrans_segs: u64,
    /// RTO retransmissions (`LostSegs`).
    pub lost_segs: u64,
    /// Duplicate or out-of-window PUSH segments (`RepeatSegs`).
    pub repeat_segs: u64,
    /// FEC parity datagrams received (`FECParityShards`).
    pub fec_parity_shards: u64,
    /// Rebuilt datagrams with a bad size field (`FECErrs`).
    pub fec_errs: u64,
    /// Rebuilt datagrams the engines accepted (`FECRecovered`).
    pub fec_recovered: u64,
    /// Data shards evicted before their group completed (`FECShortShards`).
    pub fec_short_shards: u64,
    /// Sessions refused: backlog or session limit full (ours).
    pub refused: u64,
}

impl EndpointStats {
    /// kcp-go's `Header()`: the counter names in `to_slice` order.
    pub const HEADER: [&'static str; 24] = [
        "BytesSent",
        "BytesReceived",
        "MaxConn",
        "ActiveOpens",
        "PassiveOpens",
        "CurrEstab",
        "InErrs",
        "InCsumErrors",
        "KCPInErrors",
        "InPkts",
        "OutPkts",
        "InSegs",
        "OutSegs",
        "InBytes",
        "OutBytes",
        "RetransSegs",
        "FastRetransSegs",
        "EarlyRetransSegs",
        "LostSegs",
        "RepeatSegs",
        "FECParityShards",
        "FECErrs",
        "FECRecovered",
        "FECShortShards",
    ];

    /// kcp-go's `ToSlice()` order.
    pub fn to_slice(&self) -> [u64; 24] {
        [
            self.bytes_sent,
            self.bytes_received,
            self.max_conn,
            self.active_opens,
            self.passive_opens,
            self.curr_estab,
            self.in_errs,
            self.in_csum_errors,
            self.kcp_in_errors,
            self.in_pkts,
            self.out_pkts,
            self.in_segs,
            self.out_segs,
            self.in_bytes,
            self.out_bytes,
            self.retrans_segs,
            self.fast_retrans_segs,
            self.early_retrans_segs,
            self.lost_segs,
            self.repeat_segs,
            self.fec_parity_shards,
            self.fec_errs,
            self.fec_recovered,
            self.fec_short_shards,
        ]
    }

    /// Counters of two endpoints together (gauges `max_conn` and `curr_estab` add up too, as
    /// for sockets sharing a port).
    pub fn merged(&self, o: &EndpointStats) -> EndpointStats {
        let mut m = *self;
        m.add(o);
        m.max_conn = self.max_conn + o.max_conn;
        m.curr_estab = self.curr_estab + o.curr_estab;
        m
    }

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
        let ss = s.stats();
        self.in_csum_errors += ss.in_csum_errors;
        self.kcp_in_errors += ss.kcp_in_errors;
        self.fec_recovered += ss.fec_recovered;
        s.visit_counters(&mut |name, v| match name {
            "fec_parity_shards" => self.fec_parity_shards += v,
            "fec_errs" => self.fec_errs += v,
            "fec_short_shards" => self.fec_short_shards += v,
            _ => {}
        });
    }

    /// Adds another set of counters (gauges `max_conn`/`curr_estab` are not summed).
    pub(super) fn add(&mut self, o: &EndpointStats) {
        let (max, curr) = (self.max_conn, self.curr_estab);
        let mine = self.to_slice();
        let theirs = o.to_slice();
        let mut sum = [0u64; 24];
        for i in 0..24 {
            sum[i] = mine[i] + theirs[i];
        }
        *self = EndpointStats::from_slice(sum, self.refused + o.refused);
        self.max_conn = max;
        self.curr_estab = curr;
    }

    fn from_slice(v: [u64; 24], refused: u64) -> Self {
        EndpointStats {
            bytes_sent: v[0],
            bytes_received: v[1],
            max_conn: v[2],
            active_opens: v[3],
            passive_opens: v[4],
            curr_estab: v[5],
            in_errs: v[6],
            in_csum_errors: v[7],
            kcp_in_errors: v[8],
            in_pkts: v[9],
            out_pkts: v[10],
            in_segs: v[11],
            out_segs: v[12],
            in_bytes: v[13],
            out_bytes: v[14],
            retrans_segs: v[15],
            fast_retrans_segs: v[16],
            early_retrans_segs: v[17],
            lost_segs: v[18],
            repeat_segs: v[19],
            fec_parity_shards: v[20],
            fec_errs: v[21],
            fec_recovered: v[22],
            fec_short_shards: v[23],
            refused,
        }
    }
}
