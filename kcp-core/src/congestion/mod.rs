//! Congestion control behind a small trait.
//!
//! The engine tells its controller about a few events and asks it for a window. Two
//! controllers ship: [`Classic`] (KCP's cwnd/ssthresh, kcp-go v5.6.1's rules) and [`NoControl`]
//! (`nc`), chosen by [`Config::nc`](crate::Config::nc). Users plug in their own with
//! [`Kcp::set_controller`](crate::Kcp::set_controller): boxed with the `alloc` feature, or
//! borrowed for the engine's lifetime without an allocator. Whatever the controller says, the
//! engine never sends beyond the flow-control windows (`snd_wnd`, the peer's window), so every
//! controller stays wire-compatible.
//!
//! ```
//! use kcp_core::congestion::{Congestion, Controller, FlushEvent};
//! use kcp_core::{Config, Kcp, Millis, StaticBuffers};
//!
//! /// A fixed window of eight segments, halved while retransmissions happen.
//! #[derive(Debug)]
//! struct Fixed { wnd: u32 }
//! impl Controller for Fixed {
//!     fn window(&self) -> Option<u32> { Some(self.wnd) }
//!     fn on_ack(&mut self, _mss: u32, _rmt_wnd: u32) { self.wnd = 8; }
//!     fn on_flush(&mut self, ev: FlushEvent) {
//!         if ev.fast + ev.lost > 0 { self.wnd = 4; }
//!     }
//! }
//!
//! // Without an allocator the controller lives beside the engine's buffers (on the stack
//! // here, or in a `static`); with `alloc`, `Congestion::Boxed(Box::new(..))` does the same.
//! let mut fixed = Fixed { wnd: 8 };
//! let mut mem: StaticBuffers<32, 64, 48, 1376> = StaticBuffers::new();
//! let cfg = Config { snd_wnd: 16, rcv_wnd: 32, ..Config::fast3() };
//! let mut kcp = Kcp::with_buffers(1, cfg, Millis(0), mem.buffers()).unwrap();
//! kcp.set_controller(Congestion::Borrowed(&mut fixed));
//! kcp.send(&[0u8; 20_000]).unwrap();
//! let mut buf = [0u8; 1500];
//! let mut sent = 0;
//! while kcp.poll_transmit(Millis(0), &mut buf).is_some() { sent += 1; }
//! assert_eq!(sent, 8, "the controller's window bounds the first flight");
//! ```

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
    /// A round-trip sample in ms, taken from the newest ACK of a regular datagram (not from
    /// FEC-rebuilt ones). The default ignores it (KCP's controllers do not use RTT).
    fn on_rtt(&mut self, _rtt_ms: u32) {}
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

/// The controller an engine runs: one of the shipped ones (chosen by
/// [`Config::nc`](crate::Config::nc)), or the user's.
pub enum Congestion<'a> {
    /// KCP's cwnd/ssthresh controller.
    Classic(Classic),
    /// No congestion window (`nc = 1`).
    None(NoControl),
    /// A user's controller the engine borrows for its lifetime (works without an allocator).
    Borrowed(&'a mut (dyn Controller + Send)),
    /// A user's controller the engine owns (feature `alloc`).
    #[cfg(feature = "alloc")]
    Boxed(alloc::boxed::Box<dyn Controller + Send>),
}

impl core::fmt::Debug for Congestion<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Congestion::Classic(c) => f.debug_tuple("Classic").field(c).finish(),
            Congestion::None(_) => f.write_str("None"),
            Congestion::Borrowed(_) => f.write_str("Borrowed(..)"),
            #[cfg(feature = "alloc")]
            Congestion::Boxed(_) => f.write_str("Boxed(..)"),
        }
    }
}

impl Congestion<'_> {
    /// The shipped controller `nc` selects, in its initial state.
    pub fn for_nc(nc: bool) -> Self {
        if nc {
            Congestion::None(NoControl)
        } else {
            Congestion::Classic(Classic::opened())
        }
    }

    /// Whether this is one of the user's controllers (configuration does not replace it).
    pub fn is_custom(&self) -> bool {
        !matches!(self, Congestion::Classic(_) | Congestion::None(_))
    }

    #[inline]
    fn get(&self) -> &dyn Controller {
        match self {
            Congestion::Classic(c) => c,
            Congestion::None(c) => c,
            Congestion::Borrowed(c) => &**c,
            #[cfg(feature = "alloc")]
            Congestion::Boxed(c) => &**c,
        }
    }

    #[inline]
    fn get_mut(&mut self) -> &mut dyn Controller {
        match self {
            Congestion::Classic(c) => c,
            Congestion::None(c) => c,
            Congestion::Borrowed(c) => &mut **c,
            #[cfg(feature = "alloc")]
            Congestion::Boxed(c) => &mut **c,
        }
    }
}

impl Controller for Congestion<'_> {
    #[inline]
    fn window(&self) -> Option<u32> {
        match self {
            // The shipped controllers are matched directly so the common case stays inlined.
            Congestion::Classic(c) => c.window(),
            Congestion::None(c) => c.window(),
            other => other.get().window(),
        }
    }
    #[inline]
    fn on_ack(&mut self, mss: u32, rmt_wnd: u32) {
        match self {
            Congestion::Classic(c) => c.on_ack(mss, rmt_wnd),
            Congestion::None(c) => c.on_ack(mss, rmt_wnd),
            other => other.get_mut().on_ack(mss, rmt_wnd),
        }
    }
    #[inline]
    fn on_flush(&mut self, ev: FlushEvent) {
        match self {
            Congestion::Classic(c) => c.on_flush(ev),
            Congestion::None(c) => c.on_flush(ev),
            other => other.get_mut().on_flush(ev),
        }
    }
    #[inline]
    fn on_rtt(&mut self, rtt_ms: u32) {
        self.get_mut().on_rtt(rtt_ms);
    }
}
