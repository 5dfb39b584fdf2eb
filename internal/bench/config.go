package bench

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/orderly/orderly/internal/config"
)

// Config is what one run does.
type Config struct {
	// Where the system is; all empty starts an embedded one.
	CommandsAddr, QueriesAddr, RESTURL, MetricsURL string

	Clients   int
	Rate      float64 // operations per second over the whole mix; 0 is flat out
	Duration  time.Duration
	Customers int
	Mix       string
	Seed      uint64

	DecisionSample  float64
	Watchers        int
	DecisionTimeout time.Duration
	VisibleSample   float64
	Probers         int

	Drain        time.Duration
	ReportEvery  time.Duration
	ScrapeEvery  time.Duration
	CallTimeout  time.Duration
	JSON         bool
	CPUProfile   string
	ExecTrace    string
	MemProfile   string
	TLSCA        string
	Token        string
	EmbeddedData string

	mix mix
}

// Embedded reports whether the run starts its own system.
func (c *Config) Embedded() bool {
	return c.CommandsAddr == "" && c.QueriesAddr == "" && c.RESTURL == "" && c.MetricsURL == ""
}

// ParseFlags reads the bench's flags, with ORDERLY_BENCH_* environment
// fallbacks.
func ParseFlags(args []string, output io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("orderly bench", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.StringVar(&c.CommandsAddr, "commands", "", "gRPC address of orderly.v1.CommandService (empty, with the other addresses: start an embedded system)")
	fs.StringVar(&c.QueriesAddr, "queries", "", "gRPC address of orderly.v1.QueryService")
	fs.StringVar(&c.RESTURL, "rest", "", "REST base URL, e.g. http://127.0.0.1:8080")
	fs.StringVar(&c.MetricsURL, "metrics", "", "Prometheus metrics URL for saga and projector lag, e.g. http://127.0.0.1:8080/metrics (empty: no lag figures)")
	fs.IntVar(&c.Clients, "clients", 16, "concurrent clients")
	fs.Float64Var(&c.Rate, "rate", 0, "target operations per second over the whole mix, open loop (0: flat out)")
	fs.DurationVar(&c.Duration, "duration", 30*time.Second, "how long the load runs, after setup")
	fs.IntVar(&c.Customers, "customers", 100, "customers registered during setup, before the load")
	fs.StringVar(&c.Mix, "mix", DefaultMix, "weights of the operations: "+joinOps())
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the random choices (operations, customers, amounts)")
	fs.Float64Var(&c.DecisionSample, "decision-sample", 0.1, "fraction of placed orders whose decision (APPROVED/REJECTED readable) is timed")
	fs.IntVar(&c.Watchers, "watchers", 512, "most decisions timed at once (one WatchOrder stream each); a sample finding all busy is skipped and counted")
	fs.DurationVar(&c.DecisionTimeout, "decision-timeout", time.Minute, "how long a timed order may stay undecided before it counts as timed out")
	fs.Float64Var(&c.VisibleSample, "visible-sample", 0.1, "fraction of placed orders whose write-to-visible time (GetOrder with min_position) is measured")
	fs.IntVar(&c.Probers, "probers", 16, "most write-to-visible reads at once; a sample finding all busy is skipped and counted")
	fs.DurationVar(&c.Drain, "drain", 0, "after the load, wait up to this long until no order of the run is PENDING (every decision made and readable), and report how long it took")
	fs.DurationVar(&c.ReportEvery, "report-every", 5*time.Second, "interval of the live report line on stderr (0: none)")
	fs.DurationVar(&c.ScrapeEvery, "scrape-every", time.Second, "interval of the metrics scrapes")
	fs.DurationVar(&c.CallTimeout, "call-timeout", 10*time.Second, "deadline of each call")
	fs.BoolVar(&c.JSON, "json", false, "print the summary as JSON instead of a table")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "embedded system only: write a CPU profile of the whole process (system and bench) during the load to this file")
	fs.StringVar(&c.TLSCA, "tls-ca", "", "running system only: PEM file of the CA its certificates are signed by (or the certificate itself); gRPC goes over TLS, and -rest and -metrics take https URLs")
	fs.StringVar(&c.Token, "token", "", "running system only: bearer token sent with every call, metric scrapes included (an API key or a JWT allowing customers:write, orders:write and read, or admin)")
	fs.StringVar(&c.MemProfile, "memprofile", "", "embedded system only: write a heap profile of the whole process to this file when the load ends, after a full GC (go tool pprof -sample_index=inuse_space: what is still live)")
	fs.StringVar(&c.ExecTrace, "trace", "", "embedded system only: write an execution trace of the whole process during the load to this file (where time waits, which a CPU profile cannot show: go tool trace -pprof=sync|sched|syscall)")
	fs.StringVar(&c.EmbeddedData, "data", "", "embedded system only: its data directory (empty: a temporary one, removed after)")
	if err := config.Parse(fs, "ORDERLY_BENCH", args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return c, c.validate()
}

func joinOps() string {
	s := ""
	for i, n := range opNames {
		if i > 0 {
			s += ", "
		}
		s += n
	}
	return s
}

func (c *Config) validate() error {
	var err error
	c.mix, err = parseMix(c.Mix)
	if err != nil {
		return err
	}
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.Embedded() || (c.CommandsAddr != "" && c.QueriesAddr != ""), "-commands and -queries are both needed to drive a running system")
	check(c.Embedded() || c.RESTURL != "" || !c.mix.has(opGetOrderREST), "the mix has get_order_rest but -rest is empty")
	check(c.Embedded() || (c.CPUProfile == "" && c.MemProfile == "" && c.ExecTrace == "" && c.EmbeddedData == ""), "-cpuprofile, -memprofile, -trace and -data apply to the embedded system only")
	check(!c.Embedded() || (c.TLSCA == "" && c.Token == ""), "-tls-ca and -token apply to a running system only (the embedded one has neither TLS nor authentication)")
	check(!c.mix.hasReads() && !c.mix.has(opCancel) || c.mix.has(opPlace) || c.mix.has(opPlaceOver),
		"the mix reads or cancels orders but places none")
	check(c.Clients >= 1 && c.Clients <= 10_000, "-clients must be 1 to 10000")
	check(c.Rate >= 0 && c.Rate <= 1e7, "-rate must be 0 to 10000000")
	check(c.Duration > 0, "-duration must be positive")
	check(c.Customers >= 1 && c.Customers <= 10_000_000, "-customers must be 1 to 10000000")
	check(c.DecisionSample >= 0 && c.DecisionSample <= 1, "-decision-sample must be 0 to 1")
	check(c.VisibleSample >= 0 && c.VisibleSample <= 1, "-visible-sample must be 0 to 1")
	check(c.Watchers >= 1 && c.Watchers <= 100_000, "-watchers must be 1 to 100000")
	check(c.Probers >= 1 && c.Probers <= 100_000, "-probers must be 1 to 100000")
	check(c.DecisionTimeout > 0, "-decision-timeout must be positive")
	check(c.Drain >= 0 && c.ReportEvery >= 0, "-drain and -report-every may not be negative")
	check(c.ScrapeEvery > 0 && c.CallTimeout > 0, "-scrape-every and -call-timeout must be positive")
	// Reads go to orders the bench has seen in the views; only the samples
	// find them.
	check(!c.mix.hasReads() || c.DecisionSample > 0 || c.VisibleSample > 0,
		"the mix has reads, which need orders known to be visible: -decision-sample or -visible-sample must be above 0")
	return errors.Join(errs...)
}
