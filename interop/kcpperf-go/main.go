// Command kcp-perf-go speaks the "kcp-perf" test protocol (see README.md) as client
// and server on top of kcp-go v5 (Debian's v5.6.1). The Rust test suite and the
// benchmark scripts drive it as a child process; its command line and output are a
// contract, documented in README.md.
package main

import (
	"crypto/sha1"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
	"golang.org/x/crypto/pbkdf2"
)

// ---------------------------------------------------------------------------
// Protocol

const (
	magic      = "KPRF"
	version    = 1
	headerSize = 16

	testEcho   = 1
	testSink   = 2
	testSource = 3

	sourceChunk = 32768 // server's source writes: min(remaining, sourceChunk) bytes each
	readBufSize = 65536 // receive buffer; larger than any message (mss <= 1500)

)

var testNames = map[string]byte{"echo": testEcho, "sink": testSink, "source": testSource}

func testName(t byte) string {
	for k, v := range testNames {
		if v == t {
			return k
		}
	}
	return fmt.Sprintf("test#%d", t)
}

// randStream is the payload this program sends: a seeded xorshift stream, deliberately not
// the Rust side's pattern, so a receiver that checks payload values instead of the CRC or
// the echo fails in CI. Any bytes are valid payload.
type randStream struct{ x uint64 }

func newRandStream(seed uint64) *randStream { return &randStream{x: seed | 1} }

// fill writes the stream's next bytes into b, eight per step (a byte per step cost about a
// nanosecond per byte: a sink client's CPU went to making its payload).
func (r *randStream) fill(b []byte) {
	for len(b) >= 8 {
		r.step()
		binary.LittleEndian.PutUint64(b, r.x)
		b = b[8:]
	}
	for i := range b {
		r.step()
		b[i] = byte(r.x >> 24)
	}
}

func (r *randStream) step() {
	r.x ^= r.x << 13
	r.x ^= r.x >> 7
	r.x ^= r.x << 17
}

var seedCounter uint64

func nextSeed() uint64 {
	return uint64(time.Now().UnixNano()) ^ atomic.AddUint64(&seedCounter, 0x9E3779B97F4A7C15)
}

// Frames of a count-0 (--duration) run: u32 length, then the payload; length 0 ends it.
const maxFrame = 1 << 20

func makeFrame(payload []byte) []byte {
	f := make([]byte, 4+len(payload))
	binary.LittleEndian.PutUint32(f, uint32(len(payload)))
	copy(f[4:], payload)
	return f
}

