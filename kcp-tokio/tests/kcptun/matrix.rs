//! The matrix of cells (smux versions, compression, FEC, ciphers, `--conn`, rotation, odd
//! targets, a lossy link) and mismatched peers.

use super::*;

/// What a cell checks beyond the load.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Check {
    /// The standard load only.
    Load,
    /// `--conn 4`: four sessions were dialled.
    FourSessions,
    /// `--autoexpire`: sessions rotate (the scavenger closed one by TTL) while connections
    /// keep passing.
    Rotation,
    /// The target is unreachable at first: connections close, the session survives, and once
    /// the target listens, data passes over the same session.
    Unreachable,
}

#[derive(Clone, Debug)]
struct Cell {
    name: String,
    client: Imp,
    server: Imp,
    args: Vec<&'static str>,
    client_extra: Vec<&'static str>,
    unix: bool,
    loss: Option<f64>,
    check: Check,
}

fn cell(name: &str, client: Imp, server: Imp, args: &[&'static str]) -> Cell {
    Cell {
        name: name.to_owned(),
        client,
        server,
        args: args.to_vec(),
        client_extra: Vec::new(),
        unix: false,
        loss: None,
        check: Check::Load,
    }
}

/// Both mixed pairs of a configuration.
fn both(name: &str, args: &[&'static str]) -> Vec<Cell> {
    vec![
        cell(
            &format!("go-client/rs-server {name}"),
            Imp::Go,
            Imp::Rs,
            args,
        ),
        cell(
            &format!("rs-client/go-server {name}"),
            Imp::Rs,
            Imp::Go,
            args,
        ),
    ]
}

/// Runs a cell; a second time if a port picked for it was taken meanwhile (ports are picked
/// by binding port 0 and releasing it, so another socket may grab one before the process
/// binds it).
async fn run_cell(c: Cell, echo: SocketAddr, seed: u64) -> Result<Duration, String> {
    let first = run_cell_once(c.clone(), echo, seed).await;
    match first {
        Err(e) if e.to_lowercase().contains("address already in use") => {
            eprintln!("{}: a port was taken, running the cell again", c.name);
            run_cell_once(c, echo, seed).await
        }
        r => r,
    }
}

async fn run_cell_once(c: Cell, echo: SocketAddr, seed: u64) -> Result<Duration, String> {
    let t0 = Instant::now();
    let dir = Scratch::new(&c.name.replace(['/', ' ', '='], "_"));
    let target = if c.unix {
        let p = dir.0.join("echo.sock");
        echo_unix(&p).await;
        Target::Unix(p)
    } else if c.check == Check::Unreachable {
        Target::Tcp(format!("127.0.0.1:{}", free_port()).parse().unwrap())
    } else {
        Target::Tcp(echo)
    };
    let t = Tunnel::start(
        &dir.0,
        c.client,
        c.server,
        &c.args,
        &c.client_extra,
        &target,
        c.loss,
    )
    .await;
    let work = async {
        wait_listening(t.entry).await?;
        match c.check {
            Check::Load => load(t.entry, seed).await,
            Check::FourSessions => {
                load(t.entry, seed).await?;
                let n = t.client.text().matches("on connection:").count();
                if n != 4 {
                    return Err(format!("--conn 4 dialled {n} sessions"));
                }
                Ok(())
            }
            Check::Rotation => {
                // Short connections across several expiries (long transfers would die with
                // their session at expiry + TTL, as in kcptun).
                let t1 = Instant::now();
                let mut i = 0;
                while t1.elapsed() < Duration::from_secs(7) {
                    echo_once(t.entry, seed ^ (5000 + i), 4096)
                        .await
                        .map_err(|e| format!("connection {i} during rotation: {e}"))?;
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let sessions = t.client.text().matches("on connection:").count();
                if sessions < 3 {
                    return Err(format!(
                        "only {sessions} sessions dialled with --autoexpire 2"
                    ));
                }
                if t.client
                    .wait_for("closed due to ttl", Duration::from_secs(5))
                    .await
                    .is_none()
                {
                    return Err("the scavenger closed no session".into());
                }
                Ok(())
            }
            Check::Unreachable => {
                let Target::Tcp(dead) = &target else {
                    unreachable!()
                };
                let dead = *dead;
                for i in 0..3 {
                    let mut s = TcpStream::connect(t.entry)
                        .await
                        .map_err(|e| e.to_string())?;
                    let _ = s.write_all(b"anyone there?").await;
                    let mut b = [0u8; 16];
                    match tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => {}
                        Ok(Ok(n)) => {
                            return Err(format!("connection {i}: {n} bytes from a dead target"))
                        }
                        Err(_) => {
                            return Err(format!(
                                "connection {i} to a dead target still open after 10 s"
                            ))
                        }
                    }
                }
                if !t.server.alive() || !t.client.alive() {
                    return Err("a tunnel process exited".into());
                }
                // The target comes up: the same session carries data.
                let l = TcpListener::bind(dead)
                    .await
                    .map_err(|e| format!("bind {dead}: {e}"))?;
                tokio::spawn(serve_echo_tcp(l));
                load(t.entry, seed).await?;
                let sessions = t.client.text().matches("on connection:").count();
                if sessions != 1 {
                    return Err(format!(
                        "{sessions} sessions: the unreachable target ended one"
                    ));
                }
                if !t
                    .server
                    .text()
                    .to_lowercase()
                    .contains("connection refused")
                {
                    return Err("the server logged no dial error".into());
                }
                Ok(())
            }
        }
    };
    let died = async {
        tokio::select! {
            _ = t.client.exit() => {}
            _ = t.server.exit() => {}
        }
        // Let its last log lines land.
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let result = tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(150), work) => {
            r.unwrap_or_else(|_| Err("cell timed out after 150 s".into()))
        }
        _ = died => Err("a tunnel process exited".into()),
    };
    if let Err(e) = result {
        return Err(format!("{e}\n{}", t.logs()));
    }
    if !t.server.alive() || !t.client.alive() {
        return Err(format!("a tunnel process exited\n{}", t.logs()));
    }
    Ok(t0.elapsed())
}

fn matrix() -> Vec<Cell> {
    let mut cells = Vec::new();
    // smux version x compression x FEC, aes.
    for ver in ["1", "2"] {
        for comp in [true, false] {
            for fec in [("10", "3"), ("0", "0")] {
                let mut args = vec![
                    "--crypt",
                    "aes",
                    "--key",
                    "k1",
                    "--smuxver",
                    ver,
                    "--ds",
                    fec.0,
                    "--ps",
                    fec.1,
                ];
                if !comp {
                    args.push("--nocomp");
                }
                let name = format!(
                    "v{ver} {} fec{}/{}",
                    if comp { "comp" } else { "nocomp" },
                    fec.0,
                    fec.1
                );
                cells.extend(both(&name, &args));
            }
        }
    }
    for crypt in ["none", "xor", "salsa20", "3des", "sm4", "aes-128", "null"] {
        cells.extend(both(
            &format!("crypt {crypt}"),
            &["--crypt", crypt, "--key", "k2"],
        ));
    }
    for mut c in both("conn 4", &["--key", "k3"]) {
        c.client_extra = vec!["--conn", "4"];
        c.check = Check::FourSessions;
        cells.push(c);
    }
    for mut c in both("rotation", &["--key", "k4"]) {
        c.client_extra = vec!["--autoexpire", "2", "--scavengettl", "1"];
        c.check = Check::Rotation;
        cells.push(c);
    }
    for mut c in both("unreachable target", &["--key", "k5"]) {
        c.check = Check::Unreachable;
        cells.push(c);
    }
    for mut c in both("unix target", &["--key", "k6"]) {
        c.unix = true;
        cells.push(c);
    }
    for mut c in both("5% loss", &["--key", "k7", "--mode", "fast2"]) {
        c.loss = Some(0.05);
        cells.push(c);
    }
    // Controls.
    cells.push(cell(
        "go-client/go-server control",
        Imp::Go,
        Imp::Go,
        &["--key", "k8"],
    ));
    cells.push(cell(
        "rs-client/rs-server control",
        Imp::Rs,
        Imp::Rs,
        &["--key", "k8"],
    ));
    cells.push(cell(
        "rs-client/rs-server control v2 nocomp",
        Imp::Rs,
        Imp::Rs,
        &["--key", "k8", "--smuxver", "2", "--nocomp"],
    ));
    cells
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_with_debian_kcptun() {
    require_go();
    let echo = echo_tcp().await;
    // KCPTUN_CELLS=substring runs only the matching cells (for debugging one).
    let only = std::env::var("KCPTUN_CELLS").unwrap_or_default();
    let cells: Vec<Cell> = matrix()
        .into_iter()
        .filter(|c| c.name.contains(&only))
        .collect();
    let sem = Arc::new(Semaphore::new(3));
    let mut set = JoinSet::new();
    for (i, c) in cells.into_iter().enumerate() {
        let sem = sem.clone();
        set.spawn(async move {
            let _p = sem.acquire_owned().await.expect("semaphore");
            let name = c.name.clone();
            (i, name, run_cell(c, echo, 0xC0FFEE + i as u64).await)
        });
    }
    let mut results = Vec::new();
    while let Some(r) = set.join_next().await {
        results.push(r.expect("cell task"));
    }
    results.sort_by_key(|r| r.0);
    let mut failed = Vec::new();
    for (_, name, r) in &results {
        match r {
            Ok(d) => eprintln!("ok    {name:50} {:6.1} s", d.as_secs_f64()),
            Err(e) => {
                eprintln!("FAIL  {name}: {e}");
                failed.push(name.clone());
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cells failed: {failed:?}",
        failed.len(),
        results.len()
    );
}

/// A peer with another smux version or key: our server logs why, and a good client on the
/// same server is not disturbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_peers_get_a_clear_log_line() {
    require_go();
    let echo = echo_tcp().await;
    let dir = Scratch::new("mismatch");
    let port = free_port();
    let server_addr = format!("127.0.0.1:{port}");
    let server = Proc::spawn(
        RS_SERVER,
        &[
            "-l",
            &server_addr,
            "-t",
            &echo.to_string(),
            "--key",
            "right",
            "--smuxver",
            "1",
        ]
        .map(String::from),
        dir.0.join("server.log"),
    );
    let spawn_client = |name: &str, extra: &[&str]| {
        let entry: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut args: Vec<String> = ["-l", &entry.to_string(), "-r", &server_addr]
            .map(String::from)
            .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        (entry, Proc::spawn(GO_CLIENT, &args, dir.0.join(name)))
    };
    let (good, _good_client) = spawn_client("good.log", &["--key", "right", "--smuxver", "1"]);
    let (v2, _v2_client) = spawn_client("v2.log", &["--key", "right", "--smuxver", "2"]);
    let (badkey, _badkey_client) =
        spawn_client("badkey.log", &["--key", "wrong", "--smuxver", "1"]);
    let (plain, _plain_client) = spawn_client("plain.log", &["--key", "right", "--nocomp"]);
    // A second server without compression, and a compressing client.
    let port2 = free_port();
    let server2_addr = format!("127.0.0.1:{port2}");
    let server2 = Proc::spawn(
        RS_SERVER,
        &[
            "-l",
            &server2_addr,
            "-t",
            &echo.to_string(),
            "--key",
            "right",
            "--nocomp",
        ]
        .map(String::from),
        dir.0.join("server2.log"),
    );
    let comp_entry = format!("127.0.0.1:{}", free_port());
    let _comp_client = Proc::spawn(
        GO_CLIENT,
        &["-l", &comp_entry, "-r", &server2_addr, "--key", "right"].map(String::from),
        dir.0.join("comp.log"),
    );
    let comp: SocketAddr = comp_entry.parse().unwrap();
    wait_listening(good).await.unwrap();
    wait_listening(v2).await.unwrap();
    wait_listening(badkey).await.unwrap();
    wait_listening(plain).await.unwrap();
    wait_listening(comp).await.unwrap();
    // Traffic from the mismatched clients while the good one runs its load.
    let noise = tokio::spawn(async move {
        for i in 0..3 {
            let _ = tokio::time::timeout(Duration::from_secs(3), echo_once(v2, i, 1000)).await;
            let _ = tokio::time::timeout(Duration::from_secs(3), echo_once(badkey, i, 1000)).await;
            let _ = tokio::time::timeout(Duration::from_secs(3), echo_once(plain, i, 1000)).await;
            let _ = tokio::time::timeout(Duration::from_secs(3), echo_once(comp, i, 1000)).await;
        }
    });
    load(good, 42)
        .await
        .unwrap_or_else(|e| panic!("good client: {e}\n{}", server.tail(20)));
    noise.await.unwrap();
    assert!(
        server
            .wait_for(
                "smux version 2 received, session speaks 1",
                Duration::from_secs(10)
            )
            .await
            .is_some(),
        "no log line for the version-2 client:\n{}",
        server.tail(30)
    );
    assert!(
        server
            .wait_for("failed the integrity check", Duration::from_secs(15))
            .await
            .is_some(),
        "no log line for the wrong key:\n{}",
        server.tail(30)
    );
    assert!(
        server
            .wait_for("(the client does not compress", Duration::from_secs(10))
            .await
            .is_some(),
        "no hint for a client with --nocomp:\n{}",
        server.tail(30)
    );
    assert!(
        server2
            .wait_for("(the client compresses", Duration::from_secs(10))
            .await
            .is_some(),
        "no hint for a compressing client:\n{}",
        server2.tail(30)
    );
    load(good, 43)
        .await
        .unwrap_or_else(|e| panic!("good client after: {e}\n{}", server.tail(20)));
}
