//go:build kcpgobench

// Extra benchmarks for kcp-go v5.6.1, measuring encryption and decryption separately on
// 1400-byte packets (kcp-go's own benchmarks time encrypt+decrypt of 1500 bytes together).
//
// This file does not build on its own: interop/bench-crypto.sh copies it into a scratch copy
// of Debian's kcp-go folder (package kcp) next to kcp-go's crypt_test.go only (the other test
// files start network servers or need testify), and runs `go test -bench` there. It defines
// `pass`, which crypt_test.go uses and kcp-go's sess_test.go would otherwise define. The
// kcpgobench build tag keeps Go tooling run over this repository from compiling it here.

package kcp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha1"
	"io"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/pbkdf2"
)

const splitPacket = 1400

var pass = pbkdf2.Key([]byte("it's a secrect"), []byte("kcp-go"), 4096, 32, sha1.New)

var splitCiphers = []struct {
	name string
	new  func(pass []byte) (BlockCrypt, error)
}{
	{"aes", func(p []byte) (BlockCrypt, error) { return NewAESBlockCrypt(p) }},
	{"aes-128", func(p []byte) (BlockCrypt, error) { return NewAESBlockCrypt(p[:16]) }},
	{"aes-192", func(p []byte) (BlockCrypt, error) { return NewAESBlockCrypt(p[:24]) }},
	{"salsa20", func(p []byte) (BlockCrypt, error) { return NewSalsa20BlockCrypt(p) }},
	{"blowfish", func(p []byte) (BlockCrypt, error) { return NewBlowfishBlockCrypt(p) }},
	{"twofish", func(p []byte) (BlockCrypt, error) { return NewTwofishBlockCrypt(p) }},
	{"cast5", func(p []byte) (BlockCrypt, error) { return NewCast5BlockCrypt(p[:16]) }},
	{"3des", func(p []byte) (BlockCrypt, error) { return NewTripleDESBlockCrypt(p[:24]) }},
	{"tea", func(p []byte) (BlockCrypt, error) { return NewTEABlockCrypt(p[:16]) }},
	{"xtea", func(p []byte) (BlockCrypt, error) { return NewXTEABlockCrypt(p[:16]) }},
	{"sm4", func(p []byte) (BlockCrypt, error) { return NewSM4BlockCrypt(p[:16]) }},
	{"xor", func(p []byte) (BlockCrypt, error) { return NewSimpleXORBlockCrypt(p) }},
	{"none", func(p []byte) (BlockCrypt, error) { return NewNoneBlockCrypt(p) }},
}

func benchSplit(b *testing.B, decrypt bool) {
	for _, c := range splitCiphers {
		bc, err := c.new(pass)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, splitPacket)
			io.ReadFull(rand.Reader, buf)
			b.SetBytes(splitPacket)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// In place, as kcp-go's session does.
				if decrypt {
					bc.Decrypt(buf, buf)
				} else {
					bc.Encrypt(buf, buf)
				}
			}
		})
	}
}

func BenchmarkSplitEncrypt(b *testing.B) { benchSplit(b, false) }
func BenchmarkSplitDecrypt(b *testing.B) { benchSplit(b, true) }

// Upstream kcp-go's AEAD layout (not in v5.6.1) uses Go's own AEADs: time Seal and Open of a
// 1400-byte payload with them, for comparison with this crate's AeadCrypt.
func benchAEAD(b *testing.B, open bool) {
	block, err := aes.NewCipher(pass[:16])
	if err != nil {
		b.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	chacha, err := chacha20poly1305.New(pass)
	if err != nil {
		b.Fatal(err)
	}
	for _, a := range []struct {
		name string
		aead cipher.AEAD
	}{{"aes-128-gcm", gcm}, {"chacha20-poly1305", chacha}} {
		b.Run(a.name, func(b *testing.B) {
			nonce := make([]byte, a.aead.NonceSize())
			payload := make([]byte, splitPacket, splitPacket+a.aead.Overhead())
			io.ReadFull(rand.Reader, payload)
			sealed := a.aead.Seal(nil, nonce, payload, nil)
			out := make([]byte, 0, splitPacket+a.aead.Overhead())
			b.SetBytes(splitPacket)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if open {
					if _, err := a.aead.Open(out[:0], nonce, sealed, nil); err != nil {
						b.Fatal(err)
					}
				} else {
					a.aead.Seal(out[:0], nonce, payload, nil)
				}
			}
		})
	}
}

func BenchmarkSplitSeal(b *testing.B) { benchAEAD(b, false) }
func BenchmarkSplitOpen(b *testing.B) { benchAEAD(b, true) }
