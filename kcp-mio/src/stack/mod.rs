//! The codec stack and settings below both adapters, sans IO.
//!
//! [`KcpConfig`] holds everything a kcptun-style command line sets: the engine's knobs
//! ([`Config`](kcp_core::Config) with kcptun's presets), FEC shards, the cipher and key, custom layers, the
//! lifecycle of sessions (idle timeout, shutdown linger, how long closed conversations are
//! remembered), the endpoint's admission limits (backlog, session cap, half-open limits) and
//! the socket options. [`KcpConfig::endpoint_config`] turns it into kcp-core's
//! [`EndpointConfig`](kcp_core::endpoint::EndpointConfig), whose layer factory builds each session's stack in kcp-go's order:
//!
//! ```text
//! innermost                                             outermost
//! [ Fec (or Fec::receive_only) , custom layers... , crypto ]
//!                                                    ^ demux_layers = 1 with crypto
//! ```
//!
//! What does not depend on the session (the FEC parameters, the derived key) is built once per
//! configuration in a [`Stack`], which every endpoint made from it shares;
//! [`Stack::session_layers`] adds the per-session state (FEC group
//! buffers, a cipher with its own nonce generator). Nothing here knows a runtime: socket
//! options go through [`socket2::SockRef`], which any std, mio or tokio socket converts to.

use std::fmt;
use std::io;
use std::sync::Arc;

use kcp_core::Layer;
use kcp_crypto::{AeadKind, CipherKind, Pass};

/// A custom layer factory: builds one session's custom layers, innermost first.
pub type CustomLayers = Arc<dyn Fn() -> Vec<Layer> + Send + Sync>;

/// Builds one session's congestion controller ([`KcpConfig::congestion`]).
pub type CongestionMaker =
    Arc<dyn Fn() -> Box<dyn kcp_core::congestion::Controller + Send> + Send + Sync>;

mod config;
mod socket;
#[cfg(test)]
mod tests;

pub use config::{default_recv_budget, KcpConfig, Timeouts, DEFAULT_WINDOW};
pub use socket::{receive_buffer_cap, set_dscp, set_sockbuf};

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// A random conversation id for a session this side opens, from the OS's random source (as
/// kcp-go draws it from `crypto/rand`): ids of different clients must not collide at a
/// server, and an off-path attacker must not guess them.
pub fn random_conv() -> io::Result<u32> {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).map_err(|e| io::Error::other(format!("OS random source: {e}")))?;
    Ok(u32::from_le_bytes(b))
}

/// Where kcp-go's packet encryption runs (see [`KcpConfig::endpoint_config_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptPlacement {
    /// In each session's codec stack, opened by the endpoint before demultiplexing.
    Sessions,
    /// In the adapter, around the endpoint; sessions reserve the header only.
    Adapter,
}

/// Makes the packet-encryption layers an adapter applies around its endpoint: each
/// [`layer`](Self::layer) shares the endpoint's key schedule and has its own nonce stream.
#[derive(Clone)]
pub struct AdapterCrypt {
    cipher: SharedCipher,
}

impl fmt::Debug for AdapterCrypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdapterCrypt")
            .field("cipher", &self.cipher.kind)
            .finish()
    }
}

impl AdapterCrypt {
    /// A layer for one direction of the adapter (one to seal, one to open).
    pub fn layer(&self) -> kcp_crypto::PacketCrypt<Arc<kcp_crypto::PacketKey>> {
        self.cipher.layer()
    }
}

/// The FEC part shared by every session of an endpoint: the code's matrix.
#[derive(Clone, Debug)]
struct SharedFec {
    code: kcp_fec::FecCode,
}

impl SharedFec {
    fn new(ds: usize, ps: usize) -> io::Result<SharedFec> {
        let code =
            kcp_fec::FecCode::new(ds, ps).map_err(|e| invalid(format!("FEC {ds}/{ps}: {e}")))?;
        Ok(SharedFec { code })
    }

