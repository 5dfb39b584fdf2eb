package mongo_test

import (
	"context"
	"testing"

	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/mongo"
	"github.com/orderly/orderly/internal/views/mongo/ferrettest"
	"github.com/orderly/orderly/internal/views/viewstest"
)

func TestContract(t *testing.T) {
	uri := ferrettest.Start(t)
	db := 0
	viewstest.Run(t, func(t *testing.T) views.Store {
		db++ // a database per subtest: each starts empty
		s, err := mongo.Open(context.Background(), mongo.Config{URI: uri, Database: "views" + string(rune('a'+db)), BulkSize: 64})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestReopen(t *testing.T) {
	uri := ferrettest.Start(t)
	viewstest.RunReopen(t, func(t *testing.T) views.Store {
		s, err := mongo.Open(context.Background(), mongo.Config{URI: uri, Database: "reopen", BulkSize: 64})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}
