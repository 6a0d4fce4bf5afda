//! The round-trip estimator (kcp-go's: RFC 6298 gains, the interval as the variance floor)
//! and the retransmission timeout it gives.

use super::*;

impl Kcp<'_> {
    pub(super) fn update_rtt(&mut self, rtt: i32) {
        if self.srtt == 0 {
            self.srtt = rtt;
            self.rttvar = rtt >> 1;
        } else {
            let mut delta = rtt.wrapping_sub(self.srtt);
            self.srtt = self.srtt.wrapping_add(delta >> 3);
            delta = delta.wrapping_abs();
            if rtt < self.srtt.wrapping_sub(self.rttvar) {
                self.rttvar = self
                    .rttvar
                    .wrapping_add(delta.wrapping_sub(self.rttvar) >> 5);
            } else {
                self.rttvar = self
                    .rttvar
                    .wrapping_add(delta.wrapping_sub(self.rttvar) >> 2);
            }
        }
        let var4 = (self.rttvar.max(0) as u64) << 2;
        let rto = self.srtt.max(0) as u64 + var4.max(self.cfg.interval as u64);
        self.rx_rto = rto.clamp(self.cfg.min_rto as u64, RTO_MAX as u64) as u32;
    }
}