    /// One session's FEC layer (its own group buffers, the shared matrix). Its groups are
    /// numbered from a random point, so that the sessions of one socket keep apart the
    /// groups a peer's endpoint routes their parity by.
    fn session_layer(&self) -> Layer {
        use rand_core::Rng;
        let mut fec = kcp_fec::Fec::with_code(self.code.clone(), kcp_fec::FecConfig::default());
        fec.set_next_seqid(rand_core::UnwrapErr(getrandom::SysRng).next_u32());
        Box::new(fec)
    }
}

/// Which packet encryption a configuration names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CryptMode {
    /// kcp-go v5.6.1's layout ([`kcp_crypto::PacketCrypt`]).
    Packet(CipherKind),
    /// Upstream kcp-go's AEAD layout ([`kcp_crypto::AeadCrypt`]).
    Aead(AeadKind),
    /// This crate's replay-protected AEAD ([`kcp_crypto::ReplayAeadCrypt`]).
    Replay(AeadKind),
}

impl CryptMode {
    fn from_name(name: &str) -> io::Result<CryptMode> {
        if let Some(aead) = name.strip_suffix("-replay") {
            if let Ok(k) = AeadKind::from_name(aead) {
                return Ok(CryptMode::Replay(k));
            }
        }
        if let Ok(k) = AeadKind::from_name(name) {
            return Ok(CryptMode::Aead(k));
        }
        CipherKind::from_name(name)
            .map(CryptMode::Packet)
            .map_err(|e| invalid(format!("--crypt {name}: {e}")))
    }

    fn name(self) -> &'static str {
        match self {
            CryptMode::Packet(k) => k.name(),
            CryptMode::Aead(k) => k.name(),
            CryptMode::Replay(AeadKind::Aes128Gcm) => "aes-128-gcm-replay",
            CryptMode::Replay(AeadKind::ChaCha20Poly1305) => "chacha20-poly1305-replay",
        }
    }
}

/// The key of an authenticated mode, shared by every session of an endpoint.
#[derive(Clone)]
enum SharedAead {
    Aead(Arc<kcp_crypto::AeadKey>),
    Replay(Arc<kcp_crypto::ReplayKey>),
}

impl SharedAead {
    fn new(mode: CryptMode, pass: &Pass) -> Option<SharedAead> {
        match mode {
            CryptMode::Packet(_) => None,
            CryptMode::Aead(kind) => Some(SharedAead::Aead(Arc::new(
                kcp_crypto::AeadKey::from_pass(kind, pass, &mut os_rng()),
            ))),
            CryptMode::Replay(kind) => Some(SharedAead::Replay(Arc::new(
                kcp_crypto::ReplayKey::from_pass(kind, pass),
            ))),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            SharedAead::Aead(k) => CryptMode::Aead(k.kind()).name(),
            SharedAead::Replay(k) => CryptMode::Replay(k.kind()).name(),
        }
    }

    /// One session's layer: the shared key; its own nonces (and, replay-protected, its own
    /// sender id, sequence numbers and replay window).
    fn session_layer(&self) -> Layer {
        match self {
            SharedAead::Aead(k) => Box::new(kcp_crypto::AeadCrypt::with_key(Arc::clone(k))),
            SharedAead::Replay(k) => Box::new(kcp_crypto::ReplayAeadCrypt::with_key(
                Arc::clone(k),
                &mut os_rng(),
            )),
        }
    }
}

/// The OS random source. It does not fail on the systems we run on; if it did, this panics
/// rather than send predictable nonces.
fn os_rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// The cipher part shared by every session of an endpoint: the key schedule and the nonce
/// key, built once (a Twofish schedule alone is 4.5 KiB).
#[derive(Clone)]
struct SharedCipher {
    kind: CipherKind,
    key: Arc<kcp_crypto::PacketKey>,
}

impl SharedCipher {
    fn new(kind: CipherKind, pass: &Pass) -> SharedCipher {
        let mut rng = os_rng();
        let cipher = kcp_crypto::BlockCrypt::from_pass(kind, pass);
        SharedCipher {
            kind,
            key: Arc::new(kcp_crypto::PacketKey::new(cipher, &mut rng)),
        }
    }

    fn layer(&self) -> kcp_crypto::PacketCrypt<Arc<kcp_crypto::PacketKey>> {
        kcp_crypto::PacketCrypt::with_key(Arc::clone(&self.key))
    }

