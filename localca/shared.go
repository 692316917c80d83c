package localca

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// Store is a fleet's shared state store (certmagic.Storage satisfies it): with one, every
// edge issues from the same root.
type Store interface {
	Load(ctx context.Context, key string) ([]byte, error)
	Store(ctx context.Context, key string, value []byte) error
	Lock(ctx context.Context, name string) error
	Unlock(ctx context.Context, name string) error
}

// Keys of the shared CA in a Store.
const (
	StoreRootKey = "tlsd/ca/root.crt"
	StoreKeyKey  = "tlsd/ca/root.key"
	storeLock    = "tlsd_local_ca"
)

// OpenShared loads the fleet's CA from st, creating it on first use under the store's
// lock, so edges starting together agree on one root.
func OpenShared(ctx context.Context, st Store, now func() time.Time) (*CA, error) {
	if now == nil {
		now = time.Now
	}
	if ca, err := loadShared(ctx, st, now); !errors.Is(err, fs.ErrNotExist) {
		return ca, err
	}
	if err := st.Lock(ctx, storeLock); err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	defer st.Unlock(context.WithoutCancel(ctx), storeLock)
	if ca, err := loadShared(ctx, st, now); !errors.Is(err, fs.ErrNotExist) {
		return ca, err // another edge created it while this one waited
	}
	ca, keyPEM, rootPEM, err := newRoot(DefaultName, now)
	if err != nil {
		return nil, err
	}
	// The key first: a root stored without its key would stop every edge.
	if err := st.Store(ctx, StoreKeyKey, keyPEM); err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	if err := st.Store(ctx, StoreRootKey, rootPEM); err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	return ca, nil
}

// loadShared: fs.ErrNotExist when the store holds no root yet.
func loadShared(ctx context.Context, st Store, now func() time.Time) (*CA, error) {
	crtPEM, err := st.Load(ctx, StoreRootKey)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("local CA: %w", err)
	}
	keyPEM, err := st.Load(ctx, StoreKeyKey)
	if err != nil {
		return nil, fmt.Errorf("local CA: the store holds the root %s but not its key %s: %v", StoreRootKey, StoreKeyKey, err)
	}
	return fromPEM(crtPEM, keyPEM, "state store "+StoreRootKey, "state store "+StoreKeyKey, now)
}
