package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/singchia/geminio"
	"github.com/singchia/geminio/delegate"
)

var builtinNames = []string{"echo", "fail", "slow", "whoami", "deadline"}

// builtinRPC returns the handler for a built-in method; unknown names echo.
func builtinRPC(name string) geminio.RPC {
	switch name {
	case "fail":
		return func(_ context.Context, req geminio.Request, rsp geminio.Response) {
			rsp.SetError(errors.New("boom: " + string(req.Data())))
		}
	case "slow":
		return func(_ context.Context, req geminio.Request, rsp geminio.Response) {
			ms, err := strconv.Atoi(strings.TrimSpace(string(req.Data())))
			if err != nil {
				rsp.SetError(fmt.Errorf("slow: bad milliseconds %q", string(req.Data())))
				return
			}
			// The handler ctx carries the caller's deadline, but the library sends
			// the response when the handler returns regardless; just sleep.
			time.Sleep(time.Duration(ms) * time.Millisecond)
			rsp.SetData([]byte("slept"))
		}
	case "deadline":
		// The deadline the caller put on the wire, as Unix milliseconds, or "none".
		return func(ctx context.Context, _ geminio.Request, rsp geminio.Response) {
			if d, ok := ctx.Deadline(); ok {
				rsp.SetData([]byte(strconv.FormatInt(d.UnixMilli(), 10)))
				return
			}
			rsp.SetData([]byte("none"))
		}
	case "whoami":
		return func(_ context.Context, req geminio.Request, rsp geminio.Response) {
			rsp.SetData([]byte(idStr(req.ClientID())))
		}
	default:
		return echoRPC
	}
}

func echoRPC(_ context.Context, req geminio.Request, rsp geminio.Response) {
	rsp.SetData(req.Data())
}

// ---- End bookkeeping ------------------------------------------------------

// endState is what commands act on. For a RetryEnd, end is the RetryEnd (so
// commands get its reconnect-and-retry behaviour) while the per-connection
// loops run on each underlying End.
type endState struct {
	end geminio.End
}

var (
	curMu   sync.Mutex
	current *endState

	streamsMu sync.Mutex
	streams   = map[uint64]geminio.Stream{}

	// methods registered with the "register" command; a RetryEnd re-registers
	// them after reconnecting, so the "ready" event after "reconnected" lists them.
	userMethodsMu sync.Mutex
	userMethods   []string
)

func addUserMethod(m string) {
	userMethodsMu.Lock()
	defer userMethodsMu.Unlock()
	if !contains(userMethods, m) {
		userMethods = append(userMethods, m)
	}
}

func setCurrent(st *endState) {
	curMu.Lock()
	current = st
	curMu.Unlock()
}

func getCurrent() *endState {
	curMu.Lock()
	defer curMu.Unlock()
	return current
}

func addStream(s geminio.Stream) {
	streamsMu.Lock()
	streams[s.StreamID()] = s
	streamsMu.Unlock()
}

func getStream(id uint64) geminio.Stream {
	streamsMu.Lock()
	defer streamsMu.Unlock()
	return streams[id]
}