    /// One session's cipher layer: the shared key, its own nonce stream.
    fn session_layer(&self) -> Layer {
        Box::new(self.layer())
    }
}

/// The part of a codec stack built once per configuration ([`KcpConfig`] keeps it for the
/// endpoints made from it); [`session_layers`](Self::session_layers)
/// builds each session's layers from it in kcp-go's order.
#[derive(Clone)]
pub struct Stack {
    fec: Option<SharedFec>,
    custom: Option<CustomLayers>,
    crypt: Option<SharedCipher>,
    /// An authenticated mode (always in the sessions: a replay window is per session).
    aead: Option<SharedAead>,
    /// The adapter encrypts: sessions reserve the cipher's header only.
    deferred: bool,
    /// The FEC layer of sessions with FEC off: receive-only, sharing one (1, 1) code.
    receive_only: kcp_fec::FecCode,
    demux_layers: usize,
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("fec", &self.fec)
            .field("custom", &self.custom.is_some())
            .field("cipher", &self.crypt.as_ref().map(|c| c.kind))
            .field("aead", &self.aead.as_ref().map(SharedAead::name))
            .field("deferred", &self.deferred)
            .field("demux_layers", &self.demux_layers)
            .finish()
    }
}

impl Stack {
    /// Builds the shared part of `config`'s stack; refuses FEC shards kcp-fec cannot use.
    pub fn new(config: &KcpConfig) -> io::Result<Stack> {
        let fec = match config.fec {
            Some((ds, ps)) => Some(SharedFec::new(ds, ps)?),
            None => None,
        };
        let crypt = match &config.crypt {
            Some((CryptMode::Packet(kind), pass)) => Some(SharedCipher::new(*kind, pass)),
            _ => None,
        };
        let aead = config
            .crypt
            .as_ref()
            .and_then(|(mode, pass)| SharedAead::new(*mode, pass));
        let receive_only =
            kcp_fec::FecCode::new(1, 1).map_err(|e| invalid(format!("FEC 1/1: {e}")))?;
        let demux_layers = if crypt.is_some() || aead.is_some() {
            1
        } else {
            config.custom_demux
        };
        Ok(Stack {
            fec,
            custom: config.custom.clone(),
            crypt,
            aead,
            deferred: false,
            receive_only,
            demux_layers,
        })
    }

    /// Leaves encryption to the adapter: sessions reserve the cipher's header only (kcp-core's
    /// [`Reserve`](kcp_core::Reserve), which the endpoint opens before demultiplexing as it
    /// would the cipher), and the returned maker builds the adapter's layers (`None` without
    /// encryption, and with an authenticated mode, which stays in the sessions and the
    /// endpoint: a replay window belongs to its session).
    pub fn defer_crypt(&mut self) -> Option<AdapterCrypt> {
        let cipher = self.crypt.clone()?;
        self.deferred = true;
        Some(AdapterCrypt { cipher })
    }

    /// How many outermost layers the endpoint opens before demultiplexing: 1 with encryption
    /// (the conversation id is encrypted), else what the custom layers asked for.
    pub fn demux_layers(&self) -> usize {
        self.demux_layers
    }

    /// One session's layers, innermost first: FEC (or a receive-only FEC decoder, as kcp-go
    /// with FEC off), the custom layers, the cipher.
    pub fn session_layers(&self) -> Vec<Layer> {
        let mut v: Vec<Layer> = Vec::with_capacity(3);
        match &self.fec {
            Some(f) => v.push(f.session_layer()),
            // Like kcp-go with FEC off: decode a peer that sends FEC, send plain KCP. It holds
            // no decoder until an FEC packet arrives.
            None => v.push(Box::new(kcp_fec::Fec::receive_only_with_code(
                self.receive_only.clone(),
                kcp_fec::FecConfig::default(),
            ))),
        }
        if let Some(c) = &self.custom {
            v.extend(c());
        }
        if let Some(c) = &self.crypt {
            if self.deferred {
                v.push(Box::new(kcp_core::Reserve::new(c.kind.header_len(), 0)));
            } else {
                v.push(c.session_layer());
            }
        }
        if let Some(a) = &self.aead {
            v.push(a.session_layer());
        }
        v
    }
}
