//! Session migration end to end (`KcpConfig::migration`, `aes`): a client's source port
//! changes mid-transfer and its session follows it; a datagram captured earlier and replayed
//! from a third socket does not move the session.
//!
//! The client reaches the listener through a small UDP relay of this test (its NAT): the
//! relay forwards from one outgoing socket, and mid-transfer replaces it with a new one (a
//! new source port) and closes the old one, so the listener's replies to the old port are
//! lost, as after a NAT rebinding.

use std::net::SocketAddr;
use std::time::Duration;

use kcp_tokio::{Config, KcpConfig, KcpListener, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

const LEN: usize = 4 << 20;

fn byte(i: usize) -> u8 {
    (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3]
}

fn config(crypt: &str) -> KcpConfig {
    KcpConfig::new(Config::fast3().with_windows(1024, 1024))
        .crypt(crypt, "migration test key")
        .unwrap()
        .migration(true)
}

/// Commands to the relay.
enum Cmd {
    /// Replace the outgoing socket; answers with the new one's address.
    Rebind(oneshot::Sender<SocketAddr>),
    /// Answers with a copy of the last datagram the client sent through the old socket.
    Captured(oneshot::Sender<Vec<u8>>),
}

/// The relay: `front` faces the client, `back` sends to `server`. Keeps a copy of the last
/// datagram it forwarded through the first `back` socket.
async fn relay(front: UdpSocket, server: SocketAddr, mut cmds: mpsc::Receiver<Cmd>) {
    let mut back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut client = None;
    let mut rebound = false;
    let mut kept = None;
    let (mut up, mut down) = ([0u8; 2048], [0u8; 2048]);
    loop {
        tokio::select! {
            r = front.recv_from(&mut up) => {
                let Ok((n, from)) = r else { return };
                client = Some(from);
                if !rebound {
                    kept = Some(up[..n].to_vec());
                }
                let _ = back.send_to(&up[..n], server).await;
            }
            r = back.recv_from(&mut down) => {
                let Ok((n, _)) = r else { return };
                if let Some(c) = client {
                    let _ = front.send_to(&down[..n], c).await;
                }
            }
            cmd = cmds.recv() => match cmd {
                // The old socket is dropped: what the listener still sends there is lost.
                Some(Cmd::Rebind(tx)) => {
                    rebound = true;
                    back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                    let _ = tx.send(back.local_addr().unwrap());
                }
                Some(Cmd::Captured(tx)) => {
                    let _ = tx.send(kept.clone().expect("the datagram was captured"));
                }
                None => return,
            },
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_changes_source_port_mid_transfer_keeps_its_session() {
    // kcp-go's layout, sealed and opened by the driver outside the endpoint.
    rebind_mid_transfer("aes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_with_the_replay_protected_mode() {
    // Sealed in the sessions; the copy is dropped by the session's replay window.
    let st = rebind_mid_transfer("aes-128-gcm-replay").await;
    assert!(st.replays >= 1, "{st:?}");
}

/// The transfer, the rebinding and the replay with `crypt`; the listener's final counters.
async fn rebind_mid_transfer(crypt: &str) -> kcp_tokio::EndpointStats {
    let listener = KcpListener::bind("127.0.0.1:0", config(crypt))
        .await
        .unwrap();
    let server = listener.local_addr();
    let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = front.local_addr().unwrap();
    let (cmd, cmds) = mpsc::channel(4);
    let relay = tokio::spawn(relay(front, server, cmds));

    // The server echoes every byte back.
    let (peer_tx, peer_rx) = oneshot::channel();
    let echo = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 64 << 10];
        let mut echoed = 0;
        while echoed < LEN {
            let n = s
                .read(&mut buf)
                .await
                .unwrap_or_else(|e| panic!("{e} after {echoed} bytes: {:?}", listener.stats()));
            assert!(n > 0, "the stream ended after {echoed} bytes");
            s.write_all(&buf[..n])
                .await
                .unwrap_or_else(|e| panic!("{e} after {echoed} bytes: {:?}", listener.stats()));
            echoed += n;
        }
        s.flush().await.unwrap();
        let _ = peer_tx.send(s.peer_addr().unwrap());
        // Keep the stream until the client has read everything back.
        (listener, s)
    });

    let client = KcpStream::connect(relay_addr, config(crypt)).await.unwrap();
    let (mut rd, mut wr) = client.into_split();
    let writer = tokio::spawn(async move {
        let data: Vec<u8> = (0..LEN).map(byte).collect();
        for chunk in data.chunks(16 << 10) {
            wr.write_all(chunk).await.unwrap();
        }
        wr
    });
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 << 10];
    let mut new_port = None;
    let mut replay = None;
    let run = async {
        while got < LEN {
            let n = rd.read(&mut buf).await.unwrap();
            assert!(n > 0, "the stream ended after {got} bytes");
            for (i, &b) in buf[..n].iter().enumerate() {
                assert_eq!(b, byte(got + i), "byte {}", got + i);
            }
            got += n;
            if new_port.is_none() && got >= LEN / 3 {
                let (tx, rx) = oneshot::channel();
                cmd.send(Cmd::Rebind(tx)).await.unwrap();
                new_port = Some(rx.await.unwrap());
            }
            if replay.is_none() && got >= 2 * LEN / 3 {
                let (tx, rx) = oneshot::channel();
                cmd.send(Cmd::Captured(tx)).await.unwrap();
                replay = Some(rx.await.unwrap());
            }
        }
    };
    timeout(Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| panic!("transfer stalled at {got} of {LEN} bytes"));
    let _wr = writer.await.unwrap();
    let peer = timeout(Duration::from_secs(10), peer_rx)
        .await
        .unwrap()
        .unwrap();
    let (listener, s) = echo.await.unwrap();
    let new_port = new_port.unwrap();
    assert_eq!(
        peer, new_port,
        "the session follows the client to its new port"
    );
    let moved = listener.stats();
    assert_eq!(moved.migrations, 1, "{moved:?}");

    // The last datagram the client sent from its old port (its session had heard from the
    // listener by then, so it is no first flight), re-sent from a third socket.
    let third = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    third.send_to(&replay.unwrap(), server).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    // Only the third socket sends from an address without a session now (the relay's old
    // socket is closed): wait until the listener has read the copy.
    while listener.stats().migrations_refused == moved.migrations_refused {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the copy was not refused: {:?}",
            listener.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = listener.stats();
    assert_eq!(after.migrations, 1, "the copy moved nothing: {after:?}");
    assert_eq!(
        after.migrations_refused,
        moved.migrations_refused + 1,
        "and was counted"
    );
    assert_eq!(s.peer_addr().unwrap(), new_port);
    // Nothing was sent to the third socket.
    let mut b = [0u8; 2048];
    assert!(
        timeout(Duration::from_millis(300), third.recv_from(&mut b))
            .await
            .is_err(),
        "the third socket hears nothing"
    );
    eprintln!(
        "{crypt}: migrations {}, refused {} (the replay: 1), held back to the unconfirmed port {}",
        after.migrations, after.migrations_refused, after.amplification_limited
    );
    drop(cmd);
    let _ = relay.await;
    after
}
