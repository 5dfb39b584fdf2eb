// Package statuscmd is `orderly status`: the processor table of a running
// system's AdminService, once or refreshed (-watch).
package statuscmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/config"
)

// Main parses args (flags with ORDERLY_STATUS_* environment fallbacks) and
// prints the table to out until ctx ends (with -watch) or once.
func Main(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	addr := fs.String("admin", "127.0.0.1:50051", "gRPC address of an orderly.v1.AdminService: the all-in-one's commands address, a command-svc's, or a projector's -admin-listen")
	watch := fs.Bool("watch", false, "redraw the table every -interval until interrupted")
	interval := fs.Duration("interval", 2*time.Second, "refresh period with -watch")
	timeout := fs.Duration("timeout", 5*time.Second, "deadline of each call")
	if err := config.Parse(fs, "ORDERLY_STATUS", args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("status: unexpected arguments %q", fs.Args())
	}
	if *interval <= 0 || *timeout <= 0 {
		return errors.New("status: -interval and -timeout must be positive")
	}
	cc, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithStatsHandler(otelgrpc.NewClientHandler()))
	if err != nil {
		return fmt.Errorf("status: %s: %w", *addr, err)
	}
	defer cc.Close()
	client := orderlyv1.NewAdminServiceClient(cc)
	for {
		cctx, cancel := context.WithTimeout(ctx, *timeout)
		resp, err := client.ListProcessors(cctx, &orderlyv1.ListProcessorsRequest{})
		cancel()
		switch {
		case err != nil && !*watch:
			return fmt.Errorf("status: ListProcessors at %s: %w", *addr, err)
		case *watch:
			// Clear the screen and home the cursor: a table that redraws in place.
			fmt.Fprint(out, "\x1b[H\x1b[2J")
			fmt.Fprintf(out, "%s  %s  (every %s, Ctrl-C to stop)\n\n", time.Now().Format(time.TimeOnly), *addr, *interval)
			if err != nil {
				fmt.Fprintf(out, "ListProcessors: %v\n", err)
				break
			}
			fallthrough
		default:
			if err := Table(out, resp.GetProcessors()); err != nil {
				return err
			}
		}
		if !*watch {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*interval):
		}
	}
}

// Table writes processors as an aligned table, one processor a line.
func Table(w io.Writer, processors []*orderlyv1.Processor) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROCESSOR\tSTATE\tPOSITION\tHEAD\tLAG\tLAG (s)\tEVENTS/S\tDEAD LETTERS\tPARTITIONS\tLAST ERROR")
	for _, p := range processors {
		if p.GetState() == orderlyv1.ProcessorState_PROCESSOR_STATE_ELSEWHERE {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\t(runs in another process)\n", p.GetName(), state(p))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.1f\t%.1f\t%d\t%s\t%s\n", p.GetName(), state(p), p.GetPosition(), p.GetHead(),
			p.GetLagEvents(), p.GetLagSeconds(), p.GetEventsPerSecond(), p.GetDeadLetters(), share(p), oneLine(p.GetLastError(), 80))
	}
	return tw.Flush()
}

// share is the partitions of the processor's work this instance holds, and
// among how many instances.
func share(p *orderlyv1.Processor) string {
	if p.GetInstances() == 1 {
		return fmt.Sprintf("%d/%d, alone", p.GetPartitionsHeld(), p.GetPartitions())
	}
	return fmt.Sprintf("%d/%d, %d instances", p.GetPartitionsHeld(), p.GetPartitions(), p.GetInstances())
}

// state is a processor's state in lower case, with its rebuild's progress.
func state(p *orderlyv1.Processor) string {
	s := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(p.GetState().String(), "PROCESSOR_STATE_")), "_", " ")
	if rb := p.GetRebuild(); rb != nil {
		switch {
		case rb.GetError() != "":
			s += " (rebuild failed)"
		case rb.GetDone():
			s += " (rebuilt)"
		case rb.GetHead() > 0:
			s += fmt.Sprintf(" (rebuild %.0f%%)", 100*float64(rb.GetPosition())/float64(rb.GetHead()))
		}
	}
	return s
}

// oneLine cuts s to n runes on one line, for a table cell.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