// serveEnd prints "end", starts the per-connection loops on conn and registers
// the built-in handlers through cmdEnd (the End itself, or the RetryEnd, which
// then re-registers them on every reconnect), then prints "ready".
func serveEnd(cmdEnd, conn geminio.End) {
	setCurrent(&endState{end: cmdEnd})
	emit("end", "clientId", idStr(conn.ClientID()), "meta", string(conn.Meta()))
	startLoops(conn)

	methods := append([]string{}, cfg.registerLocal...)
	for _, name := range builtinNames {
		if contains(cfg.registerLocal, name) {
			continue // already registered during End construction
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := cmdEnd.Register(ctx, name, builtinRPC(name))
		cancel()
		if err != nil {
			emitError("register "+name, err)
			continue
		}
		methods = append(methods, name)
	}
	// Not part of the original brief: tells tests the built-in handlers are
	// registered (the peer has acked every Register), so calls will find them.
	emit("ready", "clientId", idStr(conn.ClientID()), "methods", methods)
}

// startLoops runs, for one connection's End: the default-stream echo (or
// hash), the message receive loop on stream 1 and the stream accept loop.
func startLoops(conn geminio.End) {
	go defaultStreamLoop(conn)
	go receiveLoop(conn)
	go acceptLoop(conn)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// defaultStreamLoop reads raw bytes from the End's default stream (stream 1)
// and echoes them back, or with -no-default-echo only hashes them.
func defaultStreamLoop(end geminio.End) {
	const mib = 1 << 20
	var echo io.Writer
	if !cfg.noDefaultEcho {
		echo = end
	}
	var lastMiB int64
	progress := func(total int64, sum func() string) {
		if cfg.noDefaultEcho && total/mib > lastMiB {
			lastMiB = total / mib
			emit("default-data", "clientId", idStr(end.ClientID()), "bytes", total, "sha256", sum(),
				"dropped", droppedOn(end.ClientID(), end.StreamID()))
		}
	}
	total, sum, err := pump(end, echo, progress)
	dropped := droppedOn(end.ClientID(), end.StreamID())
	if cfg.noDefaultEcho {
		emit("default-data", "clientId", idStr(end.ClientID()), "bytes", total, "sha256", sum, "dropped", dropped)
	}
	emit("end-closed", "clientId", idStr(end.ClientID()), "error", errText(err), "dropped", dropped)
}

// receiveLoop prints every message received on s and acks it: data starting
// with "error:" is acked with that error text, anything else with Done().
func receiveLoop(s geminio.Stream) {
	for {
		msg, err := s.Receive(context.Background())
		if err != nil {
			logger.Debugf("receive loop on stream %d ended: %s", s.StreamID(), err)
			return
		}
		data := string(msg.Data())
		emit("message", "clientId", idStr(msg.ClientID()), "streamId", idStr(msg.StreamID()),
			"data", data, "topic", msg.Topic(), "custom", string(msg.Custom()))
		if rest, ok := strings.CutPrefix(data, "error:"); ok {
			err = msg.Error(errors.New(rest))
		} else {
			err = msg.Done()
		}
		if err != nil {
			emitError("ack", err)
		}
	}
}

func acceptLoop(end geminio.End) {
	for {
		s, err := end.AcceptStream()
		if err != nil {
			logger.Debugf("accept loop ended: %s", err)
			return
		}
		addStream(s)
		emit("stream", "clientId", idStr(s.ClientID()), "streamId", idStr(s.StreamID()),
			"meta", string(s.Meta()), "peer", s.Peer())
		// meta "write-close:SEED:NBYTES": write the pattern payload and close at once (see writeAndClose).
		if rest, ok := strings.CutPrefix(string(s.Meta()), "write-close:"); ok {
			var seed, n int
			if _, err := fmt.Sscanf(rest, "%d:%d", &seed, &n); err != nil {
				emitError("write-close", err)
				_ = s.Close()
				continue
			}
			go writeAndClose(s, seed, n)
			continue
		}
		serveEchoStream(s, true)
	}
}

// serveEchoStream echoes and hashes a stream's raw bytes, prints its messages,
// and registers "echo" on it (RPC registrations are per stream).
func serveEchoStream(s geminio.Stream, accepted bool) {
	go receiveLoop(s)
	go func() {
		total, sum, err := pump(s, s, nil)
		emitStreamClosed(s, total, sum, err)
	}()
	go func() {
		if accepted {
			// When a Go client opens a stream, packets the server sends right after
			// its SessionAck can be dropped by the client (the opener files the new
			// stream ID only after open() returns). Give it a moment, and retry once.
			time.Sleep(20 * time.Millisecond)
		}
		var err error
		for attempt := 0; attempt < 2; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = s.Register(ctx, "echo", echoRPC)
			cancel()
			if err == nil || !errors.Is(err, context.DeadlineExceeded) {
				break
			}
		}
		// Not part of the original brief: "echo" is now callable on this stream.
		emit("stream-ready", "streamId", idStr(s.StreamID()), "error", errText(err))
	}()
}

// pump reads r until error, hashing everything; if echo is non-nil it writes
// each chunk back through an unbounded queue. The read loop itself only copies
// and hands chunks to a separate goroutine: the Go library silently DROPS raw
// packets when a stream's 32-deep read queue is full, so the reader must never
// wait for hashing or echo writes. progress (optional) runs on the hashing
// goroutine after each chunk with the running total.
func pump(r io.Reader, echo io.Writer, progress func(int64, func() string)) (int64, string, error) {
	h := sha256.New()
	sum := func() string { return hex.EncodeToString(h.Sum(nil)) }
	var q *echoQueue
	if echo != nil {
		q = newEchoQueue(echo)
		defer q.close()
	}
	chunks := make(chan []byte, 4096)
	done := make(chan int64)
	go func() {
		var total int64
		for b := range chunks {
			h.Write(b)
			total += int64(len(b))
			if q != nil {
				q.push(b)
			}
			if progress != nil {
				progress(total, sum)
			}
		}
		done <- total
	}()
	buf := make([]byte, 64*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			chunks <- append([]byte(nil), buf[:n]...)
		}
		if err != nil {
			close(chunks)
			total := <-done
			return total, sum(), err
		}
	}
}

func emitStreamClosed(s geminio.Stream, total int64, sum string, err error) {
	emit("stream-closed", "streamId", idStr(s.StreamID()), "bytes", total, "sha256", sum, "error", errText(err),
		"dropped", droppedOn(s.ClientID(), s.StreamID()))
}

type echoQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	bufs   [][]byte
	closed bool
}

func newEchoQueue(w io.Writer) *echoQueue {
	q := &echoQueue{}
	q.cond = sync.NewCond(&q.mu)
	go q.run(w)
	return q
}

