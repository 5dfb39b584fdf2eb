package auth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/orderly/orderly/internal/watchfile"
)

// minKeyLength keeps keys long enough not to be guessed: 16 random
// characters of base64 are 96 bits.
const minKeyLength = 16

// apiKeys are the keys of an API key file, reloaded when the file changes.
// Only the keys' SHA-256 digests are kept, and a presented key is compared
// with every one of them in constant time: neither a map lookup by the key
// nor an early exit tells a caller by its timing how close a guess came.
type apiKeys struct {
	log *slog.Logger

	mu   sync.Mutex
	file watchfile.File
	keys []apiKey
	// failure is the last reload error logged, logged once per change.
	failure string
}

type apiKey struct {
	digest    [sha256.Size]byte
	principal Principal
}

// loadAPIKeys reads path; an error in it fails the start.
func loadAPIKeys(path string, log *slog.Logger) (*apiKeys, error) {
	k := &apiKeys{log: log, file: watchfile.File{Path: path}}
	if err := k.reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// reload reads the file again if it changed. A file that does not parse
// keeps the keys in force (a half-written edit must not lock everyone out,
// nor let everyone in) and is logged.
func (k *apiKeys) reload() error {
	changed, err := k.file.Changed()
	if err == nil && !changed {
		return nil
	}
	var keys []apiKey
	if err == nil {
		keys, err = readAPIKeys(k.file.Path)
	}
	if err != nil {
		err = fmt.Errorf("API key file %s: %w", k.file.Path, err)
		if msg := err.Error(); msg != k.failure && k.keys != nil {
			k.log.Error("API key file not reloaded; the previous keys stay in force", "err", err)
			k.failure = msg
		}
		return err
	}
	if k.keys != nil {
		k.log.Info("API key file reloaded", "file", k.file.Path, "keys", len(keys))
	}
	k.keys, k.failure = keys, ""
	return nil
}

// readAPIKeys parses lines of KEY SUBJECT PERMISSION[,PERMISSION...]; '#'
// starts a comment, blank lines are skipped.
func readAPIKeys(path string) ([]apiKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	keys := []apiKey{}
	seen := map[[sha256.Size]byte]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 3 {
			return nil, fmt.Errorf("line %d: want KEY SUBJECT PERMISSION[,PERMISSION...], got %d fields", n, len(fields))
		}
		if len(fields[0]) < minKeyLength {
			return nil, fmt.Errorf("line %d: key shorter than %d characters", n, minKeyLength)
		}
		p := Principal{Subject: fields[1]}
		for _, s := range strings.Split(fields[2], ",") {
			perm, err := parsePermission(s)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			p.Permissions = append(p.Permissions, perm)
		}
		d := sha256.Sum256([]byte(fields[0]))
		if first, dup := seen[d]; dup {
			return nil, fmt.Errorf("line %d: the key of line %d again", n, first)
		}
		seen[d] = n
		keys = append(keys, apiKey{digest: d, principal: p})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return keys, nil
}

var errUnknownKey = errors.New("unknown API key")

// lookup returns the principal of key, comparing its digest with every
// key's.
func (k *apiKeys) lookup(key string) (Principal, error) {
	k.mu.Lock()
	_ = k.reload() // logged by reload; the keys in force answer
	keys := k.keys
	k.mu.Unlock()
	d := sha256.Sum256([]byte(key))
	found := -1
	for i := range keys {
		if subtle.ConstantTimeCompare(d[:], keys[i].digest[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Principal{}, errUnknownKey
	}
	return keys[found].principal, nil
}
