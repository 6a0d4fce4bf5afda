//! Engine configuration: every knob kcp-go has at the ARQ layer, kcptun's presets, validation.

use core::fmt;

use crate::wire::HEADER_LEN;

/// Largest MTU accepted (kcp-go's session rejects larger values).
pub const MAX_MTU: u32 = 1500;
/// Smallest MTU accepted by ikcp.c and kcp-go.
pub const MIN_MTU: u32 = 50;
/// Largest send or receive window, in segments. Sequence arithmetic needs windows far below
/// 2^31; the `wnd` header field is 16 bits.
pub const MAX_WINDOW: u32 = 32768;
/// The most fragments one message may have (kcp-go's limit; ikcp.c allows 127).
pub const MAX_FRAGMENTS: usize = 255;

/// How the retransmission timeout grows after each timeout of the same segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backoff {
    /// kcp-go: `rto += rx_rto` (nodelay off) or `rto += rx_rto / 2` (nodelay on).
    Linear,
    /// ikcp.c 1.7: `rto += max(rto, rx_rto)` (doubling) with nodelay off, `rto += rto / 2` with
    /// nodelay on. (ikcp.c's linear rule for `nodelay >= 2` is [`Backoff::Linear`].)
    Exponential,
}

/// Engine configuration. Build one from a preset, adjust fields, then pass it to the engine,
/// which validates it ([`Config::validate`]).
///
/// Defaults follow kcp-go v5.6.1's library defaults; [`Config::normal`] .. [`Config::fast3`]
/// are kcptun's `--mode` presets; [`Config::ikcp`] selects ikcp.c 1.7's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Config {
    /// "nodelay" mode: minimum RTO 30 ms instead of 100 and gentler backoff.
    pub nodelay: bool,
    /// Timer flush interval in milliseconds (10..=5000).
    pub interval: u32,
    /// Fast retransmit after this many ACKs skip a segment (0 = off).
    pub resend: u32,
    /// Disable congestion control (kcp-go's `nc`): the window is `min(snd_wnd, rmt_wnd)`.
    pub nc: bool,
    /// Largest UDP payload, codec headers included (50..=1500).
    pub mtu: u32,
    /// Send window in segments.
    pub snd_wnd: u32,
    /// Receive window in segments.
    pub rcv_wnd: u32,
    /// Stream mode: messages are merged into full segments and boundaries are not kept.
    pub stream: bool,
    /// Send ACKs as soon as a datagram is processed instead of at the next timer flush.
    pub ack_nodelay: bool,
    /// Our extension: send pending ACKs at once, without waiting for the timer flush, as soon
    /// as this many are waiting (0: only at the timer flush or with `ack_nodelay`, as kcp-go).
    /// On fast paths a sender's window then opens while the receiver's interval runs, instead
    /// of once per interval (kcp-go's window-per-interval cap: `snd_wnd` segments per
    /// `interval`). Default 32. The ACK segments are the same; only their timing changes.
    pub ack_threshold: u32,
    /// Do not flush on every `send` (bulk mode); data leaves at the next timer flush or when the
    /// send window is full.
    pub write_delay: bool,
    /// Lower bound of the retransmission timeout in milliseconds.
    pub min_rto: u32,
    /// A segment transmitted this many times marks the link dead.
    pub dead_link: u32,
    /// Bytes reserved at the front of every datagram for codec headers (FEC 8, crypto 20).
    /// A [`Session`](crate::Session) (and so an endpoint) sets it from its codec layers and
    /// ignores what is here; set it only when driving a bare engine under framing of your own.
    pub header_room: u32,
    /// Bytes reserved at the end of every datagram for codec trailers (an AEAD tag). Like
    /// `header_room`, set by a `Session` from its layers.
    pub trailer_room: u32,
    /// RTO backoff rule.
    pub backoff: Backoff,
    /// kcp-go's early retransmit: resend a segment that any later ACK skipped when a flush
    /// moved no new data. ikcp.c has none.
    pub early_retransmit: bool,
    /// Segments that may wait in the send queue beyond the send window.
    pub send_queue: u32,
    /// Our extension, 0 (off) by default: fast and early retransmission of a segment wait
    /// until it has been out for `srtt + retransmit_hold_ms`. With FEC, a lost packet is
    /// usually rebuilt by the receiver a little later than the ACKs of the packets after it
    /// arrive; holding back gives the rebuilt copy's ACK time to arrive and saves the
    /// retransmission (see `docs/tuning.md`). RTO retransmission is unaffected.
    pub retransmit_hold_ms: u32,
    /// Our extension, 0 (off) by default: most bytes of new data per second this session
    /// sends. Paced at the timer's granularity: each flush admits new segments only while a
    /// token bucket holds bytes for them, refilled at this rate and holding one `interval`'s
    /// worth (at least one segment), so a backlog leaves evenly, not in bursts.
    /// Retransmissions are not counted. Local to the sender; the peer sees a slower sender.
    pub rate_limit: u32,
    /// Our extension, off by default: pace new data at a rate measured from the peer's
    /// acknowledgements, within an in-flight bound of that rate times `min_rtt + interval`,
    /// so a large window does not leave in one burst that waits in the receiver's queue longer
    /// than the retransmission timeout; and until the peer has been heard, send one segment
    /// only. Only *when* segments leave changes, never their content (see `docs/tuning.md`,
    /// "Pacing"). Retransmissions are not paced.
    pub pacing: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nodelay: false,
            interval: 100,
            resend: 0,
            nc: false,
            mtu: 1400,
            snd_wnd: 32,
            rcv_wnd: 32,
            stream: false,
            ack_nodelay: false,
            ack_threshold: 32,
            write_delay: false,
            min_rto: 100,
            dead_link: 20,
            header_room: 0,
            trailer_room: 0,
            backoff: Backoff::Linear,
            early_retransmit: true,
            send_queue: MAX_FRAGMENTS as u32,
            retransmit_hold_ms: 0,
            rate_limit: 0,
            pacing: false,
        }
    }
}

