package e2e

import (
	"context"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// TestComposeFile loads docker-compose.yml with the compose-spec library and
// checks it against the binaries it runs: every ORDERLY_* variable a service
// is given is one its binary reads, every address it listens on is published,
// and every address it dials is a service of the file on a port that service
// serves.
func TestComposeFile(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{"../docker-compose.yml"}, cli.WithWorkingDirectory(".."), cli.WithName("orderly"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose file does not load: %v", err)
	}

	for name, want := range map[string]string{"eventstore": "eventstore/eventstore:", "mongo": "mongo:"} {
		svc, ok := p.Services[name]
		if !ok || !strings.HasPrefix(svc.Image, want) {
			t.Errorf("service %s: image %q, want the official %s image", name, svc.Image, want)
		}
		if svc.HealthCheck == nil || len(svc.HealthCheck.Test) == 0 {
			t.Errorf("service %s has no health check", name)
		}
		if len(svc.Volumes) == 0 {
			t.Errorf("service %s keeps no data in a volume", name)
		}
	}

	dockerfile, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// The services built from this repository, by the binary each runs:
	// every binary at least once, the processors twice (README: Scaling).
	built := map[string][]string{}
	for name, svc := range p.Services {
		if svc.Build != nil && svc.Build.Args["SERVICE"] != nil {
			built[*svc.Build.Args["SERVICE"]] = append(built[*svc.Build.Args["SERVICE"]], name)
		}
	}
	for pkg, want := range map[string]int{"command-svc": 2, "projector": 2, "query-svc": 1} {
		if len(built[pkg]) < want {
			t.Errorf("%d services run %s (%v), want at least %d", len(built[pkg]), pkg, built[pkg], want)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		svc := p.Services[name]
		if svc.Build == nil || svc.Build.Args["SERVICE"] == nil || *svc.Build.Args["SERVICE"] == "cmd/orderly" {
			continue // an image of its own, or the certificate maker
		}
		pkg := *svc.Build.Args["SERVICE"]
		t.Run(name, func(t *testing.T) {
			if !strings.Contains(string(dockerfile), "ARG SERVICE") {
				t.Fatal("Dockerfile does not take the SERVICE build argument")
			}
			if _, err := os.Stat(filepath.Join("..", pkg)); err != nil {
				t.Fatalf("service %s is built from ./%s: %v", name, pkg, err)
			}
			accepted := envOf(t, binary(t, pkg))
			for key, value := range svc.Environment {
				if !slices.Contains(accepted, key) {
					t.Errorf("%s=%v: %s reads no such variable (it reads %v)", key, deref(value), pkg, accepted)
				}
				v := deref(value)
				switch {
				case strings.HasSuffix(key, "_LISTEN"):
					checkPublished(t, svc, key, v)
				case strings.HasPrefix(v, "esdb://") || strings.HasPrefix(v, "mongodb://"):
					checkDialed(t, p, name, key, v)
				}
			}
			for dep, d := range svc.DependsOn {
				if p.Services[dep].HealthCheck != nil && d.Condition != types.ServiceConditionHealthy {
					t.Errorf("%s starts before %s is healthy", name, dep)
				}
			}
		})
	}
}

var envInHelp = regexp.MustCompile(`\(env (ORDERLY_[A-Z0-9_]+)\)`)

// envOf lists the environment variables a binary reads, from its -h text.
func envOf(t *testing.T, binary string) []string {
	t.Helper()
	out, _ := exec.Command(binary, "-h").CombinedOutput() // -h exits 2
	var names []string
	for _, m := range envInHelp.FindAllStringSubmatch(string(out), -1) {
		names = append(names, m[1])
	}
	if len(names) == 0 {
		t.Fatalf("%s -h names no environment variables:\n%s", binary, out)
	}
	return names
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// checkPublished: a service listening on a port must publish it, and on all
// interfaces, or nothing outside its container reaches it.
func checkPublished(t *testing.T, svc types.ServiceConfig, key, addr string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("%s=%s: %v", key, addr, err)
		return
	}
	if host != "0.0.0.0" && host != "" {
		t.Errorf("%s=%s listens on %s only: unreachable from other containers", key, addr, host)
	}
	if !publishes(svc, port) {
		t.Errorf("%s=%s: port %s is not in ports %+v", key, addr, port, svc.Ports)
	}
}

// checkDialed: a connection string must name a service of the file and a port
// that service publishes.
func checkDialed(t *testing.T, p *types.Project, pkg, key, raw string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Errorf("%s=%s: %v", key, raw, err)
		return
	}
	target, ok := p.Services[u.Hostname()]
	if !ok {
		t.Errorf("%s=%s: no service %q in the compose file", key, raw, u.Hostname())
		return
	}
	if !publishes(target, u.Port()) {
		t.Errorf("%s=%s: service %s does not serve port %s", key, raw, u.Hostname(), u.Port())
	}
	if _, ok := p.Services[pkg].DependsOn[u.Hostname()]; !ok {
		t.Errorf("%s dials %s but does not depend on it", pkg, u.Hostname())
	}
}

func publishes(svc types.ServiceConfig, port string) bool {
	for _, pc := range svc.Ports {
		if port == strconv.FormatUint(uint64(pc.Target), 10) {
			return true
		}
	}
	return false
}
