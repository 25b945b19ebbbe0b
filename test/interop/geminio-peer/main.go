// Command geminio-peer is a scriptable peer built on the Go geminio library
// (github.com/singchia/geminio), used by the Node.js interop tests.
//
// It runs as a server (-role server) or a client (-role client), prints one
// JSON event per line on stdout, logs on stderr, and takes line commands on
// stdin. Commands run one at a time in the order received, each printing
// exactly one result event; prefix a command with "async " to run it in the
// background instead (e.g. "async call slow 3000"). "quit" and stdin EOF are
// handled at once, even while a command is running. See commands.go for the
// command list and end.go for the per-End behaviour.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	alog "github.com/jumboframes/armorigo/log"
	"github.com/singchia/geminio"
	"github.com/singchia/geminio/client"
	"github.com/singchia/geminio/server"
)

type config struct {
	role             string
	addr             string
	meta             string
	retry            bool
	waitRemote       []string
	registerLocal    []string
	clientID         uint64
	delegateClientID string
	noDefaultEcho    bool
	bufferSize       int
}

var (
	cfg    config
	logger alog.Logger
)

func main() {
	// The library's default logger (armorigo log.DefaultLog) writes to STDOUT,
	// which is our JSON channel. Redirect it before anything can log.
	alog.SetOutput(os.Stderr)

	role := flag.String("role", "", "server or client (required)")
	addr := flag.String("addr", "", "server: listen address (default 127.0.0.1:0); client: address to dial")
	meta := flag.String("meta", "", "client: End meta")
	retry := flag.Bool("retry", false, "client: use NewRetryEndWithDialer (auto-reconnect)")
	waitRemote := flag.String("wait-remote", "", "comma-separated methods for SetWaitRemoteRPCs")
	registerLocal := flag.String("register-local", "", "comma-separated methods for SetRegisterLocalRPCs (built-in handlers; unknown names echo)")
	clientID := flag.Uint64("client-id", 0, "client: SetClientID (0 = unset)")
	delegateClientID := flag.String("delegate-clientid", "", "server: delegate GetClientID returns N (>0), \"wanted\", or \"reject\"")
	noDefaultEcho := flag.Bool("no-default-echo", false, "hash (do not echo) raw bytes arriving on the default stream")
	bufferSize := flag.Int("buffer", 0, "SetBufferSize(N, N) on the End options (0 = library default 32)")
	logLevel := flag.String("log-level", "info", "library log level: trace, debug, info, warn, error")
	flag.Parse()

	cfg = config{
		role:             *role,
		addr:             *addr,
		meta:             *meta,
		retry:            *retry,
		waitRemote:       splitList(*waitRemote),
		registerLocal:    splitList(*registerLocal),
		clientID:         *clientID,
		delegateClientID: *delegateClientID,
		noDefaultEcho:    *noDefaultEcho,
		bufferSize:       *bufferSize,
	}

	lvl, err := alog.ParseLevel(*logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bad -log-level %q: %s\n", *logLevel, err)
		os.Exit(2)
	}
	alog.SetLevel(lvl)
	logger = dropLogger{alog.NewLog().WithOutput(os.Stderr).WithLevel(lvl)}

	var ln server.Listener
	switch cfg.role {
	case "server":
		ln = startServer()
	case "client":
		startClient()
	default:
		fmt.Fprintln(os.Stderr, "-role must be server or client")
		os.Exit(2)
	}

	readCommands(ln)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func localMethodRPCs() []*geminio.MethodRPC {
	var out []*geminio.MethodRPC
	for _, m := range cfg.registerLocal {
		out = append(out, &geminio.MethodRPC{Method: m, RPC: builtinRPC(m)})
	}
	return out
}

func startServer() server.Listener {
	opts := server.NewEndOptions()
	opts.SetLog(logger)
	dlgt, err := newServerDelegate(cfg.delegateClientID)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	opts.SetDelegate(dlgt)
	if len(cfg.waitRemote) > 0 {
		opts.SetWaitRemoteRPCs(cfg.waitRemote...)
	}
	if len(cfg.registerLocal) > 0 {
		opts.SetRegisterLocalRPCs(localMethodRPCs()...)
	}
	if cfg.bufferSize > 0 {
		opts.SetBufferSize(cfg.bufferSize, cfg.bufferSize)
	}
	addr := cfg.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := server.Listen("tcp", addr, opts)
	if err != nil {
		emitError("listen", err)
		return nil
	}
	emit("listening", "addr", ln.Addr().String())
	go func() {
		for {
			// AcceptEnd accepts one TCP connection and waits for its whole End
			// construction (handshake, local registrations, SetWaitRemoteRPCs),
			// so a stalled peer blocks this loop; that is the library's design.
			end, err := ln.AcceptEnd()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				// e.g. a handshake the delegate rejected, or a handshake timeout
				emitError("accept-end", err)
				continue
			}
			go serveEnd(end, end)
		}
	}()
	return ln
}

