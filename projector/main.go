// Command projector keeps Orderly's views up to date from the event store:
//
//	projector [flags]                  follow $all into the live views
//	projector rebuild [-view NAME]     rebuild views beside the live ones, then switch
//
// Flags take ORDERLY_* environment variables too (see -h). The views live in
// SQLite under -data by default, or in MongoDB with -views mongo.
package main

import (
	"github.com/orderly/orderly/internal/projectorcmd"
	"github.com/orderly/orderly/internal/serve"
)

func main() { serve.Main("projector", projectorcmd.Main) }
