//! Window probing: when the peer advertises a zero window, ask it (WASK) after an RTO and
//! then with a growing back-off until it opens, and answer its asks (WINS) at the next flush.

use super::*;

impl Kcp<'_> {
    /// Zero-window probing, at each full flush (identical in kcp-go and ikcp.c apart from the
    /// first wait): schedules or sends a WASK while the remote window is 0, and moves pending
    /// asks and tells into what this flush emits.
    pub(super) fn schedule_probe(&mut self, now: Millis) {
        if self.rmt_wnd == 0 {
            if self.probe_wait == 0 {
                // kcp-go and ikcp.c wait 7 s for the first probe; a writer stalls that long
                // whenever a window update is lost or never sent. Probe after an RTO (at least
                // PROBE_FIRST), then back off by half each time as they do.
                self.probe_wait = self.rx_rto.clamp(PROBE_FIRST, PROBE_INIT);
                self.ts_probe = now + self.probe_wait;
            } else if now.reached(self.ts_probe) {
                self.probe_wait = self.probe_wait.max(PROBE_FIRST);
                self.probe_wait += self.probe_wait / 2;
                self.probe_wait = self.probe_wait.min(PROBE_LIMIT);
                self.ts_probe = now + self.probe_wait;
                self.probe |= ASK_SEND;
            }
        } else {
            self.ts_probe = Millis(0);
            self.probe_wait = 0;
        }
        self.emit_probe |= self.probe;
        self.probe = 0;
    }
}
