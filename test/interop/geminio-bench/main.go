// Command geminio-bench measures the Go geminio library (v1.1.8) in the shapes
// the Node.js benchmark suite (bench/) measures geminio-node, so the Go numbers
// can serve as anchors taken in the same run. It prints one JSON object on
// stdout per measurement; logs go to stderr.
//
// Modes (both Ends in this process over a loopback TCP connection, Go client
// and Go server goroutines, as in the library's own test/bench):
//
//	-mode rpc     -inflight N   256 B request -> 4 KiB response round trips
//	-mode publish -inflight N   acked publishes of 5-byte messages
//	-mode stream  -streams N    128 KiB writes, counted at the reader
//
// and -mode server: listen on 127.0.0.1:0, register "echo" (4 KiB response)
// on every End and acknowledge every published message at once, print
// {"event":"listening","addr":...}, and serve until stdin closes (for the
// Node client -> Go server rows, and the Go client -> Go server pair below).
//
// -mode rpc and -mode publish with -addr HOST:PORT dial that server instead of
// running both Ends here: the Go pair in two processes, the shape of the Node
// two-process rows.
//
// Without geminio, the physical floor of the sequential rows:
//
//	-mode tcp-server   listen on 127.0.0.1:0, print {"event":"listening","addr":...},
//	                   and answer every -request bytes read with -response bytes
//	-mode tcp-pingpong -addr HOST:PORT -request N -response M
//	                   one write of N bytes, then read M bytes, in a loop
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	alog "github.com/jumboframes/armorigo/log"
	"github.com/singchia/geminio"
	"github.com/singchia/geminio/client"
	"github.com/singchia/geminio/server"
)

const (
	requestSize  = 256
	responseSize = 4096
	writeSize    = 128 * 1024
)

var response = make([]byte, responseSize)

func echo(_ context.Context, _ geminio.Request, resp geminio.Response) {
	resp.SetData(response)
}

