//! The command line against the Go binaries: the key from the environment, log files, quiet
//! mode, SNMP logs, a clear fatal error for an address in use.

use super::*;

/// `KCPTUN_KEY` from the environment, `--log`, `--quiet` and `--snmplog` (kcptun's CSV with a Go
/// time layout in the file name), on our binaries against the Go ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_from_environment_log_file_quiet_and_snmplog() {
    require_go();
    let echo = echo_tcp().await;
    let dir = Scratch::new("envlog");
    let d = dir.0.display().to_string();
    // Our server takes its key from KCPTUN_KEY and logs to a file, quietly, with SNMP CSV.
    let port = free_port();
    let saddr = format!("127.0.0.1:{port}");
    let server = Proc::spawn_env(
        RS_SERVER,
        &[
            "-l",
            &saddr,
            "-t",
            &echo.to_string(),
            "--quiet",
            "--log",
            &format!("{d}/own.log"),
            "--snmplog",
            &format!("{d}/snmp-20060102.log"),
            "--snmpperiod",
            "1",
        ]
        .map(String::from),
        dir.0.join("server.out"),
        Some("from-env"),
    );
    let entry = format!("127.0.0.1:{}", free_port());
    let _go_client = Proc::spawn(
        GO_CLIENT,
        &["-l", &entry, "-r", &saddr, "--key", "from-env"].map(String::from),
        dir.0.join("go-client.log"),
    );
    // Our client takes its key from KCPTUN_KEY too, against a Go server.
    let gport = free_port();
    let gaddr = format!("127.0.0.1:{gport}");
    let _go_server = Proc::spawn(
        GO_SERVER,
        &["-l", &gaddr, "-t", &echo.to_string(), "--key", "from-env"].map(String::from),
        dir.0.join("go-server.log"),
    );
    let entry2 = format!("127.0.0.1:{}", free_port());
    let client = Proc::spawn_env(
        RS_CLIENT,
        &["-l", &entry2, "-r", &gaddr].map(String::from),
        dir.0.join("client.log"),
        Some("from-env"),
    );
    let logs = || {
        let own = std::fs::read_to_string(dir.0.join("own.log")).unwrap_or_default();
        format!(
            "our server (--log):\n{own}\nGo client:\n{}\nGo server:\n{}\nour client:\n{}",
            _go_client.tail(20),
            _go_server.tail(20),
            client.tail(20)
        )
    };
    for (e, pair) in [
        (&entry, "Go client -> our server"),
        (&entry2, "our client -> Go server"),
    ] {
        let a: SocketAddr = e.parse().unwrap();
        wait_listening(a).await.unwrap();
        for i in 0..5 {
            echo_once(a, i, 100_000)
                .await
                .unwrap_or_else(|err| panic!("{pair}, {e}, echo {i}: {err}\n{}", logs()));
        }
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let own = std::fs::read_to_string(dir.0.join("own.log")).expect("--log file");
    assert!(own.contains("listening on: 127.0.0.1"), "{own}");
    assert!(!own.contains("stream opened"), "--quiet:\n{own}");
    assert!(
        server.text().trim().is_empty(),
        "server wrote past --log: {}",
        server.text()
    );
    assert!(
        client.text().contains("stream opened"),
        "{}",
        client.tail(10)
    );
    let csv: Vec<PathBuf> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("snmp-")
        })
        .collect();
    assert_eq!(csv.len(), 1, "{csv:?}");
    let name = csv[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.len() == "snmp-20060102.log".len() && name[5..13].bytes().all(|b| b.is_ascii_digit()),
        "{name}"
    );
    let text = std::fs::read_to_string(&csv[0]).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "Unix,BytesSent,BytesReceived,MaxConn,ActiveOpens,PassiveOpens,CurrEstab,InErrs,\
         InCsumErrors,KCPInErrors,InPkts,OutPkts,InSegs,OutSegs,InBytes,OutBytes,RetransSegs,\
         FastRetransSegs,EarlyRetransSegs,LostSegs,RepeatSegs,FECParityShards,FECErrs,\
         FECRecovered,FECShortShards"
    );
    let row: Vec<u64> = lines
        .last()
        .expect("a data row")
        .split(',')
        .map(|f| f.parse().expect("numeric field"))
        .collect();
    assert_eq!(row.len(), 25);
    assert!(
        row[1] >= 500_000 && row[2] >= 500_000,
        "bytes sent/received: {row:?}"
    );
    assert_eq!(row[5], 1, "one passive open: {row:?}");
}

/// A listen address in use: both of our binaries exit with a line naming it (as kcptun's do).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_in_use_is_a_clear_fatal_error() {
    let dir = Scratch::new("inuse");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uaddr = udp.local_addr().unwrap().to_string();
    let taddr = tcp.local_addr().unwrap().to_string();
    let server = Proc::spawn(
        RS_SERVER,
        &["-l", &uaddr].map(String::from),
        dir.0.join("s.log"),
    );
    let client = Proc::spawn(
        RS_CLIENT,
        &["-l", &taddr, "-r", &uaddr].map(String::from),
        dir.0.join("c.log"),
    );
    for (p, addr) in [(&server, &uaddr), (&client, &taddr)] {
        tokio::time::timeout(Duration::from_secs(10), p.exit())
            .await
            .unwrap_or_else(|_| panic!("still running:\n{}", p.tail(5)));
        let text = p.text().to_lowercase();
        assert!(
            text.contains(&format!("listen {addr}")) && text.contains("address already in use"),
            "{text}"
        );
    }
}