// readFrame reads one frame as a byte stream (across message boundaries).
func (c *conn) readFrame() ([]byte, error) {
	c.deadline()
	var h [4]byte
	if _, err := io.ReadFull(c.s, h[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(h[:])
	if n > maxFrame {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.s, b); err != nil {
		return nil, err
	}
	return b, nil
}

// readFull reads exactly n bytes as a byte stream.
func (c *conn) readFull(n int) ([]byte, error) {
	c.deadline()
	b := make([]byte, n)
	if _, err := io.ReadFull(c.s, b); err != nil {
		return nil, err
	}
	return b, nil
}

func makeHeader(test byte, count uint64) []byte {
	h := make([]byte, headerSize)
	copy(h, magic)
	h[4] = version
	h[5] = test
	binary.LittleEndian.PutUint64(h[8:], count)
	return h
}

func parseHeader(h []byte) (test byte, count uint64, err error) {
	if len(h) != headerSize {
		return 0, 0, fmt.Errorf("header is %d bytes, want %d", len(h), headerSize)
	}
	if string(h[:4]) != magic {
		return 0, 0, fmt.Errorf("bad magic %q", h[:4])
	}
	if h[4] != version {
		return 0, 0, fmt.Errorf("unsupported version %d", h[4])
	}
	if h[5] < testEcho || h[5] > testSource {
		return 0, 0, fmt.Errorf("unknown test %d", h[5])
	}
	if h[6] != 0 || h[7] != 0 {
		return 0, 0, fmt.Errorf("reserved bytes not zero: %d %d", h[6], h[7])
	}
	return h[5], binary.LittleEndian.Uint64(h[8:]), nil
}

// ---------------------------------------------------------------------------
// Options

type sizeFlag uint64

func (s *sizeFlag) String() string { return strconv.FormatUint(uint64(*s), 10) }
func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

// parseSize accepts a plain integer or one with a K, M or G suffix (powers of 1024).
func parseSize(v string) (uint64, error) {
	t := strings.TrimSpace(v)
	mul := uint64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'k', 'K':
			mul = 1 << 10
		case 'm', 'M':
			mul = 1 << 20
		case 'g', 'G':
			mul = 1 << 30
		}
		if mul != 1 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil || n > math.MaxUint64/mul {
		return 0, fmt.Errorf("bad size %q (want an integer, optionally with suffix K, M or G)", v)
	}
	return n * mul, nil
}

type options struct {
	json                          bool
	crypt, key                    string
	datashard, parityshard        int
	mode                          string
	nodelay, interval, resend, nc int
	mtu, sndwnd, rcvwnd           int
	stream, acknodelay            bool
	sockbuf, dscp                 int
	timeout                       float64
	block                         kcp.BlockCrypt // derived (the listener's, and for mss)
	pass                          []byte         // derived key, for a block per client session
}

func (o *options) register(fs *flag.FlagSet) {
	fs.BoolVar(&o.json, "json", false, "one JSON line per session on stdout")
	fs.StringVar(&o.crypt, "crypt", "aes", "aes, aes-128, aes-192, salsa20, blowfish, twofish, cast5, 3des, tea, xtea, xor, sm4, none, null")
	fs.StringVar(&o.key, "key", "it's a secrect", "pre-shared secret")
	fs.IntVar(&o.datashard, "datashard", 10, "FEC data shards (0 with parityshard 0: no FEC)")
	fs.IntVar(&o.parityshard, "parityshard", 3, "FEC parity shards")
	fs.StringVar(&o.mode, "mode", "fast", "normal, fast, fast2, fast3, manual")
	fs.IntVar(&o.nodelay, "nodelay", 0, "manual mode: nodelay")
	fs.IntVar(&o.interval, "interval", 50, "manual mode: update interval (ms)")
	fs.IntVar(&o.resend, "resend", 0, "manual mode: fast resend")
	fs.IntVar(&o.nc, "nc", 0, "manual mode: 1 disables congestion control")
	fs.IntVar(&o.mtu, "mtu", 1350, "maximum UDP payload size (at most 1500)")
	fs.IntVar(&o.sndwnd, "sndwnd", 128, "send window (packets)")
	fs.IntVar(&o.rcvwnd, "rcvwnd", 512, "receive window (packets)")
	fs.BoolVar(&o.stream, "stream", true, "stream mode; --stream=false selects message mode")
	fs.BoolVar(&o.acknodelay, "acknodelay", false, "flush ACKs immediately")
	fs.IntVar(&o.sockbuf, "sockbuf", 4194304, "UDP socket read/write buffer (bytes)")
	fs.IntVar(&o.dscp, "dscp", 0, "DSCP (6 bits)")
	fs.Float64Var(&o.timeout, "timeout", 30, "fail a session after this many seconds without progress")
}

func (o *options) finish() error {
	switch o.mode {
	case "normal":
		o.nodelay, o.interval, o.resend, o.nc = 0, 40, 2, 1
	case "fast":
		o.nodelay, o.interval, o.resend, o.nc = 0, 30, 2, 1
	case "fast2":
		o.nodelay, o.interval, o.resend, o.nc = 1, 20, 2, 1
	case "fast3":
		o.nodelay, o.interval, o.resend, o.nc = 1, 10, 2, 1
	case "manual":
	default:
		return fmt.Errorf("unknown --mode %q (normal, fast, fast2, fast3, manual)", o.mode)
	}
	if o.mtu < 50+28 || o.mtu > 1500 {
		return fmt.Errorf("--mtu %d out of range (78..1500)", o.mtu)
	}
	if o.sndwnd <= 0 || o.rcvwnd <= 0 {
		return errors.New("--sndwnd and --rcvwnd must be positive")
	}
	if o.datashard < 0 || o.parityshard < 0 || o.datashard+o.parityshard > 255 {
		return errors.New("--datashard/--parityshard must be >= 0 with a sum of at most 255")
	}
	if o.timeout <= 0 {
		return errors.New("--timeout must be positive")
	}
	if o.interval <= 0 {
		return errors.New("--interval must be positive")
	}
	if o.dscp < 0 || o.dscp > 63 {
		return errors.New("--dscp must be 0..63")
	}
	o.pass = pbkdf2.Key([]byte(o.key), []byte("kcp-go"), 4096, 32, sha1.New)
	block, err := makeBlock(o.crypt, o.pass)
	if err != nil {
		return err
	}
	o.block = block
	return nil
}

// makeBlock builds the BlockCrypt from the derived key exactly as kcptun does (the key
// comes from pbkdf2 over --key with kcptun's salt and count). "null" returns a nil
// interface: no crypto header at all.
func makeBlock(crypt string, pass []byte) (kcp.BlockCrypt, error) {
	var b kcp.BlockCrypt
	var err error
	switch crypt {
	case "null":
		return nil, nil
	case "none":
		b, err = kcp.NewNoneBlockCrypt(pass)
	case "aes":
		b, err = kcp.NewAESBlockCrypt(pass[:32])
	case "aes-128":
		b, err = kcp.NewAESBlockCrypt(pass[:16])
	case "aes-192":
		b, err = kcp.NewAESBlockCrypt(pass[:24])
	case "salsa20":
		b, err = kcp.NewSalsa20BlockCrypt(pass)
	case "blowfish":
		b, err = kcp.NewBlowfishBlockCrypt(pass)
	case "twofish":
		b, err = kcp.NewTwofishBlockCrypt(pass)
	case "cast5":
		b, err = kcp.NewCast5BlockCrypt(pass[:16])
	case "3des":
		b, err = kcp.NewTripleDESBlockCrypt(pass[:24])
	case "tea":
		b, err = kcp.NewTEABlockCrypt(pass[:16])
	case "xtea":
		b, err = kcp.NewXTEABlockCrypt(pass[:16])
	case "xor":
		b, err = kcp.NewSimpleXORBlockCrypt(pass)
	case "sm4":
		b, err = kcp.NewSM4BlockCrypt(pass[:16])
	default:
		return nil, fmt.Errorf("unknown --crypt %q (aes, aes-128, aes-192, salsa20, blowfish, twofish, cast5, 3des, tea, xtea, xor, sm4, none, null)", crypt)
	}
	if err != nil {
		return nil, fmt.Errorf("--crypt %s: %v", crypt, err)
	}
	return b, nil
}

// mss is the largest message kcp-go sends as one segment with these options:
// mtu - 24 (KCP header) - 20 (nonce+CRC, unless null) - 8 (FEC header, if FEC is on).
func (o *options) mss() int {
	m := o.mtu - 24
	if o.block != nil {
		m -= 20
	}
	if o.datashard > 0 && o.parityshard > 0 {
		m -= 8
	}
	return m
}

// apply sets the per-session options (kcptun's order).
func (o *options) apply(s *kcp.UDPSession) {
	s.SetStreamMode(o.stream)
	s.SetWriteDelay(false)
	s.SetNoDelay(o.nodelay, o.interval, o.resend, o.nc)
	s.SetWindowSize(o.sndwnd, o.rcvwnd)
	s.SetMtu(o.mtu)
	s.SetACKNoDelay(o.acknodelay)
}

func (o *options) timeoutDur() time.Duration {
	return time.Duration(o.timeout * float64(time.Second))
}

// ---------------------------------------------------------------------------
// Session I/O

type conn struct {
	s       *kcp.UDPSession
	stream  bool
	timeout time.Duration
	buf     []byte
}

func newConn(s *kcp.UDPSession, o *options) *conn {
	return &conn{s: s, stream: o.stream, timeout: o.timeoutDur(), buf: make([]byte, readBufSize)}
}

// Every operation gets a fresh deadline: --timeout is a "no progress" timeout.
func (c *conn) deadline() { c.s.SetDeadline(time.Now().Add(c.timeout)) }

func (c *conn) write(b []byte) error {
	c.deadline()
	_, err := c.s.Write(b)
	return err
}

// readMsg returns one message (message mode) or whatever bytes are available (stream
// mode), at most max bytes in stream mode. The slice is valid until the next read.
func (c *conn) readSome(max int) ([]byte, error) {
	b := c.buf
	if c.stream && max > 0 && max < len(b) {
		b = b[:max]
	}
	c.deadline()
	n, err := c.s.Read(b)
	if err != nil {
		return nil, err
	}
	if !c.stream && max > 0 && n > max {
		return nil, fmt.Errorf("got a %d-byte message, expected at most %d bytes", n, max)
	}
	return b[:n], nil
}

// readExact returns exactly n bytes: in message mode one message that must be n bytes long.
func (c *conn) readExact(n int) ([]byte, error) {
	if n > len(c.buf) {
		c.buf = make([]byte, n)
	}
	c.deadline()
	if c.stream {
		if _, err := io.ReadFull(c.s, c.buf[:n]); err != nil {
			return nil, err
		}
		return c.buf[:n], nil
	}
	m, err := c.s.Read(c.buf)
	if err != nil {
		return nil, err
	}
	if m != n {
		return nil, fmt.Errorf("got a %d-byte message, expected %d bytes", m, n)
	}
	return c.buf[:n], nil
}

// ---------------------------------------------------------------------------
// Reports

type report struct {
	Role         string  `json:"role"`
	Test         string  `json:"test"`
	Bytes        uint64  `json:"bytes"`
	Seconds      float64 `json:"seconds"`
	MBPerS       float64 `json:"mb_per_s"`
	MbitPerS     float64 `json:"mbit_per_s"`
	RttP50       int64   `json:"rtt_p50_us"`
	RttP99       int64   `json:"rtt_p99_us"`
	RttMax       int64   `json:"rtt_max_us"`
	CPUSeconds   float64 `json:"cpu_seconds"`
	PeakRSSKB    int64   `json:"peak_rss_kb"`
	Retrans      uint64  `json:"retrans"`
	FECRecovered uint64  `json:"fec_recovered"`
	OK           bool    `json:"ok"`
	// Extras (not part of the required key set).
	Summary bool   `json:"summary"`          // true on the client's per-run line only
	Conn    *int   `json:"conn,omitempty"`   // client session lines: session index (0-based)
	Conns   int    `json:"conns,omitempty"`  // client summary line: number of sessions
	Remote  string `json:"remote,omitempty"` // server: client address
	Error   string `json:"error,omitempty"`

	rtts []time.Duration
}

var outMu sync.Mutex

func (r *report) finish(start, end time.Time) {
	if !start.IsZero() && end.After(start) {
		r.Seconds = end.Sub(start).Seconds()
		r.MBPerS = float64(r.Bytes) / r.Seconds / 1e6
		r.MbitPerS = r.MBPerS * 8
	}
	if len(r.rtts) > 0 {
		sort.Slice(r.rtts, func(i, j int) bool { return r.rtts[i] < r.rtts[j] })
		pct := func(p float64) int64 {
			i := int(math.Ceil(p*float64(len(r.rtts)))) - 1
			if i < 0 {
				i = 0
			}
			return r.rtts[i].Microseconds()
		}
		r.RttP50, r.RttP99, r.RttMax = pct(0.50), pct(0.99), r.rtts[len(r.rtts)-1].Microseconds()
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		r.CPUSeconds = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
		r.PeakRSSKB = ru.Maxrss
	}
	r.Retrans = atomic.LoadUint64(&kcp.DefaultSnmp.RetransSegs)
	r.FECRecovered = atomic.LoadUint64(&kcp.DefaultSnmp.FECRecovered)
}

func (r *report) print(asJSON bool) {
	outMu.Lock()
	defer outMu.Unlock()
	if asJSON {
		b, _ := json.Marshal(r)
		os.Stdout.Write(append(b, '\n'))
		return
	}
	var who string
	switch {
	case r.Summary:
		who = fmt.Sprintf("client %s total (%d conns)", r.Test, r.Conns)
	case r.Role == "client":
		who = fmt.Sprintf("client %s conn %d", r.Test, *r.Conn)
	default:
		who = fmt.Sprintf("server %s from %s", r.Test, r.Remote)
	}
	status := "ok"
	if !r.OK {
		status = "FAILED: " + r.Error
	}
	rtt := ""
	if r.RttMax > 0 {
		rtt = fmt.Sprintf(", rtt p50 %d us p99 %d us max %d us", r.RttP50, r.RttP99, r.RttMax)
	}
	fmt.Printf("%s: %d bytes in %.3f s = %.2f MB/s%s, retrans %d, fec recovered %d: %s\n",
		who, r.Bytes, r.Seconds, r.MBPerS, rtt, r.Retrans, r.FECRecovered, status)
}

// ---------------------------------------------------------------------------
// Server

func runServer(args []string) int {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	var o options
	o.register(fs)
	listen := fs.String("listen", "127.0.0.1:0", "UDP address to listen on")
	linger := fs.Float64("linger", 5, "seconds to keep a finished session open so the peer gets the tail")
	fs.Parse(args)
	if fs.NArg() > 0 {
		return usageErr("server: unexpected argument %q", fs.Arg(0))
	}
	if err := o.finish(); err != nil {
		return usageErr("server: %v", err)
	}
	udpaddr, err := net.ResolveUDPAddr("udp", *listen)
	if err != nil {
		return usageErr("server: --listen %s: %v", *listen, err)
	}
	pc, err := net.ListenUDP("udp", udpaddr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "server: listen %s: %v\n", *listen, err)
		return 1
	}
	l, err := kcp.ServeConn(o.block, o.datashard, o.parityshard, pc)
	if err != nil {
		fmt.Fprintf(os.Stderr, "server: %v\n", err)
		return 1
	}
	if err := l.SetReadBuffer(o.sockbuf); err != nil {
		fmt.Fprintf(os.Stderr, "server: warning: SetReadBuffer: %v\n", err)
	}
	if err := l.SetWriteBuffer(o.sockbuf); err != nil {
		fmt.Fprintf(os.Stderr, "server: warning: SetWriteBuffer: %v\n", err)
	}
	if o.dscp != 0 {
		if err := l.SetDSCP(o.dscp); err != nil {
			fmt.Fprintf(os.Stderr, "server: warning: SetDSCP: %v\n", err)
		}
	}
	fmt.Fprintf(os.Stderr, "listening %s\n", pc.LocalAddr())
	lingerDur := time.Duration(*linger * float64(time.Second))
	for {
		s, err := l.AcceptKCP()
		if err != nil {
			fmt.Fprintf(os.Stderr, "server: accept: %v\n", err)
			return 1
		}
		// The session already exists (and has taken its first packet) with kcp-go's
		// defaults; set ours before anything is sent on it.
		o.apply(s)
		go serveSession(s, &o, lingerDur)
	}
}

