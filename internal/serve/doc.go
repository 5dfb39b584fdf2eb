// Package serve is the plumbing every Orderly service shares: JSON logs, a gRPC
// server with health, reflection, metrics and panic recovery, a REST gateway
// mux, and a runner that serves listeners until a signal and then stops them
// gracefully. Services differ in what they register, never in how they serve.
package serve
