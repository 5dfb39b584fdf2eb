package eventstore_test

import (
	"errors"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/orderly/orderly/internal/eventstore/estest"
)

// The official client pings every 10 s, also with no call open. grpc-go's
// default policy allows a ping every 5 minutes, and none without a call:
// after three early pings it answers GOAWAY too_many_pings and drops the
// connection with its subscriptions. The store must take 10-second pings
// on an idle connection; the control sends them back to back and must be
// refused, which shows the probe can tell.
//
// It takes 30 s of pings at the client's own interval (the server's clock
// cannot be faked from outside), so -short skips it.
func TestKeepalivePingsEveryTenSeconds(t *testing.T) {
	if testing.Short() {
		t.Skip("30 s of pings at the official client's interval")
	}
	t.Parallel()
	_, connString := estest.Serve(t)
	u, err := url.Parse(connString)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("control: pings back to back", func(t *testing.T) {
		t.Parallel()
		if err := ping(t, u.Host, 0); err == nil || !strings.Contains(err.Error(), "too_many_pings") {
			t.Fatalf("back-to-back pings: %v, want GOAWAY too_many_pings", err)
		}
	})
	t.Run("every 10 s, idle", func(t *testing.T) {
		t.Parallel()
		if err := ping(t, u.Host, 10*time.Second); err != nil {
			t.Fatalf("10-second pings on an idle connection: %v", err)
		}
	})
}

// ping opens an HTTP/2 connection to addr with no stream and sends four
// pings, every interval, each waited for; then one more at once, whose
// answer comes after any GOAWAY the fourth caused. It returns that GOAWAY
// as an error, or nil when every ping was answered.
func ping(t *testing.T, addr string, interval time.Duration) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	var writing sync.Mutex // the reader acknowledges settings, the test pings
	write := func(w func() error) error {
		writing.Lock()
		defer writing.Unlock()
		return w()
	}
	if err := write(func() error { return fr.WriteSettings() }); err != nil {
		t.Fatal(err)
	}
	acks := make(chan error, 1)
	go func() {
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				acks <- err
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					_ = write(fr.WriteSettingsAck)
				}
			case *http2.GoAwayFrame:
				acks <- errors.New("GOAWAY " + f.ErrCode.String() + " " + string(f.DebugData()))
				return
			case *http2.PingFrame:
				if f.IsAck() {
					acks <- nil
				}
			}
		}
	}()
	for i := range 5 {
		if i > 0 && i < 4 {
			time.Sleep(interval)
		}
		if err := write(func() error { return fr.WritePing(false, [8]byte{byte(i)}) }); err != nil {
			return err
		}
		if err := <-acks; err != nil {
			return err
		}
	}
	return nil
}
