//! `kcp_mio::smux` (v1 and v2) over `kcp_mio::snappy` framing (or none) against Go's smux
//! 1.5.16 over golang/snappy 0.0.2, as kcptun stacks them, over a loopback TCP connection.
//!
//! The Go peer (`interop/smux-peer`, built by `interop/build-go.sh`) either opens streams and
//! we accept them, or accepts the streams we open. Every stream carries `length u32 LE | seed
//! u32 LE | xorshift32(seed) bytes`; the acceptor checks every byte and echoes everything,
//! the opener checks the echo byte for byte and closes. Both sides use varied write and read
//! sizes; small receive buffers and windows make back-pressure and `UPD`s happen; an idle
//! pause with short keepalive timeouts checks that each side's `NOP`s keep the other alive.
//! If Go or the Debian packages are missing, these tests fail.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kcp_mio::smux::{Config, Error, Event, Keepalive, Role, Session, StreamId, Version};
use kcp_mio::snappy::{Decoder, Encoder};
use kcp_testkit::go::smux::{self as peer, IDLE_MS, KEEPALIVE_MS, TIMEOUT_MS};
use kcp_testkit::rng::Rng;

/// One Go peer at a time (the machine has few cores).
static SERIAL: Mutex<()> = Mutex::new(());

const RUN_LIMIT: Duration = Duration::from_secs(90);

/// The session, its framing and the socket.
struct Wire {
    sock: TcpStream,
    session: Session,
    enc: Option<Encoder>,
    dec: Option<Decoder>,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    frame: Vec<u8>,
    eof: bool,
    bytes_in: u64,
}

impl Wire {
    fn new(sock: TcpStream, session: Session, comp: bool) -> Wire {
        sock.set_nonblocking(true).unwrap();
        sock.set_nodelay(true).unwrap();
        Wire {
            sock,
            session,
            enc: comp.then(Encoder::new),
            dec: comp.then(Decoder::new),
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            frame: Vec::new(),
            eof: false,
            bytes_in: 0,
        }
    }

