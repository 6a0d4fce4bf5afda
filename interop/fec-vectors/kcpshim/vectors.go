// This file is added to a scratch copy of kcp-go v5.6.1 (package kcp) by ../run.sh, to reach
// the unexported FEC encoder. It is not part of kcp-go.

package kcp

import (
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
)

type fecCase struct {
	name   string
	ds, ps int
	n      int    // datagrams to encode
	start  uint32 // first seqid (0 as in kcp-go; near paws to exercise the wrap)
	offset int    // FEC header offset (20 when crypto is on)
}

// FecVectors writes deterministic FEC streams from kcp-go's encoder to w.
func FecVectors(w io.Writer) {
	rng := rand.New(rand.NewSource(20261124))
	paws := func(ds, ps int) uint32 { t := uint32(ds + ps); return 0xffffffff / t * t }
	cases := []fecCase{
		{"3-2", 3, 2, 41, 0, 0},
		{"10-3", 10, 3, 67, 0, 0},
		{"3-2-wrap", 3, 2, 25, paws(3, 2) - 2*5, 0},
		{"10-3-wrap", 10, 3, 45, paws(10, 3) - 2*13, 0},
		{"10-3-offset20", 10, 3, 30, 0, 20},
	}
	for _, c := range cases {
		enc := newFECEncoder(c.ds, c.ps, c.offset)
		enc.next = c.start
		fmt.Fprintf(w, "case %s %d %d %d %d\n", c.name, c.ds, c.ps, c.start, c.offset)
		for i := 0; i < c.n; i++ {
			var l int
			switch rng.Intn(4) {
			case 0:
				l = 24 // an ACK-only datagram
			case 1:
				l = 1400 - 8 - c.offset // a full datagram at MTU 1400
			default:
				l = 24 + rng.Intn(1400-8-c.offset-24)
			}
			payload := make([]byte, l)
			rng.Read(payload)
			buf := make([]byte, c.offset+fecHeaderSizePlus2+l)
			copy(buf[c.offset+fecHeaderSizePlus2:], payload)
			ps := enc.encode(buf)
			fmt.Fprintf(w, "in %s\n", hex.EncodeToString(payload))
			fmt.Fprintf(w, "data %s\n", hex.EncodeToString(buf[c.offset:]))
			for _, p := range ps {
				fmt.Fprintf(w, "parity %s\n", hex.EncodeToString(p[c.offset:]))
			}
		}
		fmt.Fprintln(w, "end")
	}
}
