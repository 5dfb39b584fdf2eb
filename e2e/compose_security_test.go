package e2e

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
)

// The compose stack runs secure: EventStoreDB with TLS (not insecure), the
// services serving TLS, the command and query services with API keys, and
// every connection to the store over TLS with credentials.
func TestComposeIsSecure(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{"../docker-compose.yml"}, cli.WithWorkingDirectory(".."), cli.WithName("orderly"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	es := p.Services["eventstore"].Environment
	if v := es["EVENTSTORE_INSECURE"]; v != nil && strings.EqualFold(*v, "true") {
		t.Error("EventStoreDB runs insecure")
	}
	for _, key := range []string{"EVENTSTORE_CERTIFICATE_FILE", "EVENTSTORE_CERTIFICATE_PRIVATE_KEY_FILE", "EVENTSTORE_TRUSTED_ROOT_CERTIFICATES_PATH"} {
		if es[key] == nil {
			t.Errorf("EventStoreDB has no %s", key)
		}
	}
	for _, name := range []string{"command-svc", "projector", "query-svc"} {
		env := p.Services[name].Environment
		get := func(k string) string {
			if v := env[k]; v != nil {
				return *v
			}
			return ""
		}
		if get("ORDERLY_TLS_CERT") == "" || get("ORDERLY_TLS_KEY") == "" {
			t.Errorf("%s serves plain text", name)
		}
		if get("ORDERLY_INSECURE") != "" {
			t.Errorf("%s sets ORDERLY_INSECURE", name)
		}
		if name != "projector" {
			keys := get("ORDERLY_API_KEYS")
			if keys == "" {
				t.Errorf("%s runs without authentication", name)
			}
		}
		u, err := url.Parse(get("ORDERLY_EVENTSTORE"))
		if err != nil {
			t.Fatal(err)
		}
		if u.Query().Get("tls") != "true" || u.Query().Get("tlsCAFile") == "" || u.User.Username() == "" {
			t.Errorf("%s reaches the store as %s, want tls=true, tlsCAFile and credentials", name, u.Redacted())
		}
	}
	keys, err := os.ReadFile("../compose/dev-api-keys")
	if err != nil || !strings.Contains(string(keys), "DEVELOPMENT ONLY") {
		t.Errorf("compose/dev-api-keys is not labelled development-only: %v", err)
	}
}