func serveSession(s *kcp.UDPSession, o *options, linger time.Duration) {
	c := newConn(s, o)
	remote := s.RemoteAddr().String()
	// In message mode the header is one message: read it whole, so that a message of
	// the wrong length is reported as a bad header.
	var h []byte
	var err error
	if c.stream {
		h, err = c.readExact(headerSize)
	} else {
		h, err = c.readSome(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "server: session %s (conv %08x): reading header: %v\n", remote, s.GetConv(), err)
		s.Close()
		return
	}
	test, count, err := parseHeader(h)
	if err != nil {
		fmt.Fprintf(os.Stderr, "server: session %s (conv %08x): bad header: %v; closing it\n", remote, s.GetConv(), err)
		s.Close()
		return
	}
	r := &report{Role: "server", Test: testName(test), Remote: remote, OK: true}
	var start, end time.Time
	switch test {
	case testEcho:
		start, end, err = serverEcho(c, count, r)
	case testSink:
		start, end, err = serverSink(c, count, r)
	case testSource:
		start, end, err = serverSource(c, count, r)
	}
	if err != nil {
		r.OK, r.Error = false, err.Error()
	}
	r.finish(start, end)
	r.print(o.json)
	if !r.OK {
		fmt.Fprintf(os.Stderr, "server: session %s (conv %08x) %s: %v\n", remote, s.GetConv(), r.Test, err)
	}
	// kcp has no FIN and Close() drops unacknowledged segments: keep the session
	// alive for a while so that retransmissions can still deliver our tail.
	s.SetReadDeadline(time.Now().Add(linger))
	buf := make([]byte, readBufSize)
	for {
		if _, err := s.Read(buf); err != nil {
			break
		}
	}
	s.Close()
}

