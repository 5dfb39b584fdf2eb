//go:build !unix

package projection

import "time"

// processCPU is not measured here; benchmarks then omit CPU per event.
func processCPU() time.Duration { return 0 }