/// A configuration value the engine cannot run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// MTU outside `MIN_MTU..=MAX_MTU`.
    Mtu(u32),
    /// The MTU leaves no room for a segment payload after the header and codec room.
    NoPayloadRoom {
        /// Configured MTU.
        mtu: u32,
        /// Header plus codec room that must fit in it.
        overhead: u32,
    },
    /// Interval outside 10..=5000 ms.
    Interval(u32),
    /// A window of zero (stalls) or above `MAX_WINDOW`.
    Window(u32),
    /// A minimum RTO of zero or above 60 s.
    MinRto(u32),
    /// A dead-link count of zero.
    DeadLink,
    /// Caller-provided storage too small for the configuration.
    Storage(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Mtu(m) => write!(f, "mtu {m} outside {MIN_MTU}..={MAX_MTU}"),
            ConfigError::NoPayloadRoom { mtu, overhead } => write!(
                f,
                "mtu {mtu} leaves no payload room after {overhead} bytes of headers"
            ),
            ConfigError::Interval(i) => write!(f, "interval {i} ms outside 10..=5000"),
            ConfigError::Window(w) => write!(f, "window {w} outside 1..={MAX_WINDOW}"),
            ConfigError::MinRto(r) => write!(f, "minimum RTO {r} ms outside 1..=60000"),
            ConfigError::DeadLink => write!(f, "dead-link count must be at least 1"),
            ConfigError::Storage(what) => write!(f, "storage too small: {what}"),
        }
    }
}

impl core::error::Error for ConfigError {}

impl Config {
    fn preset(nodelay: bool, interval: u32, resend: u32, nc: bool) -> Config {
        Config {
            nodelay,
            interval,
            resend,
            nc,
            min_rto: if nodelay { 30 } else { 100 },
            stream: true,
            ..Config::default()
        }
    }

    /// kcptun `--mode normal`: nodelay 0, interval 40, resend 2, nc 1; stream mode.
    pub fn normal() -> Config {
        Config::preset(false, 40, 2, true)
    }
    /// kcptun `--mode fast` (kcptun's default): nodelay 0, interval 30, resend 2, nc 1.
    pub fn fast() -> Config {
        Config::preset(false, 30, 2, true)
    }
    /// kcptun `--mode fast2`: nodelay 1, interval 20, resend 2, nc 1.
    pub fn fast2() -> Config {
        Config::preset(true, 20, 2, true)
    }
    /// kcptun `--mode fast3`: nodelay 1, interval 10, resend 2, nc 1.
    pub fn fast3() -> Config {
        Config::preset(true, 10, 2, true)
    }
    /// A preset by kcptun's name (`normal`, `fast`, `fast2`, `fast3`).
    pub fn by_name(name: &str) -> Option<Config> {
        match name {
            "normal" => Some(Config::normal()),
            "fast" => Some(Config::fast()),
            "fast2" => Some(Config::fast2()),
            "fast3" => Some(Config::fast3()),
            _ => None,
        }
    }

    /// ikcp.c 1.7's behaviour: exponential backoff, no early retransmit, receive window of at
    /// least 128 (so a C peer's messages of up to 127 fragments can always be assembled).
    pub fn ikcp() -> Config {
        Config {
            rcv_wnd: 128,
            backoff: Backoff::Exponential,
            early_retransmit: false,
            ..Config::default()
        }
    }

    /// ikcp.c's `ikcp_nodelay(nodelay, interval, resend, nc)` and kcp-go's `NoDelay`, with the
    /// minimum RTO following `nodelay` (30 or 100 ms). Values are checked by `validate`.
    pub fn with_nodelay(mut self, nodelay: bool, interval: u32, resend: u32, nc: bool) -> Config {
        self.nodelay = nodelay;
        self.interval = interval;
        self.resend = resend;
        self.nc = nc;
        self.min_rto = if nodelay { 30 } else { 100 };
        self
    }

