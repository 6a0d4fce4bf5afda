//! Batched UDP socket I/O for any non-blocking socket, shared by both adapters.
//!
//! * [`Sender`]: datagrams are written straight into a batch of fixed slots (several per
//!   call, so the crypto layer seals them together), then sent with one `sendmmsg` on Linux,
//!   where a run of same-size datagrams to one peer goes as one UDP GSO message (the kernel
//!   walks its stack once for up to 64 datagrams). Elsewhere, or when the kernel refuses
//!   `sendmmsg` or GSO, one `send_to` per datagram, still without allocating. What the kernel
//!   refuses (`EAGAIN`) waits in a bounded backlog of preallocated slots; beyond the bound
//!   datagrams are dropped and counted (KCP retransmits them).
//! * [`Receiver`]: `recvmmsg` batches on Linux, optionally with UDP GRO (64 KiB slots whose
//!   coalesced trains are split back at the segment size the kernel reports); one
//!   `recv_from` per datagram elsewhere or when the kernel refuses `recvmmsg`.
//!
//! Sockets are passed by [`SockRef`](socket2::SockRef), which any std, mio or tokio UDP socket converts to
//! (`SockRef::from(&socket)`); the socket must be non-blocking. **`WouldBlock` is explicit**:
//! [`Sender::send_from`] and [`Sender::send_backlog`] return `Err(WouldBlock)` while datagrams
//! wait in the backlog (the caller waits for the socket to be writable: mio registers
//! `WRITABLE` interest, Tokio wraps `send_backlog` in `try_io`), and [`Receiver::recv`]
//! returns it when nothing is queued. A batch's slots are held only while the batch is: between
//! batches they go back to a stock of a few buffers kept per thread (a GRO receiver keeps its
//! own), so thousands of client sockets share a handful of buffers. The backlog's slots grow
//! (doubling) up to its bound and are then reused, so steady-state I/O allocates nothing.

mod backlog;
#[cfg(target_os = "linux")]
mod linux;
mod recv;
mod scratch;
mod send;

use std::io;

pub use recv::Receiver;
pub use send::Sender;

/// Datagrams per batch (one `sendmmsg`/`recvmmsg`), at most.
pub const BATCH: usize = 32;
/// Slots a batch starts with (without GRO): it doubles, up to [`BATCH`], when a call fills
/// it. A client socket that carries one session's small messages uses 8 KiB of slots a side
/// instead of 64 KiB, and only during a batch (they are lent per batch); a busy socket
/// reaches full batches within its first few calls.
pub const FIRST_BATCH: usize = 4;
/// Bytes per datagram slot: the largest datagram sent, or received without GRO (KCP's MTU is
/// at most 1500).
pub const SLOT: usize = 2048;
/// Default bound of the send backlog, in datagrams.
pub const DEFAULT_BACKLOG: usize = 4096;

/// Whether a receive error is about a peer (an ICMP port unreachable surfacing on the socket)
/// rather than about the socket: the caller goes on reading.
pub fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}

