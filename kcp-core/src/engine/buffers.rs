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
    /// Zeroed storage (usable in a `static`, which then lands in `.bss` and costs no flash
    /// for an initial image). The engine writes every slot before it reads it, so the slots
    /// start as all-zero bytes rather than as [`SendSlot::EMPTY`] and [`RecvSlot::EMPTY`]
    /// (whose chunk field is not zero).
    pub const fn new() -> Self {
        const SEND_ZERO: SendSlot = SendSlot {
            chunk: 0,
            ..SendSlot::EMPTY
        };
        const RECV_ZERO: RecvSlot = RecvSlot {
            chunk: 0,
            ..RecvSlot::EMPTY
        };
        StaticBuffers {
            send: [SEND_ZERO; SND],
            recv: [RECV_ZERO; RCV],
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

#[cfg(test)]
mod tests {
    use super::{AckEntry, RecvSlot, SendSlot, StaticBuffers};
    use crate::{Config, Kcp, Millis};

    type Mem = StaticBuffers<16, 32, 48, 1376>;

    fn pump(from: &mut Kcp, to: &mut Kcp, now: Millis, dgram: &mut [u8], count: &mut u32) {
        from.handle_timeout(now);
        while let Some(n) = from.poll_transmit(now, dgram) {
            *count += 1;
            if !count.is_multiple_of(7) {
                to.handle_datagram(now, &dgram[..n]).unwrap();
            }
        }
    }

    /// Moves `total` bytes from `a` to `b`, dropping every 7th datagram; returns what arrived.
    fn transfer(a: &mut Kcp, b: &mut Kcp, total: usize) -> usize {
        let mut dgram = [0u8; 1400];
        let mut out = [0u8; 4096];
        let (mut sent, mut got, mut count) = (0usize, 0usize, 0u32);
        let mut now = Millis(0);
        while got < total && now.0 < 60_000 {
            while sent < total {
                let chunk: [u8; 700] = core::array::from_fn(|i| (sent + i) as u8);
                match a.send(&chunk[..(total - sent).min(700)]) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
            }
            pump(a, b, now, &mut dgram, &mut count);
            pump(b, a, now, &mut dgram, &mut count);
            while let Ok(n) = b.recv(&mut out) {
                for (k, &byte) in out[..n].iter().enumerate() {
                    assert_eq!(byte, (got + k) as u8, "byte {} corrupted", got + k);
                }
                got += n;
            }
            now += 5;
        }
        got
    }

    #[test]
    fn static_buffers_start_zeroed_and_slots_need_no_initial_value() {
        let mut a_mem = Mem::new();
        let mut b_mem = Mem::new();
        // Zeroed: a `static` of them goes to .bss, not to flash.
        assert!(a_mem.send.iter().all(|s| s.chunk == 0 && s.next.is_none()));
        assert!(a_mem.recv.iter().all(|s| s.chunk == 0 && !s.present));
        // The engine must not read a slot before writing it: junk in every slot changes nothing.
        b_mem.send.fill(SendSlot {
            chunk: 3,
            len: 9,
            frg: 1,
            acked: true,
            in_txq: true,
            xmit: 5,
            prev: Some(1),
            next: Some(2),
            ..SendSlot::EMPTY
        });
        b_mem.recv.fill(RecvSlot {
            chunk: 5,
            len: 7,
            frg: 2,
            present: true,
        });
        b_mem.acks.fill(AckEntry { sn: 4, ts: 8 });
        b_mem.transmit.fill(11);
        let config = Config {
            stream: true,
            snd_wnd: 16,
            rcv_wnd: 16,
            ..Config::fast3()
        };
        let mut a = Kcp::with_buffers(1, config, Millis(0), a_mem.buffers()).unwrap();
        let mut b = Kcp::with_buffers(1, config, Millis(0), b_mem.buffers()).unwrap();
        assert_eq!(transfer(&mut a, &mut b, 200_000), 200_000);
        assert_eq!(transfer(&mut b, &mut a, 200_000), 200_000);
    }
}
