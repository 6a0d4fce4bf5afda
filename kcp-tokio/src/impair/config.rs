//! What one direction of the proxy does to its datagrams, and the translation to kcp-core's
//! link model.

use std::fmt;
use std::io;

use kcp_core::sim::LinkConfig;

use super::MAX_DATAGRAM;

/// How one direction of the proxy impairs its datagrams.
///
/// [`Default`] is no impairment at all. See the [module docs](super) for the order in which
/// the settings apply.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpairConfig {
    /// Probability, in `0.0..=1.0`, that a datagram is dropped.
    pub loss: f64,
    /// Fixed one-way delay added to every datagram, in milliseconds.
    pub delay_ms: u32,
    /// Uniform jitter added to the delay, in `0..=jitter_ms` milliseconds: each datagram is
    /// held `delay_ms..=delay_ms + jitter_ms` (plus any reorder hold).
    pub jitter_ms: u32,
    /// Probability, in `0.0..=1.0`, that a datagram is held back an extra
    /// [`reorder_ms`](Self::reorder_ms), letting later ones overtake it.
    pub reorder: f64,
    /// Extra hold for reordered datagrams, in milliseconds.
    pub reorder_ms: u32,
    /// Probability, in `0.0..=1.0`, that a datagram is delivered twice (the copy with its
    /// own jitter and reorder hold).
    pub dup: f64,
    /// Bottleneck bandwidth in megabits (10^6 bits) per second, counting UDP payload bytes;
    /// `None` is unlimited. Must be finite and positive; the link model serves it in whole
    /// bytes per second (at least 1).
    pub rate_mbps: Option<f64>,
    /// Capacity of the bottleneck's drop-tail queue in payload bytes; only used with
    /// [`rate_mbps`](Self::rate_mbps).
    pub queue_bytes: usize,
    /// Seed of the PRNG that draws this direction's decisions (the down direction XORs it
    /// with [`DOWN_SEED_XOR`](super::DOWN_SEED_XOR)).
    pub seed: u64,
}

impl Default for ImpairConfig {
    /// No loss, delay, reordering or duplication, unlimited bandwidth, a 256 KiB queue (used
    /// only if a rate is set) and seed 0.
    fn default() -> Self {
        ImpairConfig {
            loss: 0.0,
            delay_ms: 0,
            jitter_ms: 0,
            reorder: 0.0,
            reorder_ms: 0,
            dup: 0.0,
            rate_mbps: None,
            queue_bytes: 256 * 1024,
            seed: 0,
        }
    }
}

impl ImpairConfig {
    /// Checks the settings: each probability must lie in `0.0..=1.0` (NaN is rejected) and a
    /// rate, if any, must be finite and greater than zero.
    pub fn validate(&self) -> Result<(), ImpairError> {
        for (field, value) in [
            ("loss", self.loss),
            ("reorder", self.reorder),
            ("dup", self.dup),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ImpairError::Probability { field, value });
            }
        }
        if let Some(rate) = self.rate_mbps {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(ImpairError::Rate(rate));
            }
        }
        Ok(())
    }
}

impl ImpairConfig {
    /// The link model's configuration for this direction: the same delays and
    /// probabilities, the rate in whole bytes per second (at least 1) and no MTU below the
    /// UDP maximum ([`MAX_DATAGRAM`]).
    pub fn link_config(&self) -> LinkConfig {
        LinkConfig {
            loss: self.loss,
            delay_ms: self.delay_ms,
            jitter_ms: self.jitter_ms,
            reorder: self.reorder,
            reorder_ms: self.reorder_ms,
            duplicate: self.dup,
            // 10^6 bits = 125,000 bytes; `as` saturates and a validated rate is positive.
            bandwidth: self
                .rate_mbps
                .map(|mbps| ((mbps * 125_000.0) as u64).max(1)),
            queue_bytes: self.queue_bytes,
            mtu: MAX_DATAGRAM,
        }
    }
}

/// Why an [`ImpairConfig`] was rejected.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ImpairError {
    /// A probability field was outside `0.0..=1.0` or NaN.
    Probability {
        /// The field's name: `"loss"`, `"reorder"` or `"dup"`.
        field: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// `rate_mbps` was zero, negative, infinite or NaN.
    Rate(f64),
}

impl fmt::Display for ImpairError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImpairError::Probability { field, value } => {
                write!(f, "{field} must be a probability in 0..=1, got {value}")
            }
            ImpairError::Rate(rate) => {
                write!(f, "rate_mbps must be finite and greater than 0, got {rate}")
            }
        }
    }
}

impl std::error::Error for ImpairError {}

impl From<ImpairError> for io::Error {
    fn from(e: ImpairError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}