func serverEcho(c *conn, count uint64, r *report) (start, end time.Time, err error) {
	if count == 0 {
		for {
			b, err := c.readFrame()
			if err != nil {
				return start, end, fmt.Errorf("after %d bytes: %v", r.Bytes, err)
			}
			if start.IsZero() {
				start = time.Now()
			}
			if err := c.write(makeFrame(b)); err != nil {
				return start, end, fmt.Errorf("echoing after %d bytes: %v", r.Bytes, err)
			}
			if len(b) == 0 {
				return start, end, nil
			}
			r.Bytes += uint64(len(b))
			end = time.Now()
		}
	}
	for r.Bytes < count {
		max := readBufSize
		if count-r.Bytes < uint64(max) {
			max = int(count - r.Bytes)
		}
		b, err := c.readSome(max)
		if err != nil {
			return start, end, fmt.Errorf("after %d bytes: %v", r.Bytes, err)
		}
		if start.IsZero() {
			start = time.Now()
		}
		if werr := c.write(b); werr != nil {
			return start, end, fmt.Errorf("echoing after %d bytes: %v", r.Bytes, werr)
		}
		r.Bytes += uint64(len(b))
		end = time.Now()
	}
	return start, end, nil
}

func serverSink(c *conn, count uint64, r *report) (start, end time.Time, err error) {
	crc := uint32(0)
	for count == 0 || r.Bytes < count {
		var b []byte
		var err error
		if count == 0 {
			b, err = c.readFrame()
		} else {
			max := readBufSize
			if count-r.Bytes < uint64(max) {
				max = int(count - r.Bytes)
			}
			b, err = c.readSome(max)
		}
		if err != nil {
			return start, end, fmt.Errorf("after %d bytes: %v", r.Bytes, err)
		}
		if count == 0 && len(b) == 0 {
			break // the end frame
		}
		if start.IsZero() {
			start = time.Now()
		}
		end = time.Now()
		crc = crc32.Update(crc, crc32.IEEETable, b)
		r.Bytes += uint64(len(b))
	}
	ans := make([]byte, 12)
	binary.LittleEndian.PutUint64(ans, r.Bytes)
	binary.LittleEndian.PutUint32(ans[8:], crc)
	if err := c.write(ans); err != nil {
		return start, end, fmt.Errorf("sending the answer: %v", err)
	}
	return start, end, nil
}

