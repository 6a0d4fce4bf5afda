// smux-peer: Go's smux (v1 or v2), optionally over snappy framing as kcptun compresses it,
// over one TCP connection, for the interop tests of kcp_mio::smux and kcp_mio::snappy.
//
// Each stream carries: length u32 LE | seed u32 LE | length bytes of xorshift32(seed). The
// side that accepts a stream checks every byte and echoes everything back; the side that
// opened it checks the echo byte for byte, then closes the stream; the acceptor closes on
// end of stream. Writes and reads use varied sizes and short sleeps.
//
//	smux-peer -listen 127.0.0.1:0 | -connect ADDR  -mode open|accept -streams N
//	          [-ver 1|2] [-comp] [-seed S] [-max BYTES] [-idle MS] [-keepalive MS] [-timeout MS]
//	          [-smuxbuf B] [-streambuf B] [-frame B]
//
// With -listen it prints "listening ADDR" on stdout first. After all streams, -idle waits
// that long with no stream traffic (only keepalives), then runs one more stream, so both
// ends' keepalives are tested against the other's timeout. Exit status 0 only if every
// byte matched.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"sync"
	"time"

	"github.com/golang/snappy"
	"github.com/xtaci/smux"
)

type compStream struct {
	conn net.Conn
	w    *snappy.Writer
	r    *snappy.Reader
}

func (c *compStream) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *compStream) Write(p []byte) (int, error) {
	if _, err := c.w.Write(p); err != nil {
		return 0, err
	}
	if err := c.w.Flush(); err != nil {
		return 0, err
	}
	return len(p), nil
}
func (c *compStream) Close() error { return c.conn.Close() }

func fill(b []byte, x uint32) uint32 {
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return x
}

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "smux-peer: "+format+"\n", a...)
	os.Exit(1)
}

var (
	listen    = flag.String("listen", "", "address to listen on")
	connect   = flag.String("connect", "", "address to connect to")
	mode      = flag.String("mode", "open", "open: open streams and check echoes; accept: check and echo")
	streams   = flag.Int("streams", 8, "number of streams (before the idle one)")
	ver       = flag.Int("ver", 1, "smux version")
	comp      = flag.Bool("comp", false, "snappy framing")
	seed      = flag.Int64("seed", 1, "random seed")
	maxSize   = flag.Int("max", 1<<20, "largest stream payload")
	idle      = flag.Int("idle", 0, "idle milliseconds before the last stream")
	keepalive = flag.Int("keepalive", 10000, "keepalive interval, ms")
	timeout   = flag.Int("timeout", 30000, "keepalive timeout, ms")
	smuxbuf   = flag.Int("smuxbuf", 4194304, "session receive buffer")
	streambuf = flag.Int("streambuf", 65536, "stream buffer (v2 window)")
	frame     = flag.Int("frame", 32768, "max frame size")
)

// writeVaried writes b in pieces of random size with occasional short sleeps.
func writeVaried(w io.Writer, b []byte, rng *rand.Rand) error {
	for len(b) > 0 {
		n := 1 + rng.Intn(70000)
		if rng.Intn(4) == 0 {
			n = 1 + rng.Intn(100)
		}
		if n > len(b) {
			n = len(b)
		}
		if _, err := w.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
		if rng.Intn(16) == 0 {
			time.Sleep(time.Duration(rng.Intn(3000)) * time.Microsecond)
		}
	}
	return nil
}

// readCheck reads exactly len(want) bytes in pieces of random size and compares them.
func readCheck(r io.Reader, want []byte, rng *rand.Rand, what string) error {
	buf := make([]byte, 70000)
	got := 0
	for got < len(want) {
		n := 1 + rng.Intn(len(buf))
		if n > len(want)-got {
			n = len(want) - got
		}
		k, err := r.Read(buf[:n])
		for i := 0; i < k; i++ {
			if buf[i] != want[got+i] {
				return fmt.Errorf("%s: byte %d is %d, want %d", what, got+i, buf[i], want[got+i])
			}
		}
		got += k
		if err != nil {
			return fmt.Errorf("%s: after %d of %d bytes: %v", what, got, len(want), err)
		}
		if rng.Intn(16) == 0 {
			time.Sleep(time.Duration(rng.Intn(3000)) * time.Microsecond)
		}
	}
	return nil
}

func payload(size int, s uint32) []byte {
	b := make([]byte, 8+size)
	binary.LittleEndian.PutUint32(b, uint32(size))
	binary.LittleEndian.PutUint32(b[4:], s)
	fill(b[8:], s)
	return b
}

func openOne(sess *smux.Session, size int, rng *rand.Rand) error {
	st, err := sess.OpenStream()
	if err != nil {
		return fmt.Errorf("open: %v", err)
	}
	defer st.Close()
	data := payload(size, rng.Uint32()|1)
	errc := make(chan error, 1)
	wrng := rand.New(rand.NewSource(rng.Int63()))
	go func() { errc <- writeVaried(st, data, wrng) }()
	if err := readCheck(st, data, rng, fmt.Sprintf("stream %d echo", st.ID())); err != nil {
		return err
	}
	return <-errc
}

