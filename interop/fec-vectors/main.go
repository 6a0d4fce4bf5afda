// Command fec-vectors prints FEC packet streams produced by kcp-go v5.6.1's own encoder.
//
// kcp-go's encoder is unexported, so run.sh builds this program against a scratch copy of
// Debian's kcp-go package to which kcpshim/vectors.go is added; see run.sh. Output, one item
// per line (hex is lowercase):
//
//	case NAME DS PS START OFFSET   a new encoder newFECEncoder(DS, PS, OFFSET), next = START
//	in HEX                         a KCP datagram handed to encode()
//	data HEX                       the data packet's FEC part (from the FEC header on)
//	parity HEX                     a parity packet's FEC part, in emission order
//	end
package main

import (
	"bufio"
	"os"

	kcp "kcpfecscratch/kcp"
)

func main() {
	w := bufio.NewWriter(os.Stdout)
	kcp.FecVectors(w)
	if err := w.Flush(); err != nil {
		os.Exit(1)
	}
}