func (q *echoQueue) push(b []byte) {
	q.mu.Lock()
	q.bufs = append(q.bufs, b)
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *echoQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *echoQueue) run(w io.Writer) {
	for {
		q.mu.Lock()
		for len(q.bufs) == 0 && !q.closed {
			q.cond.Wait()
		}
		if len(q.bufs) == 0 {
			q.mu.Unlock()
			return
		}
		b := q.bufs[0]
		q.bufs[0] = nil
		q.bufs = q.bufs[1:]
		q.mu.Unlock()
		if _, err := w.Write(b); err != nil {
			logger.Debugf("echo write: %s", err)
			q.mu.Lock()
			q.bufs = nil
			q.closed = true
			q.mu.Unlock()
			return
		}
	}
}

// ---- delegates ------------------------------------------------------------

// serverDelegate is always installed on the server. Its GetClientID returns 0
// (= let the library pick, the same as having no delegate) unless
// -delegate-clientid says otherwise.
type serverDelegate struct {
	*delegate.UnimplementedDelegate
	mode  string // "", "fixed", "wanted", "reject"
	fixed uint64
}

func newServerDelegate(flagValue string) (*serverDelegate, error) {
	d := &serverDelegate{UnimplementedDelegate: &delegate.UnimplementedDelegate{}}
	switch flagValue {
	case "":
	case "wanted", "reject":
		d.mode = flagValue
	default:
		n, err := parseUint(flagValue)
		if err != nil {
			return nil, fmt.Errorf("bad -delegate-clientid %q: want N, wanted or reject", flagValue)
		}
		if n > 0 {
			d.mode, d.fixed = "fixed", n
		}
	}
	return d, nil
}

// GetClientID (the v1.1.6+ signature with wantedID) shadows the old
// one-argument method of the embedded UnimplementedDelegate.
func (d *serverDelegate) GetClientID(wantedID uint64, meta []byte) (uint64, error) {
	emit("get-clientid", "wanted", idStr(wantedID), "meta", string(meta))
	switch d.mode {
	case "fixed":
		return d.fixed, nil
	case "wanted":
		return wantedID, nil
	case "reject":
		return 0, errors.New("rejected by delegate")
	}
	return 0, nil
}

func (d *serverDelegate) ConnOffline(c delegate.ConnDescriber) error {
	emit("offline", "clientId", idStr(c.ClientID()))
	return nil
}

func (d *serverDelegate) Heartbeat(c delegate.ConnDescriber) error {
	emit("heartbeat", "clientId", idStr(c.ClientID()))
	return nil
}

func (d *serverDelegate) RemoteRegistration(method string, clientID uint64, streamID uint64) {
	emit("remote-registration", "clientId", idStr(clientID), "streamId", idStr(streamID), "method", method)
}

type clientDelegate struct {
	delegate.UnimplementedDelegate
	mu       sync.Mutex
	lastConn geminio.End
	// lastOffline is the ClientID of the last connection that went offline (0 before any).
	lastOffline uint64
}

func (d *clientDelegate) offlineID() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastOffline
}

// ConnOnline is only called by a RetryEnd (from its dial step), with the new
// underlying End; remember it so its loops can be started.
func (d *clientDelegate) ConnOnline(c delegate.ConnDescriber) error {
	if e, ok := c.(geminio.End); ok {
		d.mu.Lock()
		d.lastConn = e
		d.mu.Unlock()
	}
	return nil
}

func (d *clientDelegate) underlying() geminio.End {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastConn
}

// ConnOffline must return nil: for a RetryEnd an error here stops the reconnect.
func (d *clientDelegate) ConnOffline(c delegate.ConnDescriber) error {
	d.mu.Lock()
	d.lastOffline = c.ClientID()
	d.mu.Unlock()
	emit("offline", "clientId", idStr(c.ClientID()))
	return nil
}

func (d *clientDelegate) RemoteRegistration(method string, clientID uint64, streamID uint64) {
	emit("remote-registration", "clientId", idStr(clientID), "streamId", idStr(streamID), "method", method)
}

// EndReOnline is called by a RetryEnd after it redialled, did a fresh
// handshake (a Go server without a delegate hands out a NEW clientId) and
// re-sent Register for the methods registered through it.
func (d *clientDelegate) EndReOnline(c delegate.ClientDescriber) {
	emit("reconnected", "clientId", idStr(c.ClientID()))
	e, ok := c.(geminio.End)
	if !ok {
		emitError("reconnected", fmt.Errorf("EndReOnline got %T, not an End", c))
		return
	}
	emit("end", "clientId", idStr(e.ClientID()), "meta", string(e.Meta()))
	startLoops(e)
	methods := append([]string{}, cfg.registerLocal...)
	userMethodsMu.Lock()
	names := append(append([]string{}, builtinNames...), userMethods...)
	userMethodsMu.Unlock()
	for _, name := range names {
		if !contains(methods, name) {
			methods = append(methods, name)
		}
	}
	emit("ready", "clientId", idStr(c.ClientID()), "methods", methods)
}

var _ delegate.ServerDelegate = (*serverDelegate)(nil)
var _ delegate.ClientDelegate = (*clientDelegate)(nil)
