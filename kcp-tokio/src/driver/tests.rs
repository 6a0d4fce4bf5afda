//! The driver's own tests: the clock wrap, a full send buffer, batched replies, cleanup.

use std::time::Duration;

use kcp_core::wire::{Command, SegmentRepr, HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::{KcpConfig, KcpListener, KcpStream};

/// CPU time of the calling thread.
#[cfg(target_os = "linux")]
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn deadlines_are_computed_in_64_bits_across_the_wrap() {
    let wrap = 1u64 << 32;
    // A deadline 30 ms ahead, seen 10 ms before the u32 clock wraps.
    let now = wrap - 10;
    assert_eq!(deadline_ms(now, millis(now + 30)), now + 30);
    // Seen after the wrap (now is past 2^32, the endpoint's Millis is small again).
    let now = wrap + 5;
    assert_eq!(deadline_ms(now, millis(now + 30)), now + 30);
    // A deadline already past is now, never 49.7 days away or in the distant past.
    assert_eq!(deadline_ms(now, millis(now - 3)), now);
    let c = Clock::new(wrap - 1);
    let t = c.now_ms();
    assert!(c.instant_at(t + 1000) > Instant::now());
}

/// The kernel's send buffer stays full (every send refused with EAGAIN, through
/// `try_io`) while the peer never answers: the driver sleeps until its timers, it does
/// not spin on a writable readiness that never clears.
#[cfg(target_os = "linux")]
#[test]
fn a_full_send_buffer_does_not_spin() {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r = rt.block_on(async {
            // A peer that never reads or answers.
            let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let cfg = KcpConfig::new(kcp_core::Config::fast3());
            let mut c = KcpStream::connect(peer.local_addr().unwrap(), cfg)
                .await
                .unwrap();
            c.driver()
                .inner()
                .stall_sends
                .store(true, Ordering::Relaxed);
            c.write_all(&[1u8; 64 * 1024]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let cpu = thread_cpu();
            let wall = Instant::now();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (cpu, wall) = (thread_cpu() - cpu, wall.elapsed());
            let st = c.socket_stats();
            assert!(st.send_would_block > 0 && st.backlog > 0, "{st:?}");
            (cpu, wall, st)
        });
        let _ = done.send(r);
    });
    // A driver that spins on a current-thread runtime can starve the test's own timer.
    let (cpu, wall, st) = result
        .recv_timeout(Duration::from_secs(20))
        .expect("the runtime never got back to the test: the driver spins");
    // A spinning driver burns the whole second; a sleeping one a few ms.
    assert!(
        cpu < wall / 10,
        "driver used {cpu:?} CPU in {wall:?} ({} wake-ups)",
        st.wakeups
    );
}

/// A new client socket's first flight goes straight to the kernel. Tokio's write readiness
/// of a socket starts unknown (its reactor has not polled the socket yet); sending through
/// it put every new socket's first datagrams in the backlog and made them wait for a
/// reactor turn.
#[tokio::test(flavor = "current_thread")]
async fn a_new_sockets_first_flight_skips_the_backlog() {
    // A plain socket: Tokio's would refuse to read before its reactor turn, too.
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_nonblocking(true).unwrap();
    let cfg = KcpConfig::new(kcp_core::Config::fast3());
    let mut c = KcpStream::connect(peer.local_addr().unwrap(), cfg)
        .await
        .unwrap();
    c.write_all(b"first").await.unwrap();
    let st = c.socket_stats();
    assert_eq!(st.send_would_block, 0, "{st:?}");
    assert_eq!(st.backlog, 0, "{st:?}");
    assert!(st.datagrams_sent >= 1, "{st:?}");
    // Already in the peer's socket (loopback delivers within the send call): no reactor
    // turn was needed.
    let mut buf = [0u8; 2048];
    let (n, _) = peer.recv_from(&mut buf).unwrap();
    let seg =
        SegmentRepr::parse(&kcp_core::wire::Segment::new_checked(&buf[..n]).unwrap()).unwrap();
    assert_eq!(seg.cmd, Command::Push);
    assert_eq!(&buf[HEADER_LEN..HEADER_LEN + 5], b"first");
}

