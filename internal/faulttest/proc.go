package faulttest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proc is one service process the test can kill, pause and restart, on the
// same arguments (so the same ports and data) every time.
type Proc struct {
	t      testing.TB
	name   string
	path   string
	args   []string
	ready  string // address that accepts connections once it serves
	faults *Faults
	// HTTP is the address of its /metrics, if it serves them.
	HTTP string

	cmd    *exec.Cmd
	out    *tail
	exited chan error
	alive  bool // started and not yet reaped
}

// startProc starts name (binary path, args) and waits until ready accepts
// connections. It is killed when the test ends.
func startProc(t testing.TB, faults *Faults, name, path, ready string, args ...string) *Proc {
	t.Helper()
	p := &Proc{t: t, name: name, path: path, args: args, ready: ready, faults: faults, out: &tail{}}
	t.Cleanup(func() {
		if p.alive {
			p.signal(syscall.SIGKILL)
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s output (its end):\n%s", p.name, p.out.String())
		}
	})
	p.start()
	return p
}

func (p *Proc) start() {
	p.t.Helper()
	p.cmd = exec.Command(p.path, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	exited := make(chan error, 1)
	p.exited = exited
	go func(cmd *exec.Cmd) { exited <- cmd.Wait() }(p.cmd)
	p.alive = true
	p.waitReady()
}

// waitReady waits for the process to accept connections on its address.
func (p *Proc) waitReady() {
	p.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		conn, err := net.DialTimeout("tcp", p.ready, time.Second)
		if err == nil {
			_ = conn.Close()
			return
		}
		select {
		case err := <-p.exited:
			p.alive = false
			p.t.Fatalf("%s exited at start: %v\n%s", p.name, err, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s does not accept connections on %s after a minute:\n%s", p.name, p.ready, p.out.String())
		}
	}
}

// Name is the process's name in the test (a processor's -instance).
func (p *Proc) Name() string { return p.name }

// CheckAlive fails the test if the process exited without being killed:
// a crash, or a fatal error it gave up on.
func (p *Proc) CheckAlive() {
	p.t.Helper()
	select {
	case err := <-p.exited:
		p.alive = false
		p.t.Errorf("%s exited by itself: %v\n%s", p.name, err, p.out.String())
	default:
	}
}

func (p *Proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		p.t.Fatalf("%s %s: %v", sig, p.name, err)
	}
}

// Kill sends SIGKILL — no deferred function, no shutdown — and reaps it.
func (p *Proc) Kill() {
	p.t.Helper()
	p.signal(syscall.SIGKILL)
	<-p.exited
	p.alive = false
	p.faults.add(p.name + " SIGKILL")
}

// Restart starts the process again after Kill.
func (p *Proc) Restart() {
	p.t.Helper()
	p.start()
}

// KillRestart kills the process, leaves it dead for down, and restarts it.
func (p *Proc) KillRestart(down time.Duration) {
	p.t.Helper()
	p.Kill()
	time.Sleep(down)
	p.Restart()
}

// Pause stops the process (SIGSTOP): its sockets stay open and nothing in
// it runs, timers included, until Resume.
func (p *Proc) Pause() {
	p.t.Helper()
	p.signal(syscall.SIGSTOP)
	p.faults.add(p.name + " SIGSTOP")
}

// Resume continues a paused process (SIGCONT).
func (p *Proc) Resume() {
	p.t.Helper()
	p.signal(syscall.SIGCONT)
}

// Faults counts the faults a test injected, by kind.
type Faults struct {
	mu sync.Mutex
	n  map[string]int
}

func (f *Faults) add(kind string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == nil {
		f.n = map[string]int{}
	}
	f.n[kind]++
}

// Count records a fault injected outside a process (a locked file, a
// stopped database).
func (f *Faults) Count(kind string) { f.add(kind) }

// Total is the number of faults injected.
func (f *Faults) Total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	total := 0
	for _, n := range f.n {
		total += n
	}
	return total
}

// String lists the faults by kind.
func (f *Faults) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmtCounts(f.n)
}

// tailBytes bounds the output a process keeps for a failure's log.
const tailBytes = 64 << 10

// tail keeps the last tailBytes a process wrote.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tail) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - tailBytes; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tail) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// Stop asks the process to shut down (SIGTERM), as an orchestrator does,
// and waits until it has.
func (p *Proc) Stop() {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	if err := <-p.exited; err != nil {
		p.t.Errorf("%s did not shut down cleanly: %v\n%s", p.name, err, p.out.String())
	}
	p.alive = false
	p.faults.add(p.name + " SIGTERM")
}

// CPUNow is the CPU time (user and system) the running process has used
// so far, from /proc (Linux); 0 where that cannot be read.
func (p *Proc) CPUNow() time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted after its closing parenthesis; utime and stime are the
	// 14th and 15th, in clock ticks of 1/100 s on Linux.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseUint(fields[11], 10, 64)
	stime, _ := strconv.ParseUint(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