func startClient() {
	if cfg.addr == "" {
		fmt.Fprintln(os.Stderr, "-addr is required for -role client")
		os.Exit(2)
	}
	opts := client.NewEndOptions()
	opts.SetLog(logger)
	dlgt := &clientDelegate{}
	opts.SetDelegate(dlgt)
	if cfg.meta != "" {
		opts.SetMeta([]byte(cfg.meta))
	}
	if cfg.clientID != 0 {
		opts.SetClientID(cfg.clientID)
	}
	if len(cfg.waitRemote) > 0 {
		opts.SetWaitRemoteRPCs(cfg.waitRemote...)
	}
	if len(cfg.registerLocal) > 0 {
		opts.SetRegisterLocalRPCs(localMethodRPCs()...)
	}
	if cfg.bufferSize > 0 {
		opts.SetBufferSize(cfg.bufferSize, cfg.bufferSize)
	}
	// Connecting can block (handshake up to 10 s, SetWaitRemoteRPCs forever),
	// so do it off the stdin goroutine: "quit" and stdin EOF must still work.
	go func() {
		var (
			end geminio.End
			err error
		)
		if cfg.retry {
			addr := cfg.addr
			end, err = client.NewRetryEndWithDialer(func() (net.Conn, error) {
				return net.Dial("tcp", addr)
			}, opts)
		} else {
			end, err = newEndRetryingLostAck(opts, dlgt)
		}
		if err != nil {
			emitError("connect", err)
			return
		}
		conn := end
		if cfg.retry {
			// Run the loops on the underlying End, not on the RetryEnd: every
			// RetryEnd operation that hits io.EOF starts its own redial (3 s
			// sleep each, serialized), so loops on it would compete with the
			// library's reconnect and with commands while the server is down.
			if u := dlgt.underlying(); u != nil {
				conn = u
			}
		}
		serveEnd(end, conn)
	}()
}

func readCommands(ln server.Listener) {
	work := make(chan []string, 4096)
	go func() {
		for f := range work {
			runCommand(f)
		}
	}()
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		switch {
		case fields[0] == "quit":
			if ln != nil {
				_ = ln.Close()
			}
			os.Exit(0)
		case fields[0] == "async" && len(fields) > 1:
			go runCommand(fields[1:])
		default:
			work <- fields
		}
	}
	// stdin EOF (or error): the parent is gone or done with us.
	if ln != nil {
		_ = ln.Close()
	}
	os.Exit(0)
}

func parseUint(s string) (uint64, error) {
	return strconv.ParseUint(s, 10, 64)
}

// newEndRetryingLostAck is client.NewEnd, tried again (up to 3 times in all) when the handshake times out.
//
// The Go library's client handshake has a race (conn/conn_client.go, connect): it queues the Conn packet first and
// registers the wait for its ConnAck after, so on a busy machine the ConnAck can be read and handled in between.
// It is then dropped, and connect fails with "timeout" after 10 s although the server answered. The handshake
// had reached the client, and it learned its ClientID from it, so the next attempt asks for that ID again (unless
// -client-id set one): the server then sees the same client come back, not a second one.
func newEndRetryingLostAck(opts *client.EndOptions, dlgt *clientDelegate) (geminio.End, error) {
	for attempt := 1; ; attempt++ {
		end, err := client.NewEnd("tcp", cfg.addr, opts)
		if err == nil || attempt == 3 || err.Error() != "timeout" {
			return end, err
		}
		emit("connect-retry", "attempt", attempt, "error", errText(err))
		if id := dlgt.offlineID(); cfg.clientID == 0 && id != 0 {
			opts.SetClientID(id)
		}
	}
}
