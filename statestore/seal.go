package statestore

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
)

// sealedMagic starts every sealed value, so a store read with the wrong expectations
// (sealed without a key, plain with one) says so instead of handing on garbage.
var sealedMagic = []byte("tlsd-sealed-v1\n")

// sealer encrypts and authenticates values with AES-256-GCM; the storage key is the
// additional data, so a value moved to another key does not open.
type sealer struct{ aead cipher.AEAD }

func loadSealer(path string) (*sealer, error) {
	key, err := readKeyFile(path, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("state store key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("state store key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

func decodeBase64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawURLEncoding.DecodeString(s)
}

func (s *Store) sealValue(key string, value []byte) ([]byte, error) {
	if s.seal == nil {
		return value, nil
	}
	out := make([]byte, len(sealedMagic)+s.seal.aead.NonceSize(), len(sealedMagic)+s.seal.aead.NonceSize()+len(value)+s.seal.aead.Overhead())
	copy(out, sealedMagic)
	nonce := out[len(sealedMagic):]
	rand.Read(nonce)
	return s.seal.aead.Seal(out, nonce, value, []byte(key)), nil
}

// errSealed and errNotSealed name the two ways keys and values can disagree.
var (
	errSealed    = errors.New("the value is sealed: give the fleet's --state-store-key")
	errNotSealed = errors.New("the value is not sealed with --state-store-key: refused (written without the key, or by someone else)")
	errOpen      = errors.New("the value does not open with --state-store-key (another key, or altered)")
)

func (s *Store) openValue(key string, data []byte) ([]byte, error) {
	sealed := bytes.HasPrefix(data, sealedMagic)
	switch {
	case s.seal == nil && sealed:
		return nil, fmt.Errorf("state store: %s: %w", key, errSealed)
	case s.seal == nil:
		return data, nil
	case !sealed:
		return nil, fmt.Errorf("state store: %s: %w", key, errNotSealed)
	}
	rest := data[len(sealedMagic):]
	n := s.seal.aead.NonceSize()
	if len(rest) < n {
		return nil, fmt.Errorf("state store: %s: %w", key, errOpen)
	}
	plain, err := s.seal.aead.Open(nil, rest[:n], rest[n:], []byte(key))
	if err != nil {
		return nil, fmt.Errorf("state store: %s: %w", key, errOpen)
	}
	return plain, nil
}
