// Package serverproc starts and stops real capvend server processes (and the nats-server
// they may share) for tests: `node dist/src/cli.js serve` from the repository root.
package serverproc

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ReadyTimeout bounds how long a process may take to say it is listening.
const ReadyTimeout = 60 * time.Second

// RepoRoot is the capvend repository root: the nearest directory above the working
// directory that holds both package.json and proto/.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if isFile(filepath.Join(dir, "package.json")) && isDir(filepath.Join(dir, "proto")) {
			return dir
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("serverproc: no capvend repository root above the working directory")
		}
		dir = up
	}
}

func isFile(p string) bool { st, err := os.Stat(p); return err == nil && !st.IsDir() }
func isDir(p string) bool  { st, err := os.Stat(p); return err == nil && st.IsDir() }

// CLI is the path of the built server entry point, dist/src/cli.js under the repository
// root (or under $CAPVEND_SERVER_ROOT, to hold this client to another build of the server).
// The test fails (it is not skipped) when it has not been built.
func CLI(t testing.TB) string {
	t.Helper()
	root := os.Getenv("CAPVEND_SERVER_ROOT")
	if root == "" {
		root = RepoRoot(t)
	}
	cli := filepath.Join(root, "dist", "src", "cli.js")
	if !isFile(cli) {
		t.Fatalf("serverproc: %s is missing: run `npm run build` at the repository root first", cli)
	}
	return cli
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Process is one child process whose output is kept for failure reports.
type Process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	tail []string
}

const tailLines = 200

func (p *Process) keep(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tail = append(p.tail, line)
	if len(p.tail) > tailLines {
		p.tail = p.tail[len(p.tail)-tailLines:]
	}
}

// Output is the last lines the process wrote.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// start runs cmd and waits until ready(line) holds for a line of its output.
func start(t testing.TB, name string, cmd *exec.Cmd, ready func(string) bool) *Process {
	t.Helper()
	p := &Process{name: name, cmd: cmd, done: make(chan struct{})}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	// The child dies with the test process even when the test is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("serverproc: start %s: %v", name, err)
	}
	readyCh := make(chan struct{})
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			p.keep(line)
			if !signalled && ready(line) {
				signalled = true
				close(readyCh)
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case <-readyCh:
		return p
	case <-p.done:
		t.Fatalf("serverproc: %s exited before it was ready:\n%s", name, p.Output())
	case <-time.After(ReadyTimeout):
		p.Kill(syscall.SIGKILL)
		t.Fatalf("serverproc: %s not ready after %s:\n%s", name, ReadyTimeout, p.Output())
	}
	return nil
}

// Kill sends sig and waits for the process to exit (SIGKILL after 10 s).
func (p *Process) Kill(sig syscall.Signal) {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// NATS is a nats-server with JetStream on a free port and its own store directory.
type NATS struct {
	URL  string
	proc *Process
}

// NATSBinary is the nats-server to run: $NATS_SERVER, else nats-server on PATH, else
// /usr/sbin/nats-server.
func NATSBinary(t testing.TB) string {
	if b := os.Getenv("NATS_SERVER"); b != "" {
		return b
	}
	if b, err := exec.LookPath("nats-server"); err == nil {
		return b
	}
	if isFile("/usr/sbin/nats-server") {
		return "/usr/sbin/nats-server"
	}
	t.Fatal("serverproc: nats-server not found (apt-get install nats-server)")
	return ""
}

// StartNATS starts a JetStream-enabled nats-server, stopped when the test ends.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	port := FreePort(t)
	cmd := exec.Command(NATSBinary(t), "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", t.TempDir())
	p := start(t, "nats-server", cmd, func(l string) bool { return strings.Contains(l, "Server is ready") })
	t.Cleanup(func() { p.Kill(syscall.SIGTERM) })
	return &NATS{URL: fmt.Sprintf("nats://127.0.0.1:%d", port), proc: p}
}

// Server is one capvend replica that can be killed and started again on the same port and
// data directory.
type Server struct {
	// Addr is host:port, the gRPC target.
	Addr string
	// Env is the process's extra environment (CAPVEND_LISTEN and CAPVEND_DATA_DIR included).
	Env  map[string]string
	t    testing.TB
	proc *Process
}

// StartServer starts a capvend replica with env on a free port and a new data directory,
// stopped when the test ends.
func StartServer(t testing.TB, env map[string]string) *Server {
	t.Helper()
	e := map[string]string{}
	for k, v := range env {
		e[k] = v
	}
	port := FreePort(t)
	e["CAPVEND_LISTEN"] = fmt.Sprintf("127.0.0.1:%d", port)
	if e["CAPVEND_DATA_DIR"] == "" {
		e["CAPVEND_DATA_DIR"] = t.TempDir()
	}
	s := &Server{Addr: e["CAPVEND_LISTEN"], Env: e, t: t}
	s.Start()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("capvend at %s, last output:\n%s", s.Addr, s.proc.Output())
		}
		s.Kill(syscall.SIGTERM)
	})
	return s
}

// Start (re)starts the process and waits for its "capvend listening" log line.
func (s *Server) Start() {
	s.t.Helper()
	cmd := exec.Command("node", CLI(s.t), "serve")
	cmd.Dir = RepoRoot(s.t)
	cmd.Env = os.Environ()
	for k, v := range s.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	s.proc = start(s.t, "capvend "+s.Addr, cmd, isListening)
}

// Kill sends sig to the process and waits for it to exit.
func (s *Server) Kill(sig syscall.Signal) { s.proc.Kill(sig) }

// Output is the process's last log lines.
func (s *Server) Output() string { return s.proc.Output() }

// isListening reports whether line is the JSON log line whose msg is "capvend listening".
func isListening(line string) bool {
	var l struct {
		Msg string `json:"msg"`
	}
	return json.Unmarshal([]byte(line), &l) == nil && l.Msg == "capvend listening"
}