func serverSource(c *conn, count uint64, r *report) (start, end time.Time, err error) {
	buf := make([]byte, sourceChunk)
	crc := uint32(0)
	rnd := newRandStream(nextSeed())
	// Count 0: the client's stop frame (4 zero bytes) ends the run.
	var stop int32
	stopErr := make(chan error, 1)
	if count == 0 {
		go func() {
			b, err := c.readFull(4)
			if err == nil && binary.LittleEndian.Uint32(b) != 0 {
				err = errors.New("the stop frame is not empty")
			}
			atomic.StoreInt32(&stop, 1)
			stopErr <- err
		}()
	}
	start = time.Now()
	for (count == 0 && atomic.LoadInt32(&stop) == 0) || (count > 0 && r.Bytes < count) {
		n := uint64(sourceChunk)
		if count > 0 && count-r.Bytes < n {
			n = count - r.Bytes
		}
		b := buf[:n]
		rnd.fill(b)
		out := b
		if count == 0 {
			out = makeFrame(b)
		}
		if err := c.write(out); err != nil {
			return start, end, fmt.Errorf("after %d bytes: %v", r.Bytes, err)
		}
		crc = crc32.Update(crc, crc32.IEEETable, b)
		r.Bytes += n
		end = time.Now()
	}
	if count == 0 {
		if err := <-stopErr; err != nil {
			return start, end, fmt.Errorf("reading the stop frame: %v", err)
		}
		if err := c.write(makeFrame(nil)); err != nil {
			return start, end, fmt.Errorf("sending the end frame: %v", err)
		}
	}
	tail := make([]byte, 4)
	binary.LittleEndian.PutUint32(tail, crc)
	if err := c.write(tail); err != nil {
		return start, end, fmt.Errorf("sending the CRC: %v", err)
	}
	return start, time.Now(), nil
}

