package sqlite

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
)

// Prepared statements, kept. SQLite parses and plans a statement's text on
// every prepare, and through database/sql every ExecContext or QueryContext
// with arguments prepares its text anew: at 1,000 orders/s that was ~5 % of
// the process's CPU, much of it on the projector writer's path, the one
// that sets how soon a write is visible. So each pool keeps a statement per
// text, used in its transactions through Tx.StmtContext, which reuses what
// was prepared on the transaction's connection.
//
// A text is prepared on the pool only after the transaction that first met
// it has ended: preparing on a pool takes a free connection, and the
// writer's only one is the transaction's own (a reader's last could be too).
// A statement whose table was dropped (an old view version) fails as its
// text would; SQLite re-prepares the others when the schema changes.

// maxStmts bounds the texts kept per pool. The texts are few (a statement
// per row count of the multi-row upserts, per view version), so the bound
// is there for what is not expected; texts past it are prepared each time.
const maxStmts = 512

// stmtCache holds a pool's kept statements.
type stmtCache struct {
	db *sql.DB
	// misses counts the statements run from their text, not kept.
	misses atomic.Int64

	mu sync.Mutex
	m  map[string]*sql.Stmt
}

func newStmtCache(db *sql.DB) *stmtCache { return &stmtCache{db: db, m: map[string]*sql.Stmt{}} }

func (c *stmtCache) get(query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[query]
}

// keep prepares the texts a transaction met that are not kept yet. It runs
// after the transaction ended; a text that fails to prepare is not kept.
func (c *stmtCache) keep(ctx context.Context, queries []string) {
	for _, q := range queries {
		c.mu.Lock()
		_, ok := c.m[q]
		full := len(c.m) >= maxStmts
		c.mu.Unlock()
		if ok || full {
			continue
		}
		st, err := c.db.PrepareContext(ctx, q)
		if err != nil {
			continue
		}
		c.mu.Lock()
		if _, ok := c.m[q]; ok || len(c.m) >= maxStmts {
			_ = st.Close()
		} else {
			c.m[q] = st
		}
		c.mu.Unlock()
	}
}

// close closes the kept statements; the pool closes after it.
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.m {
		_ = st.Close()
		delete(c.m, q)
	}
}

// dbTx is a transaction whose statements come from its pool's cache.
type dbTx struct {
	*sql.Tx
	stmts *stmtCache
	met   []string // texts not kept yet, for keep once the transaction ends
}

func (t *dbTx) stmt(ctx context.Context, query string) *sql.Stmt {
	if st := t.stmts.get(query); st != nil {
		return t.Tx.StmtContext(ctx, st)
	}
	t.stmts.misses.Add(1)
	t.met = append(t.met, query)
	return nil
}

func (t *dbTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.Tx.ExecContext(ctx, query, args...)
}

func (t *dbTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.Tx.QueryContext(ctx, query, args...)
}

func (t *dbTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.Tx.QueryRowContext(ctx, query, args...)
}
