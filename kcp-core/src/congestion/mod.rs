//! Congestion control behind a small trait.
//!
//! The engine tells its controller about three events and asks it for a window; a new
//! controller is one new file implementing [`Controller`] plus a variant of [`Congestion`].

mod classic;
mod none;

pub use classic::Classic;
pub use none::NoControl;

/// What the engine tells a congestion controller and asks of it.
pub trait Controller {
    /// The congestion window in segments; `None` means no limit beyond the flow-control windows.
    fn window(&self) -> Option<u32>;
    /// `snd_una` advanced on input (new data acknowledged). `rmt_wnd` is the peer's window.
    fn on_ack(&mut self, mss: u32, rmt_wnd: u32);
    /// End of a flush: `fast` counts fast and early retransmissions in it, `lost` RTO
    /// retransmissions; `inflight` is `snd_nxt - snd_una`, `window` the effective window the
    /// flush used and `resend` the fast-retransmit threshold (`u32::MAX` when off).
    fn on_flush(&mut self, ev: FlushEvent);
}

/// What happened in one flush, for [`Controller::on_flush`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushEvent {
    /// Fast plus early retransmissions.
    pub fast: u32,
    /// RTO retransmissions.
    pub lost: u32,
    /// Segments in flight.
    pub inflight: u32,
    /// Effective window used by the flush.
    pub window: u32,
    /// Fast-retransmit threshold (`u32::MAX` when off).
    pub resend: u32,
    /// Maximum segment size.
    pub mss: u32,
}

/// The controllers the engine can run, chosen by configuration (`nc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Congestion {
    /// KCP's cwnd/ssthresh controller.
    Classic(Classic),
    /// No congestion window (`nc = 1`).
    None(NoControl),
}

impl Controller for Congestion {
    #[inline]
    fn window(&self) -> Option<u32> {
        match self {
            Congestion::Classic(c) => c.window(),
            Congestion::None(c) => c.window(),
        }
    }
    #[inline]
    fn on_ack(&mut self, mss: u32, rmt_wnd: u32) {
        match self {
            Congestion::Classic(c) => c.on_ack(mss, rmt_wnd),
            Congestion::None(c) => c.on_ack(mss, rmt_wnd),
        }
    }
    #[inline]
    fn on_flush(&mut self, ev: FlushEvent) {
        match self {
            Congestion::Classic(c) => c.on_flush(ev),
            Congestion::None(c) => c.on_flush(ev),
        }
    }
}
