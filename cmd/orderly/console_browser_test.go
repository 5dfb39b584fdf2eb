package main

import (
	"context"
	"flag"
	"fmt"
	"image"
	"image/color"
	_ "image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/eventstore/estest"
)

var browserTest = flag.Bool("console.browser", os.Getenv("ORDERLY_TEST_BROWSER") != "",
	"run the console in a headless Chromium (installed with apt-get when missing); also ORDERLY_TEST_BROWSER=1")

// TestConsoleInBrowser loads /console of a running all-in-one, with a view
// paused and a dead letter made for real (an order of a customer that does
// not exist), in headless Chromium: the DOM it renders lists every
// processor with its state, the dead letter with its Retry and Skip
// buttons, and $all's events; its screenshot shows the state badges
// (caught up in green, paused in orange).
func TestConsoleInBrowser(t *testing.T) {
	if !*browserTest {
		t.Skip("a headless browser test: go test ./cmd/orderly -run TestConsoleInBrowser -console.browser")
	}
	chromium := findChromium(t)
	addrs, _ := startSystem(t, "-log-level", "warn")
	base := "http://" + addrs.http

	// A dead letter: the saga's reservation for this order is refused.
	client := estest.Client(t, "esdb://"+addrs.eventStore+"?tls=false")
	order := uuid.NewString()
	_, err := client.AppendToStream(context.Background(), "order-"+order, esdb.AppendToStreamOptions{}, esdb.EventData{
		EventType: "orderly.OrderPlaced", ContentType: esdb.ContentTypeJson, Metadata: []byte(`{"schema":2}`),
		Data: fmt.Appendf(nil, `{"order_id":%q,"customer_id":%q,"lines":[{"sku":"A","quantity":1,"unit_price":{"currency_code":"USD","minor_units":5}}],"total":{"currency_code":"USD","minor_units":5}}`, order, uuid.NewString()),
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(get(t, base+"/v1/admin/dead-letters"), order) })
	post(t, base+"/v1/admin/processors/customers:pause")
	waitFor(t, func() bool { return strings.Contains(get(t, base+"/v1/admin/processors"), "PROCESSOR_STATE_CAUGHT_UP") })

	dom := run(t, chromium, "--dump-dom", base+"/console")
	for _, want := range []string{`data-name="orders"`, `data-name="customers"`, `data-name="credit-saga"`, "st-PAUSED", "st-CAUGHT_UP",
		`data-event="`, ">Retry<", ">Skip<", "order-" + order, "orderly.OrderPlaced"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered console lacks %s", want)
		}
	}

	shot := filepath.Join(t.TempDir(), "console.png")
	run(t, chromium, "--screenshot="+shot, "--window-size=1400,1000", base+"/console")
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	green := count(img, color.RGBA{0x2e, 0x7d, 0x32, 0xff})
	orange := count(img, color.RGBA{0xef, 0x6c, 0x00, 0xff})
	if green < 100 || orange < 100 {
		t.Errorf("screenshot %v: %d caught-up and %d paused badge pixels; want both shown", img.Bounds(), green, orange)
	}
	if keep := os.Getenv("ORDERLY_CONSOLE_SCREENSHOT"); keep != "" {
		data, _ := os.ReadFile(shot)
		_ = os.WriteFile(keep, data, 0o644)
	}
}

// findChromium returns Debian's chromium, installing it with apt-get when
// it is missing (the test runs only when asked to).
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-headless-shell", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Log("chromium not found: installing Debian's chromium with apt-get")
	for _, args := range [][]string{{"update"}, {"install", "-y", "--no-install-recommends", "chromium"}} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apt-get %v: %v\n%s", args, err, out)
		}
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium installed but not found: %v", err)
	}
	return p
}

// run runs headless chromium on url, letting the page's script fetch for
// a few seconds of virtual time, and returns its output.
func run(t *testing.T, chromium string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=4000"}
	out, err := exec.CommandContext(ctx, chromium, append(base, args...)...).Output()
	if err != nil {
		t.Fatalf("chromium %v: %v", args, err)
	}
	return string(out)
}

func count(img image.Image, c color.RGBA) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if uint8(r>>8) == c.R && uint8(g>>8) == c.G && uint8(bl>>8) == c.B {
				n++
			}
		}
	}
	return n
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func post(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d", url, resp.StatusCode)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("not within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestConsoleAsksForToken: with authentication on, the console's calls are
// refused until an admin token is typed in, and it says so.
func TestConsoleAsksForToken(t *testing.T) {
	if !*browserTest {
		t.Skip("a headless browser test: go test ./cmd/orderly -run TestConsoleAsksForToken -console.browser")
	}
	chromium := findChromium(t)
	addrs, _ := startSystem(t, "-api-keys", writeKeys(t, t.TempDir()))
	dom := run(t, chromium, "--dump-dom", "http://"+addrs.http+"/console")
	for _, want := range []string{`id="token"`, "authentication is on: enter an admin token above"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered console lacks %q", want)
		}
	}
}