// ---------------------------------------------------------------------------
// Client

func runClient(args []string) int {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	var o options
	o.register(fs)
	connect := fs.String("connect", "", "server UDP address (required)")
	testFlag := fs.String("test", "", "echo, sink or source (required)")
	var nbytes, msg sizeFlag = 1 << 20, 0
	fs.Var(&nbytes, "bytes", "bytes per session (suffix K, M, G: powers of 1024)")
	fs.Var(&msg, "msg", "message size (default 1024 for echo, 16K otherwise)")
	conns := fs.Int("conns", 1, "concurrent sessions")
	duration := fs.Float64("duration", 0, "run each session for this many seconds instead of --bytes (header count 0)")
	rate := fs.Float64("rate", 0, "echo: messages per second per session, message k sent at the session's start + k/rate (0: back to back)")
	ramp := fs.Float64("ramp", 0, "start session i at i/conns of this many seconds (0: all at once)")
	fs.Parse(args)
	if fs.NArg() > 0 {
		return usageErr("client: unexpected argument %q", fs.Arg(0))
	}
	if *connect == "" {
		return usageErr("client: --connect is required")
	}
	test, ok := testNames[*testFlag]
	if !ok {
		return usageErr("client: --test must be echo, sink or source (got %q)", *testFlag)
	}
	if *conns < 1 {
		return usageErr("client: --conns must be at least 1")
	}
	if *duration < 0 {
		return usageErr("client: --duration must be >= 0")
	}
	if *rate < 0 || *ramp < 0 {
		return usageErr("client: --rate and --ramp must be >= 0")
	}
	if *rate > 0 && test != testEcho {
		return usageErr("client: --rate applies to --test echo only")
	}
	if nbytes == 0 && *duration == 0 {
		return usageErr("client: --bytes 0 needs --duration")
	}
	if err := o.finish(); err != nil {
		return usageErr("client: %v", err)
	}
	if _, err := net.ResolveUDPAddr("udp", *connect); err != nil {
		return usageErr("client: --connect %s: %v", *connect, err)
	}
	m := int(msg)
	if msg == 0 {
		m = 16 << 10
		if test == testEcho {
			m = 1024
		}
	} else if msg > 1<<30 {
		return usageErr("client: --msg too large")
	}
	if !o.stream && m > o.mss() {
		fmt.Fprintf(os.Stderr, "client: message mode: --msg %d capped at the session mss %d\n", m, o.mss())
		m = o.mss()
	}
	count := uint64(nbytes)
	var dur time.Duration
	if *duration > 0 {
		count, dur = 0, time.Duration(*duration*float64(time.Second))
	}

	reports := make([]*report, *conns)
	starts := make([]time.Time, *conns)
	ends := make([]time.Time, *conns)
	var period time.Duration
	if *rate > 0 {
		period = time.Duration(float64(time.Second) / *rate)
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if *ramp > 0 {
				time.Sleep(time.Until(t0.Add(time.Duration(float64(i) / float64(*conns) * *ramp * float64(time.Second)))))
			}
			r := &report{Role: "client", Test: testName(test), Conn: &i}
			starts[i], ends[i] = clientSession(*connect, &o, test, count, dur, m, period, r)
			r.finish(starts[i], ends[i])
			r.print(o.json)
			reports[i] = r
		}(i)
	}
	wg.Wait()

	sum := &report{Role: "client", Test: testName(test), Summary: true, Conns: *conns, OK: true}
	var first, last time.Time
	var errs []string
	for i, r := range reports {
		sum.Bytes += r.Bytes
		sum.rtts = append(sum.rtts, r.rtts...)
		if !r.OK {
			sum.OK = false
			errs = append(errs, fmt.Sprintf("conn %d: %s", i, r.Error))
		}
		if !starts[i].IsZero() && (first.IsZero() || starts[i].Before(first)) {
			first = starts[i]
		}
		if ends[i].After(last) {
			last = ends[i]
		}
	}
	sum.Error = strings.Join(errs, "; ")
	sum.finish(first, last)
	if *conns > 1 || o.json {
		sum.print(o.json)
	}
	if !sum.OK {
		for _, e := range errs {
			fmt.Fprintf(os.Stderr, "client: %s\n", e)
		}
		return 1
	}
	return 0
}