/// The driver's clock crosses 2^32 ms (49.7 days) during a transfer: data still flows,
/// the driver does not spin, and an idle timeout after the wrap fires on time.
#[tokio::test]
async fn timers_work_across_the_32_bit_clock_wrap() {
    let start = (1u64 << 32) - 1_500;
    let cfg =
        KcpConfig::new(kcp_core::Config::fast3()).idle_timeout(Some(Duration::from_millis(1_000)));
    crate::config::CLOCK_OFFSET_MS.with(|c| c.set(start));
    let l = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let mut c = KcpStream::connect(l.local_addr(), cfg).await.unwrap();
    c.write_all(b"x").await.unwrap();
    let (mut s, _) = l.accept().await.unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    // Echo round trips for 2.5 s: the clocks wrap 1.5 s in.
    let t = Instant::now();
    let mut n = 0u32;
    while t.elapsed() < Duration::from_millis(2_500) {
        c.write_all(&n.to_le_bytes()).await.unwrap();
        let mut got = [0u8; 4];
        s.read_exact(&mut got).await.unwrap();
        s.write_all(&got).await.unwrap();
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(u32::from_le_bytes(got), n);
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(c.driver().now_ms() > 1 << 32);
    assert!(n > 50, "only {n} round trips");
    // Silence: the server's session ends by its idle timeout, on time.
    let quiet = Instant::now();
    drop(c);
    let e = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        crate::KcpError::of(&e),
        Some(crate::KcpError::Ended(CloseReason::IdleTimeout))
    );
    let waited = quiet.elapsed();
    assert!(
        waited > Duration::from_millis(700) && waited < Duration::from_millis(2_000),
        "{waited:?}"
    );
    // A spinning driver wakes up millions of times in 3.5 s.
    let st = l.socket_stats();
    assert!(st.wakeups < 5_000, "{st:?}");
}

/// Starts recording the driver's events (see [`Trace`]).
#[cfg(target_os = "linux")]
fn start_trace(d: &Driver) {
    *d.inner().traces.lock().unwrap() = Some(Vec::new());
}

/// Stops recording and returns what was recorded.
#[cfg(target_os = "linux")]
fn take_trace(d: &Driver) -> Vec<Trace> {
    d.inner().traces.lock().unwrap().take().unwrap_or_default()
}

