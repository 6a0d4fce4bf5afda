//! Slot types and caller-provided storage for the no-allocator build.

use crate::storage::ChunkId;
use crate::time::Millis;

use super::NO_CHUNK;

/// One segment of the send side (queued or in flight). Opaque; exposed only so that callers
/// can provide storage for it.
#[derive(Debug, Clone, Copy)]
pub struct SendSlot {
    pub(crate) chunk: ChunkId,
    pub(crate) len: u16,
    pub(crate) frg: u8,
    pub(crate) acked: bool,
    pub(crate) in_txq: bool,
    pub(crate) xmit: u32,
    pub(crate) ts: u32,
    pub(crate) rto: u32,
    pub(crate) resendts: Millis,
    pub(crate) fastack: u32,
    pub(crate) prev: Option<u32>,
    pub(crate) next: Option<u32>,
}

impl SendSlot {
    /// An unused slot.
    pub const EMPTY: SendSlot = SendSlot {
        chunk: NO_CHUNK,
        len: 0,
        frg: 0,
        acked: false,
        in_txq: false,
        xmit: 0,
        ts: 0,
        rto: 0,
        resendts: Millis(0),
        fastack: 0,
        prev: None,
        next: None,
    };
}

impl Default for SendSlot {
    fn default() -> Self {
        SendSlot::EMPTY
    }
}

/// One slot of the receive side. Opaque; exposed only so that callers can provide storage.
#[derive(Debug, Clone, Copy)]
pub struct RecvSlot {
    pub(crate) chunk: ChunkId,
    pub(crate) len: u16,
    pub(crate) frg: u8,
    pub(crate) present: bool,
}

impl RecvSlot {
    /// An unused slot.
    pub const EMPTY: RecvSlot = RecvSlot {
        chunk: NO_CHUNK,
        len: 0,
        frg: 0,
        present: false,
    };
}

impl Default for RecvSlot {
    fn default() -> Self {
        RecvSlot::EMPTY
    }
}

/// One pending acknowledgement (`sn`, echoed `ts`). Opaque.
#[derive(Debug, Clone, Copy, Default)]
pub struct AckEntry {
    pub(crate) sn: u32,
    pub(crate) ts: u32,
}

impl AckEntry {
    /// An unused entry.
    pub const EMPTY: AckEntry = AckEntry { sn: 0, ts: 0 };
}

/// Caller-provided memory for [`Kcp::with_buffers`](super::Kcp::with_buffers).
#[derive(Debug)]
pub struct Buffers<'a> {
    /// Send-side segments (queued plus in flight): at least `snd_wnd`.
    pub send: &'a mut [SendSlot],
    /// Receive-side slots: at least `2 * rcv_wnd`.
    pub recv: &'a mut [RecvSlot],
    /// Pending ACKs; when full, further ACKs are dropped and counted (the peer retransmits).
    pub acks: &'a mut [AckEntry],
    /// Transmit queue: at least as long as `send`.
    pub transmit: &'a mut [u32],
    /// Payload memory, cut into chunks of `chunk_len` bytes.
    pub arena: &'a mut [u8],
    /// Free list: one entry per chunk.
    pub free: &'a mut [u32],
    /// Bytes per payload chunk: at least the MSS.
    pub chunk_len: usize,
}

/// Storage sized at compile time, for microcontrollers: place one in a `static` (or on the
/// stack) and lend it to [`Kcp::with_buffers`](super::Kcp::with_buffers).
///
/// `SND` send slots, `RCV` receive slots (and ACK entries), `CHUNKS` payload chunks of `CHUNK`
/// bytes each. Memory is `CHUNKS * CHUNK` bytes of payload plus about `44 * SND + 20 * RCV`.
///
/// ```
/// use kcp_core::{Config, Kcp, Millis, StaticBuffers};
///
/// let config = Config { mtu: 548, snd_wnd: 8, rcv_wnd: 8, ..Config::fast3() };
/// let mut mem: StaticBuffers<16, 16, 24, 524> = StaticBuffers::new();
/// let kcp = Kcp::with_buffers(1, config, Millis(0), mem.buffers()).unwrap();
/// assert_eq!(kcp.mss(), 524);
/// ```
#[derive(Debug)]
pub struct StaticBuffers<
    const SND: usize,
    const RCV: usize,
    const CHUNKS: usize,
    const CHUNK: usize,
> {
    send: [SendSlot; SND],
    recv: [RecvSlot; RCV],
    acks: [AckEntry; RCV],
    transmit: [u32; SND],
    arena: [[u8; CHUNK]; CHUNKS],
    free: [ChunkId; CHUNKS],
}

impl<const SND: usize, const RCV: usize, const CHUNKS: usize, const CHUNK: usize>
    StaticBuffers<SND, RCV, CHUNKS, CHUNK>
{
    /// Zeroed storage (usable in a `static`).
    pub const fn new() -> Self {
        StaticBuffers {
            send: [SendSlot::EMPTY; SND],
            recv: [RecvSlot::EMPTY; RCV],
            acks: [AckEntry::EMPTY; RCV],
            transmit: [0; SND],
            arena: [[0; CHUNK]; CHUNKS],
            free: [0; CHUNKS],
        }
    }

    /// Lends the storage to an engine.
    pub fn buffers(&mut self) -> Buffers<'_> {
        Buffers {
            send: &mut self.send,
            recv: &mut self.recv,
            acks: &mut self.acks,
            transmit: &mut self.transmit,
            arena: self.arena.as_flattened_mut(),
            free: &mut self.free,
            chunk_len: CHUNK,
        }
    }
}

impl<const SND: usize, const RCV: usize, const CHUNKS: usize, const CHUNK: usize> Default
    for StaticBuffers<SND, RCV, CHUNKS, CHUNK>
{
    fn default() -> Self {
        Self::new()
    }
}