// clientSession runs one session; it fills r (Bytes, rtts, OK, Error) and returns the
// throughput interval.
func clientSession(addr string, o *options, test byte, count uint64, dur time.Duration, msg int, period time.Duration, r *report) (start, end time.Time) {
	fail := func(format string, a ...interface{}) {
		r.OK, r.Error = false, fmt.Sprintf(format, a...)
	}
	// A block of its own: kcp-go's block ciphers (aes, tea, xtea, blowfish, twofish, cast5,
	// 3des, sm4) keep their CFB scratch buffer in the object, so sessions that share one
	// and send at the same time now and then put a corrupted datagram on the wire.
	block, err := makeBlock(o.crypt, o.pass)
	if err != nil {
		fail("crypt: %v", err)
		return
	}
	s, err := kcp.DialWithOptions(addr, block, o.datashard, o.parityshard)
	if err != nil {
		fail("dial: %v", err)
		return
	}
	defer s.Close()
	o.apply(s)
	if err := s.SetReadBuffer(o.sockbuf); err != nil {
		fmt.Fprintf(os.Stderr, "client: warning: SetReadBuffer: %v\n", err)
	}
	if err := s.SetWriteBuffer(o.sockbuf); err != nil {
		fmt.Fprintf(os.Stderr, "client: warning: SetWriteBuffer: %v\n", err)
	}
	if o.dscp != 0 {
		if err := s.SetDSCP(o.dscp); err != nil {
			fmt.Fprintf(os.Stderr, "client: warning: SetDSCP: %v\n", err)
		}
	}
	c := newConn(s, o)
	if err := c.write(makeHeader(test, count)); err != nil {
		fail("sending header: %v", err)
		return
	}
	r.OK = true
	var deadline time.Time
	if dur > 0 {
		deadline = time.Now().Add(dur)
	}
	more := func() bool {
		if dur > 0 {
			return time.Now().Before(deadline)
		}
		return r.Bytes < count
	}
	rnd := newRandStream(nextSeed())
	switch test {
	case testEcho:
		buf := make([]byte, msg)
		sessionStart := time.Now()
		for k := 0; more(); k++ {
			if period > 0 && k > 0 {
				time.Sleep(time.Until(sessionStart.Add(time.Duration(k) * period)))
			}
			n := uint64(msg)
			if dur == 0 && count-r.Bytes < n {
				n = count - r.Bytes
			}
			b := buf[:n]
			rnd.fill(b)
			t0 := time.Now()
			if start.IsZero() {
				start = t0
			}
			var got []byte
			var err error
			if dur > 0 {
				if err = c.write(makeFrame(b)); err == nil {
					got, err = c.readFrame()
				}
			} else if err = c.write(b); err == nil {
				got, err = c.readExact(int(n))
			}
			if err != nil {
				fail("echo: %d bytes at offset %d: %v", n, r.Bytes, err)
				return
			}
			end = time.Now()
			if string(got) != string(b) {
				fail("echo: echoed %d bytes at offset %d differ", n, r.Bytes)
				return
			}
			r.rtts = append(r.rtts, end.Sub(t0))
			r.Bytes += n
		}
		if dur > 0 {
			if err := c.write(makeFrame(nil)); err != nil {
				fail("echo: sending the end frame: %v", err)
				return
			}
			if b, err := c.readFrame(); err != nil || len(b) != 0 {
				fail("echo: the end frame did not come back (%v)", err)
			}
		}
	case testSink:
		buf := make([]byte, msg)
		crc := uint32(0)
		start = time.Now()
		for more() {
			n := uint64(msg)
			if dur == 0 && count-r.Bytes < n {
				n = count - r.Bytes
			}
			b := buf[:n]
			rnd.fill(b)
			out := b
			if dur > 0 {
				out = makeFrame(b)
			}
			if err := c.write(out); err != nil {
				fail("sink: writing at offset %d: %v", r.Bytes, err)
				return
			}
			crc = crc32.Update(crc, crc32.IEEETable, b)
			r.Bytes += n
			end = time.Now()
		}
		var ans []byte
		var err error
		if dur > 0 {
			if err = c.write(makeFrame(nil)); err == nil {
				ans, err = c.readFull(12)
			}
		} else {
			ans, err = c.readExact(12)
		}
		if err != nil {
			fail("sink: reading the answer: %v", err)
			return
		}
		end = time.Now()
		gotN, gotCRC := binary.LittleEndian.Uint64(ans), binary.LittleEndian.Uint32(ans[8:])
		if gotN != r.Bytes || gotCRC != crc {
			fail("sink: server got %d bytes with CRC %08x, sent %d bytes with CRC %08x", gotN, gotCRC, r.Bytes, crc)
		}
	case testSource:
		crc := uint32(0)
		stopped := false
		for {
			var b []byte
			var err error
			if dur > 0 {
				if !stopped && !more() {
					if err := c.write(makeFrame(nil)); err != nil {
						fail("source: sending the stop frame: %v", err)
						return
					}
					stopped = true
				}
				b, err = c.readFrame()
				if err == nil && len(b) == 0 {
					break
				}
			} else {
				if r.Bytes >= count {
					break
				}
				max := readBufSize
				if count-r.Bytes < uint64(max) {
					max = int(count - r.Bytes)
				}
				b, err = c.readSome(max)
			}
			if err != nil {
				fail("source: reading at offset %d: %v", r.Bytes, err)
				return
			}
			now := time.Now()
			if start.IsZero() {
				start = now
			}
			end = now
			crc = crc32.Update(crc, crc32.IEEETable, b)
			r.Bytes += uint64(len(b))
		}
		var tail []byte
		var err error
		if dur > 0 {
			tail, err = c.readFull(4)
		} else {
			tail, err = c.readExact(4)
		}
		if err != nil {
			fail("source: reading the CRC: %v", err)
			return
		}
		if got := binary.LittleEndian.Uint32(tail); got != crc {
			fail("source: server CRC %08x, received data has CRC %08x", got, crc)
		}
	}
	return
}

// ---------------------------------------------------------------------------

func usageErr(format string, a ...interface{}) int {
	fmt.Fprintf(os.Stderr, "kcp-perf-go "+format+"\n", a...)
	return 2
}

const usage = `usage:
  kcp-perf-go server [--listen ADDR] [--json] [shared flags]
  kcp-perf-go client --connect ADDR --test echo|sink|source [--bytes SIZE] [--msg SIZE]
                     [--conns N] [--rate R] [--ramp SECS] [--duration SECS] [--json]
                     [shared flags]
shared flags (kcptun names): --crypt --key --datashard --parityshard --mode
  --nodelay --interval --resend --nc --mtu --sndwnd --rcvwnd --stream --acknodelay
  --sockbuf --dscp --timeout
run "kcp-perf-go server -h" or "kcp-perf-go client -h" for details`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "server":
		os.Exit(runServer(os.Args[2:]))
	case "client":
		os.Exit(runClient(os.Args[2:]))
	case "-h", "-help", "--help", "help":
		fmt.Println(usage)
	default:
		fmt.Fprintf(os.Stderr, "kcp-perf-go: unknown subcommand %q\n%s\n", os.Args[1], usage)
		os.Exit(2)
	}
}
