//! No congestion control (kcp-go's `nc = 1`, kcptun's presets).

use super::{Controller, FlushEvent};

/// Sends as much as the flow-control windows allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NoControl;

impl Controller for NoControl {
    fn window(&self) -> Option<u32> {
        None
    }
    fn on_ack(&mut self, _mss: u32, _rmt_wnd: u32) {}
    fn on_flush(&mut self, _ev: FlushEvent) {}
}
