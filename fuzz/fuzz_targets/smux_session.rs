//! A smux session (v1 or v2, small buffers and caps) fed arbitrary frame bytes in arbitrary
//! chunks, interleaved with every stream operation and with time passing.
//!
//! Asserts: no panic; data buffered for reading stays within the receive bucket plus one
//! frame; streams stay within the cap; `poll_transmit` and `poll_event` terminate; and every
//! frame the session emits is valid input for a peer session (of the other role and the same
//! version), which never reports a protocol error for it.
//!
//! Input: byte 0 picks the version and role; then operations `[op, arg]`, where feeding
//! takes the next `arg` bytes of the input as frame bytes.
#![no_main]

use std::time::{Duration, Instant};

use kcp_mio::smux::{Config, Keepalive, Role, Session, StreamId, Version};
use libfuzzer_sys::fuzz_target;

const BUCKET: usize = 4096;
const MAX_STREAMS: usize = 16;

fuzz_target!(|data: &[u8]| {
    let Some((&head, mut rest)) = data.split_first() else {
        return;
    };
    let version = if head & 1 == 0 {
        Version::V1
    } else {
        Version::V2
    };
    let (role, peer_role) = if head & 2 == 0 {
        (Role::Server, Role::Client)
    } else {
        (Role::Client, Role::Server)
    };
    let config = Config {
        version,
        keepalive: Some(Keepalive {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(3),
        }),
        // Mostly ordinary frame sizes; 1-byte frames now and then.
        max_frame_size: if head >> 2 == 0 {
            1
        } else {
            16 + (head as usize >> 2) * 500
        },
        max_receive_buffer: BUCKET,
        max_stream_buffer: 1024,
        stream_send_buffer: 2048,
        max_streams: MAX_STREAMS,
        accept_backlog: 4,
    };
    let start = Instant::now();
    let mut now = start;
    let mut s = Session::new(config.clone(), role, start).unwrap();
    // The peer has room for everything this side can send.
    let peer_config = Config {
        max_receive_buffer: 1 << 30,
        max_stream_buffer: 1 << 20,
        max_streams: 1 << 20,
        accept_backlog: 1 << 20,
        keepalive: None,
        ..config
    };
    let mut peer = Session::new(peer_config, peer_role, start).unwrap();
    let mut ids: Vec<StreamId> = Vec::new();
    let mut out = Vec::new();
    let mut buf = [0u8; 4000];

    while let [op, arg, tail @ ..] = rest {
        rest = tail;
        let arg = *arg as usize;
        let pick = |ids: &[StreamId]| ids.get(arg % ids.len().max(1)).copied();
        match op % 9 {
            0 | 1 => {
                let n = arg.min(rest.len());
                let (chunk, tail) = rest.split_at(n);
                rest = tail;
                let _ = s.handle_input(chunk);
            }
            2 => {
                while let Some(id) = s.accept() {
                    ids.push(id);
                }
            }
            3 => {
                if let Some(id) = pick(&ids) {
                    let _ = s.read(id, &mut buf[..1 + arg * 11]);
                }
            }
            4 => {
                if let Some(id) = pick(&ids) {
                    let _ = s.write(id, &buf[..arg * 13]);
                }
            }
            5 => {
                if let Some(id) = pick(&ids) {
                    let _ = s.close_stream(id);
                }
            }
            6 => {
                if let Ok(id) = s.open() {
                    ids.push(id);
                }
            }
            7 => {
                now += Duration::from_millis(arg as u64 * 40);
                s.handle_timeout(now);
            }
            _ => {
                if arg == 255 {
                    s.close();
                }
            }
        }
        // Everything this side sends is valid for a peer.
        out.clear();
        let mut frames = 0;
        while s.poll_transmit(&mut out).is_some() {
            frames += 1;
            assert!(frames < 100_000, "poll_transmit does not terminate");
        }
        assert!(
            peer.handle_input(&out).is_ok(),
            "our frames broke the peer: {:?}",
            peer.close_reason()
        );
        while peer.accept().is_some() {}
        let mut events = 0;
        while s.poll_event().is_some() {
            events += 1;
            assert!(events < 100_000, "poll_event does not terminate");
        }
        while peer.poll_event().is_some() {}
        assert!(s.num_streams() <= MAX_STREAMS);
        let buffered: usize = ids.iter().map(|&id| s.readable_bytes(id)).sum();
        assert!(buffered <= BUCKET + 65535, "{buffered} bytes buffered");
        assert!(s.receive_bucket() > -65536);
    }
});
