//go:build !linux

package watch

import "time"

// writers is Linux-only (inotify's IN_CLOSE_WRITE); elsewhere no file is ever known to be
// open for writing, and the empty-file hold and the debounce alone guard half-written
// files.
type writers struct{ closed chan struct{} }

func newWriters() (*writers, error)                { return &writers{closed: make(chan struct{})}, nil }
func (w *writers) watch(string) error              { return nil }
func (w *writers) unwatch(string)                  {}
func (w *writers) openFiles() map[string]time.Time { return nil }
func (w *writers) takeClosed() ([]string, bool)    { return nil, false }
func (w *writers) close() error                    { return nil }