/// Counters of one socket's I/O.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpStats {
    /// Datagrams the kernel accepted.
    pub datagrams_sent: u64,
    /// Send system calls (`sendmmsg` or `send_to`).
    pub send_calls: u64,
    /// Datagrams received (GRO trains counted per datagram).
    pub datagrams_received: u64,
    /// Receive system calls that returned data.
    pub recv_calls: u64,
    /// Sends the kernel refused with `WouldBlock` (the datagrams went to the backlog).
    pub would_block: u64,
    /// Datagrams dropped because the backlog was full.
    pub backlog_drops: u64,
    /// Datagrams dropped because the kernel refused them (unreachable destination...).
    pub send_errors: u64,
    /// Most datagrams that waited in the backlog at once.
    pub backlog_peak: u64,
    /// Datagrams dropped on receipt because they were larger than a receive slot (never
    /// passed on truncated).
    pub recv_truncated: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::SockRef;
    use std::net::{SocketAddr, UdpSocket};
    use std::time::{Duration, Instant};

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    /// Sends `sizes` (datagram `k` filled with byte `k`) and reads them back; checks every
    /// datagram arrives whole, in order, with its content and source.
    fn round_trip(sizes: &[usize], gro: bool, plain: bool) -> (Sender, Receiver) {
        let (a, b) = pair();
        let to = b.local_addr().unwrap();
        let mut rx = Receiver::new(SockRef::from(&b), gro);
        let mut tx = Sender::new(64);
        if plain {
            tx.use_plain_sends();
            rx.use_plain_receives();
        }
        let mut k = 0;
        tx.send_from(SockRef::from(&a), |region, stride, lens| {
            let mut n = 0;
            // Datagrams to one destination, several per call as the endpoint hands them out.
            while n < lens.len() && k < sizes.len() && n < 5 {
                region[n * stride..n * stride + sizes[k]].fill(k as u8);
                lens[n] = sizes[k];
                n += 1;
                k += 1;
            }
            (n > 0).then_some((to, n))
        })
        .unwrap();
        let mut got: Vec<(usize, u8)> = Vec::new();
        read_until(&mut rx, &b, sizes.len(), |from, d| {
            assert_eq!(from, a.local_addr().unwrap());
            assert!(d.iter().all(|&x| x == d[0]));
            got.push((d.len(), d[0]));
        });
        let want: Vec<(usize, u8)> = sizes
            .iter()
            .enumerate()
            .map(|(k, &n)| (n, k as u8))
            .collect();
        assert_eq!(got, want);
        (tx, rx)
    }

    /// A datagram larger than a receive slot is dropped and counted, never handed out cut;
    /// the datagrams around it arrive whole. Batched and plain receive paths.
    fn oversized_datagrams_are_dropped(plain: bool) {
        let (a, b) = pair();
        let to = b.local_addr().unwrap();
        let mut rx = Receiver::new(SockRef::from(&b), false);
        if plain {
            rx.use_plain_receives();
        }
        for d in [vec![1u8; 100], vec![2u8; SLOT + 500], vec![3u8; 200]] {
            a.send_to(&d, to).unwrap();
        }
        let mut got = Vec::new();
        read_until(&mut rx, &b, 2, |_, d| got.push((d.len(), d[0])));
        assert_eq!(got, [(100, 1), (200, 3)]);
        assert_eq!(rx.stats().recv_truncated, 1);
    }

    #[test]
    fn oversized_datagrams_are_dropped_batched() {
        oversized_datagrams_are_dropped(false);
    }

    #[test]
    fn oversized_datagrams_are_dropped_plain() {
        oversized_datagrams_are_dropped(true);
    }

    fn mixed() -> Vec<usize> {
        // A run of equal sizes with a shorter tail (one GSO message), then mixed sizes.
        let mut sizes = vec![1200; 20];
        sizes.push(300);
        sizes.extend([100, 1400, 1400, 50]);
        sizes.extend(vec![1350; 40]);
        sizes
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn gso_runs_and_gro_trains_split_back_into_datagrams() {
        let sizes = mixed();
        let (tx, rx) = round_trip(&sizes, true, false);
        assert!(tx.gso(), "loopback supports UDP GSO on this kernel");
        assert!(rx.gro());
        let st = tx.stats();
        assert_eq!(st.datagrams_sent, sizes.len() as u64);
        assert!(
            st.send_calls <= 4,
            "{} datagrams in batches of 32: {st:?}",
            sizes.len()
        );
        let (_, rx) = round_trip(&sizes, false, false);
        assert!(!rx.gro());
    }

    #[test]
    fn plain_path_sends_one_datagram_per_call() {
        let sizes = mixed();
        let (tx, rx) = round_trip(&sizes, false, true);
        assert_eq!(tx.stats().send_calls, sizes.len() as u64);
        assert_eq!(rx.stats().datagrams_received, sizes.len() as u64);
    }

    /// The kernel refuses (simulated: loopback never pushes back, its datagrams are handed
    /// to the receiver synchronously): the refused datagrams wait in the backlog and
    /// `WouldBlock` is reported; later ones queue behind them; beyond the bound they are
    /// dropped and counted; `send_backlog` sends them in order once the kernel takes them.
    fn backlog_case(plain: bool) {
        let (a, b) = pair();
        // Room for the whole backlog at once: loopback drops what the receiver has no room for.
        SockRef::from(&b).set_recv_buffer_size(4 << 20).unwrap();
        let to = b.local_addr().unwrap();
        let mut tx = Sender::new(100);
        if plain {
            tx.use_plain_sends();
        }
        tx.send_to(SockRef::from(&a), to, &[9; 100]).unwrap();
        tx.simulate_full_socket(u64::MAX);
        for seq in 0..150u32 {
            let mut d = [0u8; 1000];
            d[..4].copy_from_slice(&seq.to_le_bytes());
            let e = tx.send_to(SockRef::from(&a), to, &d).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        }
        let st = tx.stats();
        assert_eq!(
            st.would_block, 1,
            "after the first refusal, datagrams queue behind it"
        );
        assert_eq!(tx.backlog_len(), 100, "bounded");
        assert_eq!(
            st.backlog_drops, 50,
            "beyond the bound, dropped and counted"
        );
        assert_eq!(st.backlog_peak, 100);
        let e = tx.send_backlog(SockRef::from(&a)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        tx.simulate_full_socket(0);
        tx.send_backlog(SockRef::from(&a)).unwrap();
        assert_eq!(tx.backlog_len(), 0);
        let mut buf = [0u8; 2048];
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < 101 && Instant::now() < deadline {
            match b.recv_from(&mut buf) {
                Ok((n, _)) => got.push((n, u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]))),
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        let mut want = vec![(100, u32::from_le_bytes([9; 4]))];
        want.extend((0..100).map(|s| (1000, s)));
        assert_eq!(got, want, "in order, the first 100 of the refused ones");
    }

    #[test]
    fn refused_datagrams_wait_in_a_bounded_backlog_batched() {
        backlog_case(false);
    }

    #[test]
    fn refused_datagrams_wait_in_a_bounded_backlog_plain() {
        backlog_case(true);
    }

    /// Batches start small and double when a call fills them: a fresh receiver reads
    /// 4, 8, 16, then 32 of a queue of 70 datagrams per call, in order; a fresh sender hands
    /// 32 datagrams to one `sendmmsg`, not to eight calls of four.
    fn batches_grow_when_they_fill(plain: bool) {
        let (a, b) = pair();
        SockRef::from(&b).set_recv_buffer_size(1 << 20).unwrap();
        let to = b.local_addr().unwrap();
        let mut tx = Sender::new(64);
        let mut rx = Receiver::new(SockRef::from(&b), false);
        if plain {
            tx.use_plain_sends();
            rx.use_plain_receives();
        }
        let mut k = 0u8;
        tx.send_from(SockRef::from(&a), |region, stride, lens| {
            let mut n = 0;
            // Mixed sizes, so GSO cannot merge them: one message per datagram.
            while n < lens.len() && k < 70 {
                let len = 100 + usize::from(k) * 7;
                region[n * stride..n * stride + len].fill(k);
                lens[n] = len;
                n += 1;
                k += 1;
            }
            (n > 0).then_some((to, n))
        })
        .unwrap();
        let st = tx.stats();
        assert_eq!(st.datagrams_sent, 70);
        if plain {
            assert_eq!(st.send_calls, 70);
        } else {
            assert_eq!(st.send_calls, 3, "batches of 32, 32 and 6: {st:?}");
        }
        let mut per_call = Vec::new();
        let mut got = Vec::new();
        while got.len() < 70 {
            let n = rx.recv(SockRef::from(&b)).unwrap();
            per_call.push(n);
            rx.for_each(|_, d| {
                assert!(d.iter().all(|&x| x == d[0]));
                got.push((d.len(), d[0]));
            });
        }
        assert_eq!(per_call, [4, 8, 16, 32, 10]);
        let want: Vec<(usize, u8)> = (0..70u8).map(|k| (100 + usize::from(k) * 7, k)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn batches_grow_when_they_fill_batched() {
        batches_grow_when_they_fill(false);
    }

    #[test]
    fn batches_grow_when_they_fill_plain() {
        batches_grow_when_they_fill(true);
    }

    #[test]
    fn receiving_nothing_is_would_block() {
        let (_a, b) = pair();
        for gro in [false, true] {
            let mut rx = Receiver::new(SockRef::from(&b), gro);
            let e = rx.recv(SockRef::from(&b)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
            rx.use_plain_receives();
            let e = rx.recv(SockRef::from(&b)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        }
    }

    #[test]
    fn a_refused_destination_loses_only_its_datagram() {
        let (a, b) = pair();
        let to = b.local_addr().unwrap();
        // Port 0 is not a valid destination: the kernel refuses that datagram alone.
        let bad: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut tx = Sender::new(16);
        let mut plan = vec![(to, 1u8), (bad, 2), (to, 3)].into_iter();
        tx.send_from(SockRef::from(&a), |region, _, lens| {
            let (dest, tag) = plan.next()?;
            region[..10].fill(tag);
            lens[0] = 10;
            Some((dest, 1))
        })
        .unwrap();
        assert_eq!(tx.stats().send_errors, 1);
        let mut buf = [0u8; 64];
        b.set_nonblocking(false).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(b.recv(&mut buf).unwrap(), 10);
        assert_eq!(buf[0], 1);
        assert_eq!(b.recv(&mut buf).unwrap(), 10);
        assert_eq!(buf[0], 3);
    }

    /// Reads from `s` until `want` datagrams were handed to `f` and a read finds nothing
    /// (or 5 s passed).
    fn read_until(
        rx: &mut Receiver,
        s: &UdpSocket,
        want: usize,
        mut f: impl FnMut(SocketAddr, &[u8]),
    ) {
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match rx.recv(SockRef::from(s)) {
                Ok(_) => rx.for_each(|from, d| {
                    n += 1;
                    f(from, d)
                }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if n >= want || Instant::now() > deadline {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// [`read_until`] collecting the datagrams.
    fn drain(rx: &mut Receiver, s: &UdpSocket, want: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        read_until(rx, s, want, |_, d| got.push(d.to_vec()));
        got
    }

    #[test]
    fn receive_slots_are_held_only_during_a_batch_and_shared_by_sockets() {
        let (a, b) = pair();
        let (_, c) = pair();
        let mut rb = Receiver::new(SockRef::from(&b), false);
        let mut rc = Receiver::new(SockRef::from(&c), false);
        assert_eq!(rb.buffer_bytes(), 0, "a new socket holds no slots");
        // A long datagram through b, then a short one through c: c's batch may take the
        // slots b gave back, and must hand out exactly its own bytes.
        a.send_to(&[0xaa; 1400], b.local_addr().unwrap()).unwrap();
        a.send_to(&[0xbb; 1400], b.local_addr().unwrap()).unwrap();
        let mut first = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while first.is_none() && Instant::now() < deadline {
            match rb.recv(SockRef::from(&b)) {
                Ok(n) => {
                    assert!(
                        rb.buffer_bytes() >= FIRST_BATCH * SLOT,
                        "held while handed out"
                    );
                    let mut got = Vec::new();
                    rb.for_each(|_, d| got.push(d.to_vec()));
                    assert_eq!(got.len(), n);
                    first = Some(got);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("{e}"),
            }
        }
        let mut got = first.expect("b received");
        got.extend(drain(&mut rb, &b, 2 - got.len()));
        assert_eq!(got, [vec![0xaa; 1400], vec![0xbb; 1400]]);
        assert_eq!(
            rb.buffer_bytes(),
            0,
            "given back once the socket is drained"
        );
        a.send_to(&[0x55; 10], c.local_addr().unwrap()).unwrap();
        assert_eq!(drain(&mut rc, &c, 1), [vec![0x55; 10]]);
        assert_eq!(rc.buffer_bytes(), 0);
        assert!(scratch::kept() >= 1);
    }

    #[test]
    fn many_idle_receivers_hold_no_slots() {
        let (a, _) = pair();
        let socks: Vec<UdpSocket> = (0..200).map(|_| pair().1).collect();
        let mut rxs: Vec<Receiver> = socks
            .iter()
            .map(|s| Receiver::new(SockRef::from(s), false))
            .collect();
        for (k, s) in socks.iter().enumerate() {
            a.send_to(&[k as u8; 100], s.local_addr().unwrap()).unwrap();
        }
        for (k, (rx, s)) in rxs.iter_mut().zip(&socks).enumerate() {
            assert_eq!(drain(rx, s, 1), [vec![k as u8; 100]]);
        }
        assert!(rxs.iter().all(|r| r.buffer_bytes() == 0));
        assert!(
            scratch::kept() <= 4,
            "the thread keeps a few buffers, not one per socket"
        );
    }

    #[test]
    fn send_slots_are_held_only_between_fill_and_flush() {
        let (a, b) = pair();
        let to = b.local_addr().unwrap();
        let mut tx = Sender::new(64);
        assert_eq!(tx.buffer_bytes(), 0);
        // Nothing to send: nothing held.
        assert!(!tx.fill(|_, _, _| None));
        assert_eq!(tx.buffer_bytes(), 0);
        let mut once = Some(());
        tx.fill(|region, stride, lens| {
            once.take()?;
            for (i, len) in lens.iter_mut().take(3).enumerate() {
                region[i * stride..i * stride + 50].fill(i as u8 + 1);
                *len = 50;
            }
            Some((to, 3))
        });
        assert_eq!(tx.committed(), 3);
        assert!(tx.buffer_bytes() >= 3 * SLOT);
        let (buf, lens) = tx.committed_mut();
        assert_eq!(lens, [50, 50, 50]);
        assert_eq!(buf[SLOT], 2);
        tx.flush(&SockRef::from(&a)).unwrap();
        assert_eq!(tx.buffer_bytes(), 0, "given back after the flush");
        // What the kernel refuses goes to the backlog; the slots still go back.
        tx.simulate_full_socket(1);
        let mut once = Some(());
        let r = tx.send_from(SockRef::from(&a), |region, _, lens| {
            once.take()?;
            region[..20].fill(9);
            lens[0] = 20;
            Some((to, 1))
        });
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!((tx.backlog_len(), tx.buffer_bytes()), (1, 0));
        tx.send_backlog(SockRef::from(&a)).unwrap();
        let mut rx = Receiver::new(SockRef::from(&b), false);
        let got = drain(&mut rx, &b, 4);
        assert_eq!(
            got,
            [vec![1; 50], vec![2; 50], vec![3; 50], vec![9; 20]],
            "every datagram arrives with its own bytes"
        );
        // A sealing failure drops the batch and gives the slots back too.
        let mut once = Some(());
        tx.fill(|_, _, lens| {
            once.take()?;
            lens[0] = 10;
            Some((to, 1))
        });
        assert!(tx.buffer_bytes() > 0);
        tx.discard();
        assert_eq!(tx.buffer_bytes(), 0);
    }

    /// `drained`: a batch with room to spare means the queue was empty; a full one does not.
    fn drained_tells_a_batch_with_room_left(plain: bool) {
        let (a, b) = pair();
        let to = b.local_addr().unwrap();
        let mut rx = Receiver::new(SockRef::from(&b), false);
        if plain {
            rx.use_plain_receives();
        }
        // Loopback queues a datagram at the receiver before `send_to` returns.
        // Fewer datagrams than the first batch's slots: drained.
        for k in 0..FIRST_BATCH - 1 {
            a.send_to(&[k as u8; 30], to).unwrap();
        }
        assert_eq!(rx.recv(SockRef::from(&b)).unwrap(), FIRST_BATCH - 1);
        assert!(rx.drained());
        assert!(!rx.is_empty());
        assert!(rx.buffer_bytes() > 0, "held while the batch is handed out");
        let mut n = 0;
        rx.for_each(|_, _| n += 1);
        assert_eq!(n, FIRST_BATCH - 1);
        // A turn that stops here gives the slots back without another read.
        rx.release();
        assert_eq!(rx.buffer_bytes(), 0);
        assert!(rx.is_empty());
        rx.for_each(|_, _| panic!("nothing after release"));
        // Exactly as many as the slots: not known to be drained (the next call tells).
        for k in 0..FIRST_BATCH {
            a.send_to(&[k as u8; 30], to).unwrap();
        }
        assert_eq!(rx.recv(SockRef::from(&b)).unwrap(), FIRST_BATCH);
        assert!(!rx.drained());
        let e = rx.recv(SockRef::from(&b)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(rx.is_empty());
    }

    #[test]
    fn drained_tells_a_batch_with_room_left_batched() {
        drained_tells_a_batch_with_room_left(false);
    }

    #[test]
    fn drained_tells_a_batch_with_room_left_plain() {
        drained_tells_a_batch_with_room_left(true);
    }
}
