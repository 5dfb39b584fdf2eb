// Package watchfile tells when a file changed, by a stat: cheap enough to
// do on every use (a TLS handshake, an authenticated call), so a file that
// is replaced takes effect at its next use with no watcher goroutine.
package watchfile

import (
	"os"
	"time"
)

// File is a path and what its last stat said.
type File struct {
	Path    string
	modTime time.Time
	size    int64
}

// Changed stats the file and reports whether its modification time or size
// differ from the last call's (true on the first call). The stat error, if
// any, is for the caller to report; the file then counts as unchanged.
func (f *File) Changed() (bool, error) {
	fi, err := os.Stat(f.Path)
	if err != nil {
		return false, err
	}
	if fi.ModTime().Equal(f.modTime) && fi.Size() == f.size {
		return false, nil
	}
	f.modTime, f.size = fi.ModTime(), fi.Size()
	return true, nil
}
