// kcp-go v5.6.1 engine benchmarks matching kcp-core's `cargo bench --bench engine`, compiled as a
// test of a scratch copy of Debian's kcp-go package (it needs the unexported flush and segment
// encoder). interop/bench-engine.sh copies kcp-go and this file into a temporary GOPATH.
package kcp

import (
	"encoding/binary"
	"fmt"
	"testing"
)

const benchConv = 1

func header(cmd byte, wnd uint16, ts, sn, una uint32) []byte {
	b := make([]byte, IKCP_OVERHEAD)
	binary.LittleEndian.PutUint32(b[0:], benchConv)
	b[4] = cmd
	binary.LittleEndian.PutUint16(b[6:], wnd)
	binary.LittleEndian.PutUint32(b[8:], ts)
	binary.LittleEndian.PutUint32(b[12:], sn)
	binary.LittleEndian.PutUint32(b[16:], una)
	return b
}

// A sender with `window` 1000-byte segments in flight, all sent by one flush. RTOs are pushed
// out of reach so that nothing becomes due during a benchmark.
func inFlight(window int) *KCP {
	k := NewKCP(benchConv, func(buf []byte, size int) {})
	k.NoDelay(1, 10, 2, 1)
	k.WndSize(window, window)
	k.Input(header(IKCP_CMD_WINS, uint16(window), 0, 0, 0), true, false)
	msg := make([]byte, 1000)
	for i := 0; i < window; i++ {
		k.Send(msg)
	}
	k.rx_rto = 60000
	k.flush(false)
	return k
}

// ACKs for every segment but the first (lost), una 0, packed up to the MTU per datagram.
func ackBatch(window int) [][]byte {
	var out [][]byte
	var d []byte
	for sn := 1; sn < window; sn++ {
		if len(d)+IKCP_OVERHEAD > 1400 {
			out = append(out, d)
			d = nil
		}
		d = append(d, header(IKCP_CMD_ACK, uint16(window), 0, uint32(sn), 0)...)
	}
	return append(out, d)
}

func BenchmarkEngineSegmentEncode(b *testing.B) {
	seg := segment{conv: 0x11223344, cmd: IKCP_CMD_PUSH, wnd: 256, ts: 1000, sn: 5, una: 3}
	seg.data = make([]byte, 1376)
	buf := make([]byte, 1400)
	for i := 0; i < b.N; i++ {
		seg.encode(buf)
	}
}

func BenchmarkEngineInputAckBatch(b *testing.B) {
	for _, w := range []int{1024, 8192} {
		acks := ackBatch(w)
		b.Run(fmt.Sprint(w), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				k := inFlight(w)
				b.StartTimer()
				for _, a := range acks {
					k.Input(a, true, false)
				}
			}
		})
	}
}

func BenchmarkEngineFlushNothingDue(b *testing.B) {
	for _, w := range []int{32, 1024, 8192} {
		b.Run(fmt.Sprint(w), func(b *testing.B) {
			k := inFlight(w)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k.flush(false)
			}
		})
	}
}

func BenchmarkEngineFlushFullWindow(b *testing.B) {
	msg := make([]byte, 1376)
	for _, w := range []int{1024, 8192} {
		b.Run(fmt.Sprint(w), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				k := NewKCP(benchConv, func(buf []byte, size int) {})
				k.NoDelay(1, 10, 2, 1)
				k.WndSize(w, w)
				k.Input(header(IKCP_CMD_WINS, uint16(w), 0, 0, 0), true, false)
				for j := 0; j < w; j++ {
					k.Send(msg)
				}
				b.StartTimer()
				k.flush(false)
			}
		})
	}
}