func acceptOne(st *smux.Stream, rng *rand.Rand) error {
	defer st.Close()
	hdr := make([]byte, 8)
	if _, err := io.ReadFull(st, hdr); err != nil {
		return fmt.Errorf("stream %d header: %v", st.ID(), err)
	}
	size := int(binary.LittleEndian.Uint32(hdr))
	if size > 64<<20 {
		return fmt.Errorf("stream %d: size %d", st.ID(), size)
	}
	want := payload(size, binary.LittleEndian.Uint32(hdr[4:]))
	if err := writeVaried(st, hdr, rng); err != nil {
		return err
	}
	// Read, check and echo in varied pieces.
	buf := make([]byte, 70000)
	got := 8
	for got < len(want) {
		n := 1 + rng.Intn(len(buf))
		if n > len(want)-got {
			n = len(want) - got
		}
		k, err := st.Read(buf[:n])
		for i := 0; i < k; i++ {
			if buf[i] != want[got+i] {
				return fmt.Errorf("stream %d: byte %d is %d, want %d", st.ID(), got+i, buf[i], want[got+i])
			}
		}
		if k > 0 {
			if err := writeVaried(st, buf[:k], rng); err != nil {
				return err
			}
		}
		got += k
		if err != nil {
			return fmt.Errorf("stream %d: after %d of %d bytes: %v", st.ID(), got, len(want), err)
		}
	}
	// The opener closes once it has the echo: expect end of stream, nothing more.
	if k, err := st.Read(buf); err != io.EOF {
		return fmt.Errorf("stream %d: %d bytes after the payload, then %v (want EOF)", st.ID(), k, err)
	}
	return nil
}

func main() {
	flag.Parse()
	var conn net.Conn
	var err error
	if *listen != "" {
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			fail("listen: %v", err)
		}
		fmt.Printf("listening %s\n", ln.Addr())
		os.Stdout.Sync()
		if tl, ok := ln.(*net.TCPListener); ok {
			tl.SetDeadline(time.Now().Add(30 * time.Second))
		}
		conn, err = ln.Accept()
		if err != nil {
			fail("accept: %v", err)
		}
		ln.Close()
	} else {
		conn, err = net.Dial("tcp", *connect)
		if err != nil {
			fail("dial: %v", err)
		}
	}
	var rw io.ReadWriteCloser = conn
	if *comp {
		rw = &compStream{conn: conn, w: snappy.NewBufferedWriter(conn), r: snappy.NewReader(conn)}
	}
	cfg := smux.DefaultConfig()
	cfg.Version = *ver
	cfg.KeepAliveInterval = time.Duration(*keepalive) * time.Millisecond
	cfg.KeepAliveTimeout = time.Duration(*timeout) * time.Millisecond
	cfg.MaxReceiveBuffer = *smuxbuf
	cfg.MaxStreamBuffer = *streambuf
	cfg.MaxFrameSize = *frame
	var sess *smux.Session
	if *mode == "open" {
		sess, err = smux.Client(rw, cfg)
	} else {
		sess, err = smux.Server(rw, cfg)
	}
	if err != nil {
		fail("smux: %v", err)
	}
	rng := rand.New(rand.NewSource(*seed))
	// Sizes: edge cases first, then random ones, some above the 262144-byte initial window.
	sizes := []int{0, 1, 32768, 65535, 300000}
	for len(sizes) < *streams {
		switch rng.Intn(3) {
		case 0:
			sizes = append(sizes, rng.Intn(200))
		case 1:
			sizes = append(sizes, rng.Intn(70000))
		default:
			sizes = append(sizes, rng.Intn(*maxSize+1))
		}
	}
	sizes = sizes[:*streams]

	var wg sync.WaitGroup
	errs := make(chan error, *streams+1)
	if *mode == "open" {
		for _, size := range sizes {
			wg.Add(1)
			r := rand.New(rand.NewSource(rng.Int63()))
			go func(size int) {
				defer wg.Done()
				time.Sleep(time.Duration(r.Intn(20)) * time.Millisecond)
				if err := openOne(sess, size, r); err != nil {
					errs <- err
				}
			}(size)
		}
		wg.Wait()
		if *idle > 0 {
			time.Sleep(time.Duration(*idle) * time.Millisecond)
			if err := openOne(sess, 1000, rng); err != nil {
				errs <- fmt.Errorf("after idle: %v", err)
			}
		}
	} else {
		total := *streams
		if *idle > 0 {
			total++
		}
		for i := 0; i < total; i++ {
			st, err := sess.AcceptStream()
			if err != nil {
				fail("accept stream %d: %v", i, err)
			}
			wg.Add(1)
			r := rand.New(rand.NewSource(rng.Int63()))
			go func() {
				defer wg.Done()
				if err := acceptOne(st, r); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
	}
	close(errs)
	bad := false
	for err := range errs {
		fmt.Fprintf(os.Stderr, "smux-peer: %v\n", err)
		bad = true
	}
	if bad {
		os.Exit(1)
	}
	if sess.IsClosed() {
		fail("session closed before the end")
	}
	// Let the last frames (FINs, UPDs) go out before closing the connection.
	time.Sleep(100 * time.Millisecond)
	sess.Close()
	fmt.Println("ok")
}