/// `n` client streams, each with an echo task on the listener's side, one round trip
/// done, then quiet (every driver waiting). One runtime thread: nothing runs between the
/// awaits of the test's task.
#[cfg(target_os = "linux")]
async fn echo_sessions(n: usize) -> (KcpListener, Vec<KcpStream>) {
    let cfg = KcpConfig::new(kcp_core::Config::fast3());
    let l = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..n {
        let mut c = KcpStream::connect(l.local_addr(), cfg.clone())
            .await
            .unwrap();
        c.write_all(b"hi").await.unwrap();
        let (mut s, _) = l.accept().await.unwrap();
        tokio::spawn(async move {
            let mut b = [0u8; 64];
            loop {
                match s.read(&mut b).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => {
                        if s.write_all(&b[..k]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut b = [0u8; 2];
        c.read_exact(&mut b).await.unwrap();
        clients.push(c);
    }
    // Let every driver finish its turn and the ACKs settle.
    tokio::time::sleep(Duration::from_millis(200)).await;
    (l, clients)
}

/// Requests of many sessions that arrive together are answered by their own tasks, and
/// the replies leave in one send pass of the driver (one `sendmmsg`), not one system call
/// per reply.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn replies_of_many_sessions_leave_in_one_send() {
    const N: usize = 16;
    let (l, mut clients) = echo_sessions(N).await;
    let d = l.sockets.drivers[0].clone();
    let before = d.socket_stats();
    start_trace(&d);
    // Each write sends its datagram before returning: all N wait in the listener's socket
    // before its driver runs again.
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(&[i as u8; 8]).await.unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(b, [i as u8; 8]);
    }
    let trace = take_trace(&d);
    let after = d.socket_stats();
    let received: usize = trace
        .iter()
        .map(|t| if let Trace::Received(k) = t { *k } else { 0 })
        .sum();
    assert!(received >= N, "{trace:?}");
    // The first send pass after the requests carries every reply.
    let first_send = trace.iter().find_map(|t| match t {
        Trace::Sent(k) => Some(*k),
        _ => None,
    });
    assert_eq!(first_send, Some(N), "{trace:?}");
    assert!(
        after.batched_writes - before.batched_writes >= N as u64,
        "{before:?} {after:?}"
    );
    assert!(
        after.send_calls - before.send_calls < N as u64 / 4,
        "{before:?} {after:?}"
    );
}

/// A lone request: the turn wakes one task and does not hold its reply: the task sends
/// it itself as soon as it runs (no yield, no transmit left to the driver), right after
/// the driver's turn, before anything else happens on the socket.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_lone_reply_is_sent_by_its_task_at_once() {
    let (l, mut clients) = echo_sessions(1).await;
    let d = l.sockets.drivers[0].clone();
    let c = &mut clients[0];
    for round in 0..3u8 {
        let before = d.socket_stats();
        start_trace(&d);
        c.write_all(&[round; 4]).await.unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(b, [round; 4]);
        let trace = take_trace(&d);
        let after = d.socket_stats();
        // The turn, then the driver waits, then the task's own send of its reply.
        let upto_sent: Vec<Trace> = trace
            .iter()
            .copied()
            .take_while(|t| !matches!(t, Trace::Sent(_)))
            .collect();
        assert_eq!(
            upto_sent,
            [
                Trace::Received(1),
                Trace::Woke(1),
                Trace::TurnSend,
                Trace::Wait
            ],
            "{trace:?}"
        );
        assert_eq!(
            trace.get(upto_sent.len()),
            Some(&Trace::Sent(1)),
            "{trace:?}"
        );
        assert_eq!(after.batched_writes, before.batched_writes, "{trace:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Peers that open sessions and vanish before `accept` leave nothing behind.
#[tokio::test]
async fn unaccepted_sessions_leave_no_state() {
    let cfg =
        KcpConfig::new(kcp_core::Config::fast3()).idle_timeout(Some(Duration::from_millis(100)));
    let l = KcpListener::bind("127.0.0.1:0", cfg).await.unwrap();
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let segment = |conv, cmd, len: usize| {
        let mut d = vec![0u8; HEADER_LEN + len];
        SegmentRepr {
            conv,
            cmd,
            frg: 0,
            wnd: 32,
            ts: 0,
            sn: 0,
            una: 0,
            len: len as u32,
        }
        .emit(&mut d)
        .unwrap();
        d
    };
    for conv in 0..20u32 {
        let d = segment(conv, Command::Push, 1);
        peer.send_to(&d, l.local_addr()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // First flights open half-open entries, not sessions; the peer's answers to the
    // probes make them sessions.
    assert_eq!(l.sessions_per_socket(), [0]);
    assert_eq!(l.stats().half_open, 20);
    for conv in 0..20u32 {
        let d = segment(conv, Command::WindowTell, 0);
        peer.send_to(&d, l.local_addr()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(l.sessions_per_socket(), [20]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(l.sessions_per_socket(), [0], "idle sessions time out");
    let s = l.sockets.drivers[0].lock();
    assert!(s.sessions.is_empty() && s.lingering.is_empty());
}

/// A driver that wakes late (its thread descheduled past a retransmission deadline) reads
/// the ACKs waiting in its socket before it runs its timers, so it does not resend what the
/// peer has already acknowledged. The client's runtime has one thread, blocked here for
/// longer than the retransmission timeout while the peer (its own thread) acknowledges; when
/// the driver runs again its timer, its socket and the write's wake-up are all ready, and
/// Tokio may pick any of them first (without the read-first rule most trials retransmit).
/// Each trial is a new session: a blocked round trip raises the session's RTO past the block.
#[test]
fn a_late_driver_reads_acks_before_its_timers() {
    const TRIALS: usize = 6;
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let peer = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let cfg = KcpConfig::new(kcp_core::Config::fast3());
            let l = KcpListener::bind("127.0.0.1:0", cfg).await.unwrap();
            addr_tx.send(l.local_addr()).unwrap();
            let sinks = async {
                loop {
                    let (mut s, _) = l.accept().await.unwrap();
                    tokio::spawn(async move {
                        let mut b = [0u8; 256];
                        while let Ok(k) = s.read(&mut b).await {
                            if k == 0 {
                                break;
                            }
                        }
                    });
                }
            };
            tokio::select! {
                _ = sinks => {}
                _ = done_rx => {}
            }
        });
    });
    let addr = addr_rx.recv().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let cfg = KcpConfig::new(kcp_core::Config::fast3());
        for trial in 0..TRIALS {
            let std_sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            std_sock.set_nonblocking(true).unwrap();
            // A second handle on the client's socket, to see the ACK arrive without reading it.
            let peek = std_sock.try_clone().unwrap();
            let sock = tokio::net::UdpSocket::from_std(std_sock).unwrap();
            let conv = 0x1000 + trial as u32;
            let mut c = KcpStream::connect_with_socket(sock, addr, conv, cfg.clone()).unwrap();
            c.write_all(b"hello").await.unwrap();
            // Until the hello is acknowledged.
            let t0 = std::time::Instant::now();
            let before = loop {
                let st = c.stats().unwrap();
                if st.kcp.acks_in >= 1 {
                    break st;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "trial {trial}: {st:?}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            // The write leaves at once (a lone task sends its own datagram); the thread stays
            // blocked until the ACK waits in the socket and the RTO has passed twice over.
            c.write_all(&[trial as u8; 32]).await.unwrap();
            let t0 = std::time::Instant::now();
            let mut b = [0u8; 64];
            while peek.peek(&mut b).is_err() {
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "trial {trial}: no ACK"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            let block = Duration::from_millis(2 * u64::from(before.rto_ms) + 20);
            std::thread::sleep(block.saturating_sub(t0.elapsed()));
            tokio::time::sleep(Duration::from_millis(30)).await;
            let after = c.stats().unwrap().kcp;
            let b = before.kcp;
            assert!(after.acks_in > b.acks_in, "trial {trial}: {b:?} {after:?}");
            assert_eq!(
                after.retrans_segs, b.retrans_segs,
                "trial {trial}: {b:?} {after:?}"
            );
        }
    });
    let _ = done_tx.send(());
    peer.join().unwrap();
}

#[test]
fn the_per_session_entry_keeps_what_every_session_uses_only() {
    // The driver's session table holds one entry per session and has room for up to twice
    // as many: shutdown and `closed` waiters and message-mode leftovers are boxed apart, and
    // a lone reader's and writer's wakers are inline (32 bytes each), not in tables of their
    // own: the id, two waiters, the box and the flags.
    assert!(
        size_of::<Option<(SessionId, Sess)>>() <= 88,
        "entry {} Sess {} Waiters {}",
        size_of::<Option<(SessionId, Sess)>>(),
        size_of::<Sess>(),
        size_of::<Waiters>()
    );
    let mut s = Sess::default();
    let waker = std::task::Waker::noop();
    s.readers.register(1, waker);
    s.writers.register(2, waker);
    assert!(!s.readers.on_heap() && !s.writers.on_heap());
    assert!(s.no_flushers());
    s.rare().flushers.register(2, waker);
    assert!(!s.no_flushers());
}

#[test]
fn the_session_table_finds_entries_by_slot_and_tells_a_reused_slot_apart() {
    let mut ep: Endpoint<SocketAddr> =
        Endpoint::new(kcp_core::endpoint::EndpointConfig::new(Default::default())).unwrap();
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let ids: Vec<SessionId> = (0..40)
        .map(|conv| ep.connect(Millis(0), peer, conv).unwrap())
        .collect();
    let mut t = Sessions::default();
    for &id in &ids {
        t.insert(id, Sess::default());
    }
    assert!(ids.iter().all(|id| t.contains_key(id)));
    t.get_mut(&ids[3]).unwrap().write_shut = true;
    assert!(t.get(&ids[3]).unwrap().write_shut);
    assert!(!t.get(&ids[4]).unwrap().write_shut);
    // A later session in an ended one's slot has another id. While the ended session's
    // stream still holds its entry (with why it ended), both are found by their own ids.
    t.get_mut(&ids[5]).unwrap().ended = Some(CloseReason::DeadLink);
    ep.close(ids[5]).unwrap();
    while ep.poll_transmit(Millis(0), &mut [0u8; 2048]).is_some() {}
    let reused = ep.connect(Millis(0), peer, 1000).unwrap();
    assert_eq!(
        reused.index(),
        ids[5].index(),
        "the endpoint reuses the freed slot"
    );
    assert_ne!(reused, ids[5]);
    t.insert(reused, Sess::default());
    assert_eq!(t.get(&ids[5]).unwrap().ended, Some(CloseReason::DeadLink));
    assert_eq!(t.get(&reused).unwrap().ended, None);
    assert_eq!(t.values_mut().count(), ids.len() + 1);
    // The old entry goes with its stream and leaves the new one alone, and the other way.
    assert!(t.remove(&ids[5]).is_some());
    assert!(t.get(&ids[5]).is_none() && t.remove(&ids[5]).is_none());
    assert!(t.contains_key(&reused));
    assert!(t.remove(&reused).is_some());
    assert!(!t.contains_key(&reused));
    // The new session's entry may also go first.
    ep.close(ids[6]).unwrap();
    while ep.poll_transmit(Millis(0), &mut [0u8; 2048]).is_some() {}
    let again = ep.connect(Millis(0), peer, 1001).unwrap();
    assert_eq!(again.index(), ids[6].index());
    t.insert(again, Sess::default());
    assert!(t.remove(&again).is_some());
    assert!(t.get(&again).is_none());
    assert!(t.contains_key(&ids[6]));
    // Emptied, the table gives its room back.
    let before = t.capacity();
    for id in ids.iter().rev() {
        let _ = t.remove(id);
    }
    assert!(t.is_empty());
    assert!(t.capacity() < before, "{} -> {}", before, t.capacity());
    assert_eq!(t.values_mut().count(), 0);
}

/// A listener bound on `rt`, and its one socket's driver.
#[cfg(feature = "perf")]
fn listener_and_driver(rt: &tokio::runtime::Runtime) -> (KcpListener, Arc<Driver>) {
    let l = rt
        .block_on(KcpListener::bind("127.0.0.1:0", KcpConfig::default()))
        .unwrap();
    let d = l.sockets.drivers[0].clone();
    (l, d)
}

/// Lock timing (the `perf` feature) counts every hold of the state lock however many threads
/// take it at once: its counters are written with plain loads and stores, by the lock's holder
/// only, before the lock is released. Were they written after it, concurrent holders would
/// lose counts here.
#[cfg(feature = "perf")]
#[test]
fn lock_timing_counts_every_hold_across_threads() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (l, d) = listener_and_driver(&rt);
    let before = d.socket_stats();
    const THREADS: u64 = 4;
    const HOLDS: u64 = 20_000;
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..HOLDS {
                    drop(std::hint::black_box(d.lock()));
                }
            });
        }
    });
    let after = d.socket_stats();
    // The driver task may take the lock too, never less.
    let counted = after.lock_acquisitions - before.lock_acquisitions;
    assert!(counted >= THREADS * HOLDS, "{counted} holds counted");
    assert!(after.lock_hold_max_ns > 0, "{after:?}");
    assert!(
        after.lock_hold_total_ns >= after.lock_hold_max_ns,
        "{after:?}"
    );
    drop(l);
}

/// The streams' reads and writes time one hold in `SAMPLED_HOLDS` (two clock readings per
/// hold were 2 % of a busy server's CPU); the driver's and everyone else's holds are all
/// timed, so the longest hold is not missed where holds are long.
#[cfg(feature = "perf")]
#[test]
fn stream_io_holds_are_timed_one_in_sixteen_and_others_every_time() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The runtime is not driven from here on: only this thread takes the lock.
    let (l, d) = listener_and_driver(&rt);
    let timed = |g: StateGuard<'_>| g.since.is_some();
    let io = (0..4 * SAMPLED_HOLDS)
        .filter(|_| timed(d.lock_for_io()))
        .count();
    assert_eq!(io, 4);
    let other = (0..4 * SAMPLED_HOLDS).filter(|_| timed(d.lock())).count();
    assert_eq!(other as u64, 4 * SAMPLED_HOLDS);
    let st = d.socket_stats();
    assert!(st.lock_acquisitions >= 8 * SAMPLED_HOLDS, "{st:?}");
    drop(l);
}
