// Package viewstore opens the view store a command is configured for, so
// that package views imports no driver and every command (projector,
// query-svc, the all-in-one) takes the same flags.
package viewstore

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/mongo"
	"github.com/orderly/orderly/internal/views/sqlite"
)

// Kinds of view store.
const (
	SQLite = "sqlite"
	Mongo  = "mongo"
)

// SQLiteFile is the database file's name inside the data directory.
const SQLiteFile = "views.db"

// Config chooses a view store.
type Config struct {
	// Kind is SQLite (default) or Mongo.
	Kind string
	// DataDir holds the SQLite database (SQLiteFile).
	DataDir string
	// MongoURI, MongoDatabase and MongoBulkSize configure the MongoDB store
	// (see mongo.Config).
	MongoURI      string
	MongoDatabase string
	MongoBulkSize int
}

// RegisterFlags adds -views, -data, -mongo-uri, -mongo-db and
// -mongo-bulk-size to fs, with c's current values as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	if c.Kind == "" {
		c.Kind = SQLite
	}
	if c.DataDir == "" {
		c.DataDir = ".orderly"
	}
	if c.MongoURI == "" {
		c.MongoURI = "mongodb://127.0.0.1:27017"
	}
	if c.MongoDatabase == "" {
		c.MongoDatabase = "orderly"
	}
	if c.MongoBulkSize == 0 {
		c.MongoBulkSize = 1000
	}
	fs.StringVar(&c.Kind, "views", c.Kind, "view store: sqlite (embedded, in -data) or mongo (at -mongo-uri)")
	fs.StringVar(&c.DataDir, "data", c.DataDir, "data directory; the SQLite view store is "+SQLiteFile+" in it")
	fs.StringVar(&c.MongoURI, "mongo-uri", c.MongoURI, "MongoDB connection string (with -views mongo)")
	fs.StringVar(&c.MongoDatabase, "mongo-db", c.MongoDatabase, "MongoDB database of the views")
	fs.IntVar(&c.MongoBulkSize, "mongo-bulk-size", c.MongoBulkSize, "writes per MongoDB BulkWrite (at most 64 toward FerretDB)")
}

// Where names the store c chooses, for people: the SQLite file, or the
// MongoDB servers and database (without credentials).
func Where(c Config) string {
	if c.Kind == Mongo {
		u, err := url.Parse(c.MongoURI)
		if err != nil {
			return "MongoDB database " + c.MongoDatabase + " (at an unreadable -mongo-uri)"
		}
		u.User = nil
		return "MongoDB database " + c.MongoDatabase + " at " + u.Redacted()
	}
	path := filepath.Join(c.DataDir, SQLiteFile)
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return "SQLite file " + path
}

// Exists reports whether the store c chooses holds views already, creating
// nothing: a wrong -data or -mongo-db names an empty place.
func Exists(ctx context.Context, c Config) (bool, error) {
	switch c.Kind {
	case SQLite, "":
		_, err := os.Stat(filepath.Join(c.DataDir, SQLiteFile))
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return err == nil, err
	case Mongo:
		return mongo.HasViews(ctx, mongo.Config{URI: c.MongoURI, Database: c.MongoDatabase})
	}
	return false, unknownKind(c.Kind)
}

// Open opens the configured store.
func Open(ctx context.Context, c Config) (views.Store, error) {
	switch c.Kind {
	case SQLite, "":
		if err := os.MkdirAll(c.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("views data directory: %w", err)
		}
		return sqlite.Open(ctx, filepath.Join(c.DataDir, SQLiteFile))
	case Mongo:
		return mongo.Open(ctx, mongo.Config{URI: c.MongoURI, Database: c.MongoDatabase, BulkSize: c.MongoBulkSize})
	}
	return nil, unknownKind(c.Kind)
}

func unknownKind(kind string) error {
	return fmt.Errorf("view store %q: want %s or %s", kind, SQLite, Mongo)
}