    /// Moves bytes between the socket and the session; true if anything moved.
    fn pump(&mut self, now: Instant) -> bool {
        let mut progress = false;
        while self.out.len() - self.out_pos < 256 * 1024 {
            self.frame.clear();
            if self.session.poll_transmit(&mut self.frame).is_none() {
                break;
            }
            match &mut self.enc {
                // One chunk per frame, as kcptun flushes each frame.
                Some(enc) => enc.encode(&self.frame, &mut self.out),
                None => self.out.extend_from_slice(&self.frame),
            }
        }
        while self.out_pos < self.out.len() {
            match self.sock.write(&self.out[self.out_pos..]) {
                Ok(n) => {
                    self.out_pos += n;
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // Go's socket is gone (see the reset on reading below): what is left unsent
                // goes nowhere.
                Err(e)
                    if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) =>
                {
                    self.eof = true;
                    self.out_pos = self.out.len();
                }
                Err(e) => panic!("socket write: {e}"),
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        if !self.eof && self.inbuf.len() < 256 * 1024 {
            let mut tmp = [0u8; 65536];
            match self.sock.read(&mut tmp) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.inbuf.extend_from_slice(&tmp[..n]);
                    self.bytes_in += n as u64;
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // Go closes its socket 100 ms after its last stream; a frame of ours that
                // arrives after that (a last FIN, a keepalive) makes its kernel answer with a
                // reset. It ends the connection as a close does: during the streams the
                // caller's `eof` check fails the run, after them Go's exit status decides.
                Err(e) if e.kind() == ErrorKind::ConnectionReset => self.eof = true,
                Err(e) => panic!("socket read: {e}"),
            }
        }
        loop {
            let mut moved = 0;
            match &mut self.dec {
                Some(dec) => {
                    if !dec.decoded().is_empty() {
                        let n = self
                            .session
                            .handle_input(dec.decoded())
                            .expect("smux input");
                        dec.consume(n);
                        moved += n;
                    }
                    if dec.decoded().is_empty() && !self.inbuf.is_empty() {
                        let n = dec.feed(&self.inbuf).expect("snappy input");
                        self.inbuf.drain(..n);
                        moved += n;
                    }
                }
                None => {
                    let n = self.session.handle_input(&self.inbuf).expect("smux input");
                    self.inbuf.drain(..n);
                    moved += n;
                }
            }
            if moved == 0 {
                break;
            }
            progress = true;
        }
        // After the input that was there: a loop that was descheduled must not time out a
        // peer whose keepalives wait in the socket.
        self.session.handle_timeout(now);
        progress
    }
}

/// Receive side of one stream: checks the header and the payload bytes.
struct Checker {
    header: Vec<u8>,
    len: usize,
    x: u32,
    got: usize,
}

impl Checker {
    fn new() -> Checker {
        Checker {
            header: Vec::new(),
            len: 0,
            x: 0,
            got: 0,
        }
    }
    fn push(&mut self, id: StreamId, data: &[u8]) {
        for &b in data {
            if self.header.len() < 8 {
                self.header.push(b);
                if self.header.len() == 8 {
                    self.len = u32::from_le_bytes(self.header[..4].try_into().unwrap()) as usize;
                    self.x = u32::from_le_bytes(self.header[4..].try_into().unwrap());
                }
                continue;
            }
            assert!(
                self.got < self.len,
                "stream {id}: more than {} bytes",
                self.len
            );
            let want = peer::next_byte(&mut self.x);
            assert_eq!(b, want, "stream {id}: byte {} of {}", self.got, self.len);
            self.got += 1;
        }
    }
    fn complete(&self) -> bool {
        self.header.len() == 8 && self.got == self.len
    }
}

struct Run {
    version: Version,
    comp: bool,
    /// Go opens the streams (and we accept), or we open them.
    go_opens: bool,
    /// Go listens (we connect), or the other way round.
    go_listens: bool,
    idle: bool,
    go_frame: usize,
    seed: u64,
}

fn spawn_go(run: &Run) -> (Child, TcpStream) {
    let mut cmd = peer::command(
        run.go_opens,
        run.version as u8,
        run.comp,
        8,
        run.seed,
        run.idle,
    );
    cmd.args(["-frame", &run.go_frame.to_string()]);
    if run.go_listens {
        cmd.args(["-listen", "127.0.0.1:0"]);
        let mut child = cmd.spawn().expect("run smux-peer");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        (
            child,
            TcpStream::connect(kcp_testkit::go::listening(&line)).unwrap(),
        )
    } else {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        cmd.args(["-connect", &listener.local_addr().unwrap().to_string()]);
        let child = cmd.spawn().expect("run smux-peer");
        listener.set_nonblocking(true).unwrap();
        let start = Instant::now();
        loop {
            match listener.accept() {
                Ok((s, _)) => return (child, s),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(
                        start.elapsed() < Duration::from_secs(20),
                        "Go peer did not connect"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }
}

fn our_config(version: Version) -> Config {
    Config {
        version,
        keepalive: Some(Keepalive {
            interval: Duration::from_millis(KEEPALIVE_MS),
            timeout: Duration::from_millis(TIMEOUT_MS),
        }),
        max_receive_buffer: 200_000,
        max_stream_buffer: 65536,
        stream_send_buffer: 48 * 1024,
        ..Config::default()
    }
}

/// A stream this side opened: what is left to write, and the echo checker.
struct Opened {
    data: Vec<u8>,
    written: usize,
    echo: Checker,
    closed: bool,
}

/// A stream the peer opened: the checker and the echo still to write.
struct Accepted {
    check: Checker,
    echo: Vec<u8>,
    eof: bool,
    closed: bool,
}

fn run(run: Run) {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (mut child, sock) = spawn_go(&run);
    let role = if run.go_opens {
        Role::Server
    } else {
        Role::Client
    };
    let start = Instant::now();
    let session = Session::new(our_config(run.version), role, start).unwrap();
    let mut w = Wire::new(sock, session, run.comp);
    let mut rng = Rng(run.seed);
    let mut buf = vec![0u8; 70_000];

    let total = 8 + usize::from(run.idle);
    let mut sizes: Vec<usize> = vec![0, 1, 32768, 65535, 300_000, 1_000_000];
    while sizes.len() < 8 {
        sizes.push(rng.below(1 << 20) as usize);
    }
    let mut opened: HashMap<StreamId, Opened> = HashMap::new();
    let mut accepted: HashMap<StreamId, Accepted> = HashMap::new();
    let mut done = 0usize;
    let mut idle_until: Option<Instant> = None;
    let mut nop_in_before_idle = 0;

    while done < total {
        let now = Instant::now();
        assert!(
            now - start < RUN_LIMIT,
            "run did not finish: {done} of {total} streams"
        );
        assert!(
            w.session.close_reason().is_none(),
            "session ended: {:?}",
            w.session.close_reason()
        );
        let mut progress = w.pump(now);
        assert!(
            !w.eof,
            "Go closed (or reset) the connection after {done} of {total} streams"
        );

        // Open our streams, staggered.
        if !run.go_opens {
            let due = (now - start).as_millis() as usize / 3;
            while opened.len() < sizes.len().min(due + 1) {
                let id = w.session.open().unwrap();
                let size = sizes[opened.len()];
                let seed = rng.below(u32::MAX as u64) as u32 | 1;
                opened.insert(
                    id,
                    Opened {
                        data: peer::payload(size, seed),
                        written: 0,
                        echo: Checker::new(),
                        closed: false,
                    },
                );
            }
            if run.idle && done == 8 && opened.len() == 8 {
                let until = *idle_until.get_or_insert_with(|| {
                    nop_in_before_idle = w.session.stats().nop_in;
                    now + Duration::from_millis(IDLE_MS)
                });
                if now >= until {
                    let id = w.session.open().unwrap();
                    opened.insert(
                        id,
                        Opened {
                            data: peer::payload(1000, 77),
                            written: 0,
                            echo: Checker::new(),
                            closed: false,
                        },
                    );
                }
            }
        }
        while let Some(id) = w.session.accept() {
            assert!(run.go_opens, "Go opened a stream in accept mode");
            accepted.insert(
                id,
                Accepted {
                    check: Checker::new(),
                    echo: Vec::new(),
                    eof: false,
                    closed: false,
                },
            );
            if accepted.len() == 9 {
                // Go opened the last stream after its idle pause: our NOPs kept it alive, and
                // we saw Go's.
                assert!(w.session.stats().nop_in >= 2 * (IDLE_MS / KEEPALIVE_MS) / 3);
            }
        }
        while let Some(e) = w.session.poll_event() {
            if let Event::Closed(r) = e {
                panic!("session closed: {r}");
            }
        }

        for (&id, s) in opened.iter_mut().filter(|(_, s)| !s.closed) {
            if s.written < s.data.len() {
                let n = (1 + rng.below(70_000) as usize).min(s.data.len() - s.written);
                match w.session.write(id, &s.data[s.written..s.written + n]) {
                    Ok(k) => {
                        s.written += k;
                        progress = true;
                    }
                    Err(Error::WouldBlock) => {}
                    Err(e) => panic!("stream {id} write: {e}"),
                }
            }
            let n = 1 + rng.below(buf.len() as u64) as usize;
            match w.session.read(id, &mut buf[..n]) {
                Ok(0) => panic!("stream {id}: end of stream before the whole echo"),
                Ok(k) => {
                    s.echo.push(id, &buf[..k]);
                    progress = true;
                }
                Err(Error::WouldBlock) => {}
                Err(e) => panic!("stream {id} read: {e}"),
            }
            if s.echo.complete() && s.echo.len == s.data.len() - 8 {
                w.session.close_stream(id).unwrap();
                s.closed = true;
                done += 1;
            }
        }

        for (&id, s) in accepted.iter_mut().filter(|(_, s)| !s.closed) {
            if !s.echo.is_empty() {
                match w.session.write(id, &s.echo) {
                    Ok(k) => {
                        s.echo.drain(..k);
                        progress = true;
                    }
                    Err(Error::WouldBlock) => {}
                    Err(e) => panic!("stream {id} echo: {e}"),
                }
            }
            if !s.eof && s.echo.len() < 128 * 1024 {
                let n = 1 + rng.below(buf.len() as u64) as usize;
                match w.session.read(id, &mut buf[..n]) {
                    Ok(0) => {
                        assert!(s.check.complete(), "stream {id}: end of stream early");
                        s.eof = true;
                        progress = true;
                    }
                    Ok(k) => {
                        s.check.push(id, &buf[..k]);
                        s.echo.extend_from_slice(&buf[..k]);
                        progress = true;
                    }
                    Err(Error::WouldBlock) => {}
                    Err(e) => panic!("stream {id} read: {e}"),
                }
            }
            if s.eof && s.echo.is_empty() {
                w.session.close_stream(id).unwrap();
                s.closed = true;
                done += 1;
            }
        }
        if !progress {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
    if run.idle && !run.go_opens {
        assert!(w.session.stats().nop_in - nop_in_before_idle >= (IDLE_MS / KEEPALIVE_MS) / 2);
    }
    // Flush the last FINs, then wait for Go's verdict.
    let flush_until = Instant::now() + Duration::from_secs(20);
    loop {
        let now = Instant::now();
        w.pump(now);
        if w.eof {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "Go peer failed: {status}");
        }
        assert!(now < flush_until, "Go peer did not finish");
        std::thread::sleep(Duration::from_millis(1));
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "Go peer failed: {status}");
    let st = w.session.stats();
    assert!(st.data_in > 300_000, "{st:?}");
    if run.version == Version::V2 {
        assert!(st.upd_out > 0, "{st:?}");
    }
    eprintln!(
        "{:?} comp={} go_opens={}: {:?}, {} bytes in",
        run.version, run.comp, run.go_opens, st, w.bytes_in
    );
}

fn case(version: Version, comp: bool, go_opens: bool, idle: bool, go_frame: usize, seed: u64) {
    run(Run {
        version,
        comp,
        go_opens,
        go_listens: seed.is_multiple_of(2),
        idle,
        go_frame,
        seed,
    });
}

#[test]
fn go_opens_v1_plain() {
    case(Version::V1, false, true, true, 32768, 1);
}

#[test]
fn go_opens_v1_snappy() {
    case(Version::V1, true, true, false, 65535, 2);
}

#[test]
fn go_opens_v2_plain() {
    case(Version::V2, false, true, false, 65535, 3);
}

#[test]
fn go_opens_v2_snappy() {
    case(Version::V2, true, true, true, 32768, 4);
}

#[test]
fn we_open_v1_plain() {
    case(Version::V1, false, false, false, 32768, 5);
}

#[test]
fn we_open_v1_snappy() {
    case(Version::V1, true, false, true, 32768, 6);
}

#[test]
fn we_open_v2_plain() {
    case(Version::V2, false, false, true, 65535, 7);
}

#[test]
fn we_open_v2_snappy() {
    case(Version::V2, true, false, false, 32768, 8);
}
