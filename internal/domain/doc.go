// Package domain is Orderly's model: the Customer and Order aggregates, the
// events they record and the decisions they make on commands.
//
// It is pure Go on purpose: no transport, no storage, no clock and no I/O, so
// the write side, the saga and the temporal reads fold the same events with the
// same code, and every rule is testable in microseconds. Decisions return
// events or a *Error that says which kind of refusal it is; adapters map that
// kind to gRPC or HTTP statuses.
//
// An aggregate is rebuilt by applying its events in order (Apply) and decides
// on a command by returning new events without changing itself; the caller
// persists them and applies them back. A decision that would change nothing
// returns no events and no error, which keeps retried saga steps harmless.
package domain