    /// Sets both windows (kcp-go's `WndSize`; ikcp.c mode keeps `rcv_wnd >= 128`).
    pub fn with_windows(mut self, snd_wnd: u32, rcv_wnd: u32) -> Config {
        self.snd_wnd = snd_wnd;
        self.rcv_wnd = if self.backoff == Backoff::Exponential && !self.early_retransmit {
            rcv_wnd.max(128)
        } else {
            rcv_wnd
        };
        self
    }

    /// Largest segment payload: `mtu - 24 - header_room - trailer_room`.
    pub fn mss(&self) -> u32 {
        self.mtu
            .saturating_sub(HEADER_LEN as u32 + self.header_room + self.trailer_room)
    }

    /// Checks that the engine can run with these values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return Err(ConfigError::Mtu(self.mtu));
        }
        let overhead = HEADER_LEN as u32 + self.header_room.saturating_add(self.trailer_room);
        if self.mtu <= overhead {
            return Err(ConfigError::NoPayloadRoom {
                mtu: self.mtu,
                overhead,
            });
        }
        if !(10..=5000).contains(&self.interval) {
            return Err(ConfigError::Interval(self.interval));
        }
        for w in [self.snd_wnd, self.rcv_wnd] {
            if w == 0 || w > MAX_WINDOW {
                return Err(ConfigError::Window(w));
            }
        }
        if self.min_rto == 0 || self.min_rto > 60_000 {
            return Err(ConfigError::MinRto(self.min_rto));
        }
        if self.dead_link == 0 {
            return Err(ConfigError::DeadLink);
        }
        if self.send_queue > MAX_WINDOW {
            return Err(ConfigError::Window(self.send_queue));
        }
        Ok(())
    }

    /// Segments the send side may hold (in flight plus queued).
    #[cfg(feature = "alloc")]
    pub(crate) fn send_capacity(&self) -> usize {
        (self.snd_wnd + self.send_queue) as usize
    }

    /// Slots the receive side needs: the receive queue plus the receive window.
    pub(crate) fn recv_capacity(&self) -> usize {
        2 * self.rcv_wnd as usize
    }

    /// ACK list bound: one entry per PUSH that can arrive between two flushes is plenty; more
    /// are dropped (and counted) rather than stored, the peer retransmits.
    #[cfg(feature = "alloc")]
    pub(crate) fn ack_capacity(&self) -> usize {
        (2 * self.rcv_wnd as usize).max(64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_kcptun() {
        let table = [
            (Config::normal(), false, 40),
            (Config::fast(), false, 30),
            (Config::fast2(), true, 20),
            (Config::fast3(), true, 10),
        ];
        for (c, nodelay, interval) in table {
            assert_eq!(
                (c.nodelay, c.interval, c.resend, c.nc),
                (nodelay, interval, 2, true)
            );
            assert_eq!(c.min_rto, if nodelay { 30 } else { 100 });
            c.validate().unwrap();
        }
        assert_eq!(Config::by_name("fast3"), Some(Config::fast3()));
        assert_eq!(Config::by_name("turbo"), None);
    }

    #[test]
    fn kcp_go_defaults() {
        let c = Config::default();
        assert_eq!(
            (c.mtu, c.snd_wnd, c.rcv_wnd, c.interval),
            (1400, 32, 32, 100)
        );
        assert_eq!(c.mss(), 1376);
        let with_codecs = Config {
            header_room: 28,
            ..c
        };
        assert_eq!(with_codecs.mss(), 1348);
    }

    #[test]
    fn validation_rejects_values_that_wrap_zero_or_stall() {
        let c = Config::default();
        // kcp-go v5.6.1's SetMtu(50..52) with 28 reserved bytes wraps or zeroes the MSS.
        for mtu in [50, 51, 52] {
            let bad = Config {
                mtu,
                header_room: 28,
                ..c
            };
            assert!(matches!(
                bad.validate(),
                Err(ConfigError::NoPayloadRoom { .. })
            ));
        }
        assert_eq!(
            Config { mtu: 1501, ..c }.validate(),
            Err(ConfigError::Mtu(1501))
        );
        assert_eq!(
            Config { snd_wnd: 0, ..c }.validate(),
            Err(ConfigError::Window(0))
        );
        assert_eq!(
            Config { rcv_wnd: 0, ..c }.validate(),
            Err(ConfigError::Window(0))
        );
        assert_eq!(
            Config { interval: 0, ..c }.validate(),
            Err(ConfigError::Interval(0))
        );
        assert_eq!(
            Config { min_rto: 0, ..c }.validate(),
            Err(ConfigError::MinRto(0))
        );
        assert_eq!(
            Config { dead_link: 0, ..c }.validate(),
            Err(ConfigError::DeadLink)
        );
        assert!(Config {
            mtu: 53,
            header_room: 28,
            ..c
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn ikcp_keeps_receive_window_of_128() {
        let c = Config::ikcp().with_windows(32, 32);
        assert_eq!(c.rcv_wnd, 128);
        assert_eq!(c.backoff, Backoff::Exponential);
        assert!(!c.early_retransmit);
    }
}
