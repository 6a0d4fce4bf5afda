// Added to the scratch copy of kcp-go by ../../bench-fec.sh: kcp-go's own BenchmarkFECEncode and
// BenchmarkFECDecode (fec_test.go, 1500-byte packets) with 1400-byte packets, kcp-go's default
// MTU, so both sizes can be compared with the Rust benches. Not part of kcp-go.

package kcp

import (
	"encoding/binary"
	"math/rand"
	"testing"
)

func BenchmarkFECDecode1400(b *testing.B) {
	const dataSize = 10
	const paritySize = 3
	const payLoad = 1400
	decoder := newFECDecoder(dataSize, paritySize)
	b.ReportAllocs()
	b.SetBytes(payLoad)
	for i := 0; i < b.N; i++ {
		if rand.Int()%(dataSize+paritySize) == 0 { // random loss
			continue
		}
		pkt := make([]byte, payLoad)
		binary.LittleEndian.PutUint32(pkt, uint32(i))
		if i%(dataSize+paritySize) >= dataSize {
			binary.LittleEndian.PutUint16(pkt[4:], typeParity)
		} else {
			binary.LittleEndian.PutUint16(pkt[4:], typeData)
		}
		decoder.decode(pkt)
	}
}

func BenchmarkFECEncode1400(b *testing.B) {
	const dataSize = 10
	const paritySize = 3
	const payLoad = 1400

	b.ReportAllocs()
	b.SetBytes(payLoad)
	encoder := newFECEncoder(dataSize, paritySize, 0)
	for i := 0; i < b.N; i++ {
		data := make([]byte, payLoad)
		encoder.encode(data)
	}
}
