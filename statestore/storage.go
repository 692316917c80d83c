package statestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
)

// Redis layout, below the prefix P:
//
//	P:v:KEY    hash {d: the value (sealed when a key is given), m: modified, Unix ms}
//	P:index    sorted set of every KEY (score 0), for List and directory semantics
//	P:lock:N   the holder's random token, expiring (see lock.go)

var _ certmagic.Storage = (*Store)(nil)

func (s *Store) indexKey() string { return s.prefix + ":index" }

// Store puts value at key, atomically with its index entry.
func (s *Store) Store(ctx context.Context, key string, value []byte) error {
	data, err := s.sealValue(key, value)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.key("v", key), "d", data, "m", time.Now().UnixMilli())
		p.ZAdd(ctx, s.indexKey(), redis.Z{Member: key})
		return nil
	})
	if s.note(err) != nil {
		return fmt.Errorf("state store: store %s: %w", key, err)
	}
	return nil
}

// Load is the value at key; fs.ErrNotExist when there is none.
func (s *Store) Load(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	data, err := s.rdb.HGet(ctx, s.key("v", key), "d").Bytes()
	switch s.note(err); {
	case errors.Is(err, redis.Nil):
		return nil, fmt.Errorf("state store: %s: %w", key, fs.ErrNotExist)
	case err != nil:
		return nil, fmt.Errorf("state store: load %s: %w", key, err)
	}
	return s.openValue(key, data)
}

// Delete removes key and every key below it (key/...).
func (s *Store) Delete(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	below, err := s.below(ctx, key)
	if err != nil {
		return fmt.Errorf("state store: delete %s: %w", key, err)
	}
	names := append(below, key)
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, n := range names {
			p.Del(ctx, s.key("v", n))
			p.ZRem(ctx, s.indexKey(), n)
		}
		return nil
	})
	if s.note(err) != nil {
		return fmt.Errorf("state store: delete %s: %w", key, err)
	}
	return nil
}

// below lists the keys under the directory dir.
func (s *Store) below(ctx context.Context, dir string) ([]string, error) {
	dir = strings.TrimSuffix(dir, "/") + "/"
	keys, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.indexKey(), Start: "[" + dir, Stop: "[" + dir + "\xff", ByLex: true}).Result()
	return keys, s.note(err)
}

// Exists reports whether key is a value or a directory of values.
func (s *Store) Exists(ctx context.Context, key string) bool {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	n, err := s.rdb.Exists(ctx, s.key("v", key)).Result()
	if s.note(err) != nil {
		return false
	}
	if n > 0 {
		return true
	}
	below, err := s.below(ctx, key)
	return err == nil && len(below) > 0
}

// List is the keys in the directory dir: its values and subdirectories, or with recursive
// every value below it.
func (s *Store) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	below, err := s.below(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("state store: list %s: %w", dir, err)
	}
	if recursive {
		return below, nil
	}
	base := strings.TrimSuffix(dir, "/") + "/"
	var out []string
	for _, k := range below {
		child := base + strings.SplitN(strings.TrimPrefix(k, base), "/", 2)[0]
		if len(out) == 0 || out[len(out)-1] != child {
			out = append(out, child)
		}
	}
	return out, nil
}

// Stat describes key: a value's size and time, or a directory.
func (s *Store) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	vals, err := s.rdb.HMGet(ctx, s.key("v", key), "d", "m").Result()
	if s.note(err) != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("state store: stat %s: %w", key, err)
	}
	if d, ok := vals[0].(string); ok {
		ms, _ := strconv.ParseInt(fmt.Sprint(vals[1]), 10, 64)
		return certmagic.KeyInfo{Key: key, Modified: time.UnixMilli(ms), Size: int64(len(d)), IsTerminal: true}, nil
	}
	if below, err := s.below(ctx, key); err == nil && len(below) > 0 {
		return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
	}
	return certmagic.KeyInfo{}, fmt.Errorf("state store: %s: %w", key, fs.ErrNotExist)
}

// String names the store (certmagic uses it to tell storages apart).
func (s *Store) String() string { return "redis:" + s.where + "/" + s.prefix }
