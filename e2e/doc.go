// Package e2e holds the end-to-end tests: they build the real binaries, run
// them as subprocesses on loopback ports and drive them over gRPC and HTTP the
// way a user would, and they check the deployment files against the binaries.
package e2e