func main() {
	// The library's default logger writes to stdout, our JSON channel.
	alog.SetOutput(os.Stderr)
	alog.SetLevel(alog.LevelError)

	mode := flag.String("mode", "", "rpc, publish, stream or server")
	inflight := flag.Int("inflight", 1, "rpc/publish: concurrent callers")
	streams := flag.Int("streams", 1, "stream: number of streams")
	duration := flag.Duration("duration", 3*time.Second, "measured window")
	warmup := flag.Duration("warmup", time.Second, "warm-up before the window")
	stall := flag.Duration("stall", 2*time.Second, "stream: no progress for this long means stalled")
	addr := flag.String("addr", "", "rpc/publish: dial this -mode server instead of a server End in this process")
	reqSize := flag.Int("request", requestSize, "tcp-server/tcp-pingpong: bytes per request")
	respSize := flag.Int("response", responseSize, "tcp-server/tcp-pingpong: bytes per response")
	flag.Parse()

	var out map[string]any
	var err error
	switch *mode {
	case "server":
		err = serve()
	case "rpc":
		out, err = benchOps("rpc", *addr, *inflight, *warmup, *duration, *stall)
	case "publish":
		out, err = benchOps("publish", *addr, *inflight, *warmup, *duration, *stall)
	case "stream":
		out, err = benchStream(*streams, *warmup, *duration, *stall)
	case "tcp-server":
		err = serveTCP(*reqSize, *respSize)
	case "tcp-pingpong":
		out, err = benchPingPong(*addr, *reqSize, *respSize, *warmup, *duration, *stall)
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	if err != nil {
		emit(map[string]any{"event": "error", "error": err.Error()})
		os.Exit(1)
	}
	if out != nil {
		out["event"] = "result"
		emit(out)
	}
	// Writers blocked on a stalled stream never return: exit without closing.
	os.Exit(0)
}

func emit(v map[string]any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func serve() error {
	ln, err := server.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	emit(map[string]any{"event": "listening", "addr": ln.Addr().String()})
	go func() {
		for {
			end, err := ln.AcceptEnd()
			if err != nil {
				return
			}
			go func() {
				if err := end.Register(context.Background(), "echo", echo); err != nil {
					fmt.Fprintln(os.Stderr, "register:", err)
				}
			}()
			go func() {
				for {
					msg, err := end.Receive(context.Background())
					if err != nil {
						return
					}
					msg.Done()
				}
			}()
		}
	}()
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// endPair connects a Go server End and a Go client End over loopback TCP.
func endPair() (geminio.End, geminio.End, error) {
	lst, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer lst.Close()
	type res struct {
		end geminio.End
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := lst.Accept()
		if err != nil {
			ch <- res{nil, err}
			return
		}
		e, err := server.NewEndWithConn(c)
		ch <- res{e, err}
	}()
	cConn, err := net.Dial("tcp", lst.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	cEnd, err := client.NewEndWithConn(cConn)
	if err != nil {
		return nil, nil, err
	}
	r := <-ch
	if r.err != nil {
		return nil, nil, r.err
	}
	return r.end, cEnd, nil
}

// dialServer connects a Go client End to a -mode server process.
func dialServer(addr string) (geminio.End, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return client.NewEndWithConn(conn)
}

// benchOps runs `inflight` goroutines doing one operation after another and
// counts the operations completed in the window that follows the warm-up.
// With addr, the server End is another process (-mode server) at addr.
func benchOps(kind, addr string, inflight int, warmup, duration, stallAfter time.Duration) (map[string]any, error) {
	var sEnd, cEnd geminio.End
	var err error
	if addr != "" {
		cEnd, err = dialServer(addr)
	} else {
		sEnd, cEnd, err = endPair()
	}
	if err != nil {
		return nil, err
	}
	var op func() error
	switch kind {
	case "rpc":
		if sEnd != nil {
			if err := sEnd.Register(context.Background(), "echo", echo); err != nil {
				return nil, err
			}
		}
		req := make([]byte, requestSize)
		op = func() error {
			resp, err := cEnd.Call(context.Background(), "echo", cEnd.NewRequest(req))
			if err != nil {
				return err
			}
			if resp.Error() != nil {
				return resp.Error()
			}
			if len(resp.Data()) != responseSize {
				return fmt.Errorf("response of %d bytes", len(resp.Data()))
			}
			return nil
		}
	case "publish":
		if sEnd != nil {
			go func() {
				for {
					msg, err := sEnd.Receive(context.Background())
					if err != nil {
						return
					}
					msg.Done()
				}
			}()
		}
		payload := []byte("hello")
		op = func() error {
			return cEnd.Publish(context.Background(), cEnd.NewMessage(payload))
		}
	}
	if addr != "" && kind == "rpc" {
		// The server registers "echo" right after it accepts the End: wait until a call gets through.
		deadline := time.Now().Add(10 * time.Second)
		for err := op(); err != nil; err = op() {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("first call to %s: %w", addr, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	var count atomic.Int64
	var stop atomic.Bool
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i := 0; i < inflight; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if err := op(); err != nil {
					firstErr.CompareAndSwap(nil, err)
					stop.Store(true)
					return
				}
				count.Add(1)
			}
		}()
	}
	out := measure(&count, warmup, duration, stallAfter)
	stop.Store(true)
	if !out["stalled"].(bool) {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
	if e, ok := firstErr.Load().(error); ok && e != nil {
		return nil, e
	}
	out["mode"] = kind
	out["inflight"] = inflight
	out["processes"] = map[bool]int{true: 2, false: 1}[addr != ""]
	return out, nil
}

// benchStream writes 128 KiB buffers on `streams` streams and counts the bytes
// the reader got. Go v1.1.8 can stall (its receiver drops packets when its
// buffers are full): a stall is reported with the rate measured until the
// last progress.
func benchStream(streams int, warmup, duration, stallAfter time.Duration) (map[string]any, error) {
	sEnd, cEnd, err := endPair()
	if err != nil {
		return nil, err
	}
	var received atomic.Int64
	accepted := make(chan error, streams)
	go func() {
		for i := 0; i < streams; i++ {
			st, err := sEnd.AcceptStream()
			if err != nil {
				accepted <- err
				return
			}
			accepted <- nil
			go func(st geminio.Stream) {
				buf := make([]byte, writeSize)
				for {
					n, err := st.Read(buf)
					received.Add(int64(n))
					if err != nil {
						return
					}
				}
			}(st)
		}
	}()
	var writers []geminio.Stream
	for i := 0; i < streams; i++ {
		st, err := cEnd.OpenStream()
		if err != nil {
			return nil, err
		}
		writers = append(writers, st)
	}
	for i := 0; i < streams; i++ {
		if err := <-accepted; err != nil {
			return nil, err
		}
	}
	var written atomic.Int64
	buf := make([]byte, writeSize)
	for _, st := range writers {
		go func(st geminio.Stream) {
			for {
				n, err := st.Write(buf)
				written.Add(int64(n))
				if err != nil {
					if !errors.Is(err, io.EOF) {
						fmt.Fprintln(os.Stderr, "write:", err)
					}
					return
				}
			}
		}(st)
	}

	out := measure(&received, warmup, duration, stallAfter)
	// Written but never read: what the receiver dropped (v1.1.8 discards a Stream packet when its 32-slot
	// queue is full, application/stream.go handleInStreamPacket), plus what is still in flight.
	out["writtenTotal"] = written.Load()
	out["notReceived"] = written.Load() - received.Load()
	out["mode"] = "stream"
	out["streams"] = streams
	if secs := out["seconds"].(float64); secs > 0 {
		out["mbPerSec"] = float64(out["ops"].(int64)) / secs / 1e6
	} else {
		out["mbPerSec"] = 0.0
	}
	return out, nil
}

// measure samples counter after the warm-up for the window. No progress for
// stallAfter means stalled: the rate is then taken up to the last progress
// (from the window start, or from the beginning if it stalled in the warm-up).
func measure(counter *atomic.Int64, warmup, duration, stallAfter time.Duration) map[string]any {
	begin := time.Now()
	windowStart := begin.Add(warmup)
	windowEnd := windowStart.Add(duration)
	var startCount int64 = -1
	last, lastProgress := counter.Load(), begin
	stalled := false
	for {
		time.Sleep(10 * time.Millisecond)
		now := time.Now()
		cur := counter.Load()
		if cur != last {
			last, lastProgress = cur, now
		}
		if startCount < 0 && !now.Before(windowStart) {
			startCount = cur
			windowStart = now
			windowEnd = now.Add(duration)
		}
		if now.Sub(lastProgress) >= stallAfter {
			stalled = true
			break
		}
		if !now.Before(windowEnd) {
			break
		}
	}
	out := map[string]any{"stalled": stalled}
	var n int64
	var secs float64
	switch {
	case !stalled:
		n, secs = last-startCount, time.Since(windowStart).Seconds()
	case startCount >= 0 && lastProgress.After(windowStart):
		n, secs = last-startCount, lastProgress.Sub(windowStart).Seconds()
	default:
		n, secs = last, lastProgress.Sub(begin).Seconds()
		out["stalledDuringWarmup"] = true
	}
	out["ops"] = n
	out["seconds"] = secs
	out["total"] = last
	out["stallAt"] = lastProgress.Sub(begin).Seconds()
	if secs > 0 {
		out["opsPerSec"] = float64(n) / secs
	} else {
		out["opsPerSec"] = 0.0
	}
	return out
}

// serveTCP answers every reqSize bytes read with respSize bytes, on every
// connection, until stdin closes.
func serveTCP(reqSize, respSize int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	emit(map[string]any{"event": "listening", "addr": ln.Addr().String()})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req := make([]byte, reqSize)
				resp := make([]byte, respSize)
				for {
					if _, err := io.ReadFull(c, req); err != nil {
						return
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// benchPingPong writes reqSize bytes and reads respSize bytes back, one round
// trip after another, over one TCP connection (Nagle off, Go's default).
func benchPingPong(addr string, reqSize, respSize int, warmup, duration, stallAfter time.Duration) (map[string]any, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var count atomic.Int64
	var firstErr atomic.Value
	go func() {
		req := make([]byte, reqSize)
		resp := make([]byte, respSize)
		for {
			if _, err := c.Write(req); err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			if _, err := io.ReadFull(c, resp); err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			count.Add(1)
		}
	}()
	out := measure(&count, warmup, duration, stallAfter)
	if e, ok := firstErr.Load().(error); ok && e != nil {
		return nil, e
	}
	out["mode"] = "tcp-pingpong"
	out["processes"] = 2
	return out, nil
}
