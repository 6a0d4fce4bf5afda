//! The two long checks: an idle stream survives kcptun's timeouts, a vanished peer is noticed.

use super::*;

/// An idle stream survives 65 s against the Go peer, in both roles at once: our keepalives
/// satisfy Go's 30 s timeout, and Go's keep ours alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_stream_survives_65s_both_roles() {
    require_go();
    let echo = echo_tcp().await;
    let roles = [(Imp::Go, Imp::Rs), (Imp::Rs, Imp::Go)];
    let mut set = JoinSet::new();
    for (i, (c, s)) in roles.into_iter().enumerate() {
        set.spawn(async move {
            let dir = Scratch::new(&format!("idle{i}"));
            let t = Tunnel::start(
                &dir.0,
                c,
                s,
                &["--key", "idle"],
                &[],
                &Target::Tcp(echo),
                None,
            )
            .await;
            wait_listening(t.entry).await?;
            let mut conn = TcpStream::connect(t.entry)
                .await
                .map_err(|e| e.to_string())?;
            ping(&mut conn, b"before the pause").await?;
            tokio::time::sleep(Duration::from_secs(65)).await;
            ping(&mut conn, b"after 65 idle seconds")
                .await
                .map_err(|e| format!("{c:?} client, {s:?} server: {e}\n{}", t.logs()))
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
}

/// A peer that vanishes (SIGKILL, so it sends nothing more) is noticed within 60 s, in both
/// roles at once: our client closes the tunnelled connection when the Go server is gone, and
/// our server closes the target connection when the Go client is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_peer_noticed_within_60s_both_roles() {
    require_go();
    let echo = echo_tcp().await;
    // Our client, Go server: the Go server is killed; the tunnelled connection must close.
    let a = tokio::spawn(async move {
        let dir = Scratch::new("vanish-a");
        let mut t = Tunnel::start(
            &dir.0,
            Imp::Rs,
            Imp::Go,
            &["--key", "v"],
            &[],
            &Target::Tcp(echo),
            None,
        )
        .await;
        wait_listening(t.entry).await?;
        let mut conn = TcpStream::connect(t.entry)
            .await
            .map_err(|e| e.to_string())?;
        ping(&mut conn, b"hello").await?;
        t.server.kill().await;
        let t0 = Instant::now();
        let mut b = [0u8; 8];
        match tokio::time::timeout(Duration::from_secs(75), conn.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(_)) => return Err("data from a dead server".to_string()),
            Err(_) => {
                return Err(format!(
                    "still open 75 s after the server vanished\n{}",
                    t.logs()
                ))
            }
        }
        let took = t0.elapsed();
        if took > Duration::from_secs(61) {
            return Err(format!("noticed after {took:?}\n{}", t.logs()));
        }
        // A new server on the same address: the next connection dials a new session.
        let args: Vec<String> = t.server.args.clone();
        let _again = Proc::spawn(GO_SERVER, &args, dir.0.join("server2.log"));
        echo_once(t.entry, 9, 200_000)
            .await
            .map_err(|e| format!("after the server came back: {e}\n{}", t.logs()))?;
        let sessions = t.client.text().matches("on connection:").count();
        if sessions != 2 {
            return Err(format!(
                "{sessions} sessions dialled, expected a second one\n{}",
                t.logs()
            ));
        }
        Ok(took)
    });
    // Go client, our server: the Go client is killed; the target connection must close.
    let b = tokio::spawn(async move {
        let dir = Scratch::new("vanish-b");
        let target = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let taddr = target.local_addr().map_err(|e| e.to_string())?;
        let mut t = Tunnel::start(
            &dir.0,
            Imp::Go,
            Imp::Rs,
            &["--key", "v"],
            &[],
            &Target::Tcp(taddr),
            None,
        )
        .await;
        wait_listening(t.entry).await?;
        // The readiness probe's stream reaches the target first; take streams until one
        // carries our hello.
        let mut conn = TcpStream::connect(t.entry)
            .await
            .map_err(|e| e.to_string())?;
        conn.write_all(b"hello").await.map_err(|e| e.to_string())?;
        let mut far = loop {
            let (mut s, _) = tokio::time::timeout(Duration::from_secs(10), target.accept())
                .await
                .map_err(|_| format!("no stream reached the target\n{}", t.logs()))?
                .map_err(|e| e.to_string())?;
            let mut b = [0u8; 5];
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut b)).await
            {
                if &b == b"hello" {
                    break s;
                }
            }
        };
        t.client.kill().await;
        let t0 = Instant::now();
        let mut b = [0u8; 8];
        match tokio::time::timeout(Duration::from_secs(75), far.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(_)) => return Err("data from a dead client".to_string()),
            Err(_) => {
                return Err(format!(
                    "target connection still open 75 s after the client vanished\n{}",
                    t.logs()
                ))
            }
        }
        let took = t0.elapsed();
        if took > Duration::from_secs(61) {
            return Err(format!("noticed after {took:?}\n{}", t.logs()));
        }
        drop(conn);
        Ok(took)
    });
    // Our client with another key than the Go server's: the session times out, and the log
    // says nothing ever arrived and what to check.
    let c = tokio::spawn(async move {
        let dir = Scratch::new("vanish-c");
        let t = Tunnel::start(
            &dir.0,
            Imp::Rs,
            Imp::Go,
            &["--key", "v"],
            &[],
            &Target::Tcp(echo),
            None,
        )
        .await;
        // Replace the tunnel's client by one with another key.
        let Tunnel {
            client: own,
            server,
            ..
        } = t;
        drop(own);
        let entry = format!("127.0.0.1:{}", free_port());
        let remote = server.args[1].clone();
        let client = Proc::spawn(
            RS_CLIENT,
            &["-l", &entry, "-r", &remote, "--key", "other"].map(String::from),
            dir.0.join("client-other.log"),
        );
        let entry: SocketAddr = entry.parse().unwrap();
        wait_listening(entry).await?;
        let mut conn = TcpStream::connect(entry).await.map_err(|e| e.to_string())?;
        let _ = conn.write_all(b"hello?").await;
        let found = client
            .wait_for(
                "nothing ever arrived from the server",
                Duration::from_secs(70),
            )
            .await;
        drop(server);
        found.ok_or_else(|| format!("no hint about the key\n{}", client.tail(20)))
    });
    let ta = a.await.unwrap().unwrap();
    c.await.unwrap().unwrap();
    let tb = b.await.unwrap().unwrap();
    eprintln!("vanished Go server noticed by our client after {ta:?}; vanished Go client noticed by our server after {tb:?}");
}
