package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"time"

	"github.com/singchia/geminio"
	"github.com/singchia/geminio/options"
)

// Commands (one per stdin line, fields separated by spaces; "-" means "none"
// where noted). They act on the most recently connected End, run in order on
// one worker goroutine, and each prints one result event (on bad input or when
// there is no End yet, an "error" event instead). "async CMD ..." runs CMD on
// its own goroutine, so results of async commands can come in any order.
//
//	open META NBYTES [PEER]  OpenStream(meta, peer); prints "opened", writes NBYTES random
//	                         bytes, prints "written"; what the peer echoes is read and hashed
//	                         until the stream closes ("stream-closed").
//	open-echo META [PEER]    OpenStream; prints "opened"; then serves it like an accepted stream.
//	close-stream STREAMID    stream.Close() (Dismiss); prints "stream-closed-local".
//	write-default NBYTES     writes random bytes on the default stream; prints "written".
//	call METHOD [DATA [TIMEOUT_MS]]   End.Call; prints "call-result".
//	publish DATA [TOPIC [CUSTOM]]     End.Publish (5 s timeout); prints "publish-result".
//	register METHOD          End.Register(METHOD, echo); prints "registered".
//	close                    End.Close(); prints "closed-local".
//	burst N NBYTES           opens N streams one after another (meta "burst:I"); on each writes NBYTES
//	                         pattern bytes (see patternBytes) and calls Close() at once, so Dismiss can
//	                         overtake the data; prints "burst-done" with the count opened.
//	write-close-default NBYTES  writes NBYTES pattern bytes on the default stream, then End.Close() at
//	                         once; prints "closed-local".
//	quit                     exit 0 (handled in main).
func runCommand(f []string) {
	name := f[0]
	arg := func(i int, def string) string {
		if i < len(f) {
			return f[i]
		}
		return def
	}
	st := getCurrent()
	if st == nil && name != "close-stream" {
		emitError(name, errors.New("no end"))
		return
	}
	switch name {
	case "open", "open-echo":
		cmdOpen(st, name == "open-echo", f[1:])
	case "close-stream":
		cmdCloseStream(arg(1, ""))
	case "write-default":
		n, err := strconv.ParseInt(arg(1, ""), 10, 64)
		if err != nil || n < 0 {
			emitError(name, fmt.Errorf("bad NBYTES %q", arg(1, "")))
			return
		}
		total, sum, flushed, err := writeRandom(st.end, n)
		if err != nil {
			emitError(name, err)
		}
		emit("written", "streamId", idStr(st.end.StreamID()), "bytes", total, "sha256", sum,
			"flushed", flushed, "error", errText(err))
	case "call":
		cmdCall(st, arg(1, ""), arg(2, ""), arg(3, "5000"))
	case "publish":
		cmdPublish(st, arg(1, ""), arg(2, "-"), arg(3, "-"))
	case "register":
		method := arg(1, "")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := st.end.Register(ctx, method, echoRPC)
		cancel()
		if err == nil {
			addUserMethod(method)
		}
		emit("registered", "method", method, "error", errText(err))
	case "close":
		err := st.end.Close()
		emit("closed-local", "error", errText(err))
	case "burst":
		n, err1 := strconv.Atoi(arg(1, ""))
		size, err2 := strconv.Atoi(arg(2, ""))
		if err1 != nil || err2 != nil || n < 0 || size < 0 {
			emitError(name, fmt.Errorf("bad N or NBYTES %q %q", arg(1, ""), arg(2, "")))
			return
		}
		opened := 0
		var lastErr error
		for i := 0; i < n; i++ {
			opt := options.OpenStream()
			opt.SetMeta([]byte(fmt.Sprintf("burst:%d", i)))
			s, err := st.end.OpenStream(opt)
			if err != nil {
				lastErr = err
				continue
			}
			opened++
			writeAndClose(s, i, size)
		}
		emit("burst-done", "opened", opened, "error", errText(lastErr))
	case "write-close-default":
		size, err := strconv.Atoi(arg(1, ""))
		if err != nil || size < 0 {
			emitError(name, fmt.Errorf("bad NBYTES %q", arg(1, "")))
			return
		}
		_, werr := st.end.Write(patternBytes(1, size))
		cerr := st.end.Close()
		if werr == nil {
			werr = cerr
		}
		emit("closed-local", "error", errText(werr))
	default:
		emitError("command", fmt.Errorf("unknown command %q", name))
	}
}

func cmdOpen(st *endState, echo bool, args []string) {
	arg := func(i int, def string) string {
		if i < len(args) {
			return args[i]
		}
		return def
	}
	meta := arg(0, "-")
	var n int64
	peerIdx := 1
	if !echo {
		var err error
		n, err = strconv.ParseInt(arg(1, ""), 10, 64)
		if err != nil || n < 0 {
			emitError("open", fmt.Errorf("bad NBYTES %q", arg(1, "")))
			return
		}
		peerIdx = 2
	}
	opt := options.OpenStream()
	if meta != "-" {
		opt.SetMeta([]byte(meta))
	}
	if peer := arg(peerIdx, "-"); peer != "-" {
		opt.SetPeer(peer)
	}
	s, err := st.end.OpenStream(opt)
	if err != nil {
		emit("opened", "streamId", "", "meta", "", "error", errText(err))
		return
	}
	addStream(s)
	// The Go opener replaces its meta with the SessionAck's (normally empty) one.
	emit("opened", "streamId", idStr(s.StreamID()), "meta", string(s.Meta()), "error", "")
	if echo {
		serveEchoStream(s, false)
		return
	}
	// Start reading before writing, so an echoing peer is drained meanwhile.
	go receiveLoop(s)
	go func() {
		total, sum, err := pump(s, nil, nil)
		emitStreamClosed(s, total, sum, err)
	}()
	total, sum, flushed, err := writeRandom(s, n)
	emit("written", "streamId", idStr(s.StreamID()), "bytes", total, "sha256", sum,
		"flushed", flushed, "error", errText(err))
}

func cmdCloseStream(idArg string) {
	id, err := parseUint(idArg)
	if err != nil {
		emit("stream-closed-local", "streamId", idArg, "error", fmt.Sprintf("bad stream id %q", idArg))
		return
	}
	s := getStream(id)
	if s == nil {
		emit("stream-closed-local", "streamId", idArg, "error", "no such stream")
		return
	}
	err = s.Close()
	emit("stream-closed-local", "streamId", idArg, "error", errText(err))
}

func cmdCall(st *endState, method, data, timeoutArg string) {
	ms, err := strconv.Atoi(timeoutArg)
	if err != nil || ms <= 0 {
		emit("call-result", "method", method, "data", "", "error", fmt.Sprintf("bad TIMEOUT_MS %q", timeoutArg))
		return
	}
	opt := options.Call()
	opt.SetTimeout(time.Duration(ms) * time.Millisecond)
	req := st.end.NewRequest([]byte(data))
	rsp, err := st.end.Call(context.Background(), method, req, opt)
	out := ""
	if err == nil && rsp != nil {
		out = string(rsp.Data())
	}
	emit("call-result", "method", method, "data", out, "error", errText(err))
}

func cmdPublish(st *endState, data, topic, custom string) {
	mopt := options.NewMessage()
	if topic != "-" && topic != "" {
		mopt.SetTopic(topic)
	}
	if custom != "-" && custom != "" {
		mopt.SetCustom([]byte(custom))
	}
	msg := st.end.NewMessage([]byte(data), mopt)
	popt := options.Publish()
	popt.SetTimeout(5 * time.Second)
	err := st.end.Publish(context.Background(), msg, popt)
	emit("publish-result", "error", errText(err))
}

// patternBytes is the payload of write-and-close streams: NBYTES bytes, all equal to byte(seed % 251), so the
// receiver can tell a whole payload from a cut one without knowing more.
func patternBytes(seed, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(seed % 251)
	}
	return b
}

// writeAndClose writes the pattern payload for seed and closes the stream at once: Go queues the write but
// sends the Dismiss directly, so the Dismiss can reach the peer before the data.
func writeAndClose(s geminio.Stream, seed, n int) {
	if _, err := s.Write(patternBytes(seed, n)); err != nil {
		emitError("write-and-close", err)
	}
	_ = s.Close()
}

// writeRandom writes n crypto-random bytes to s in 32 KiB writes, hashing them,
// then waits (bounded) until the library has moved them out of the stream's
// queues; see waitFlushed.
func writeRandom(s geminio.Stream, n int64) (int64, string, bool, error) {
	h := sha256.New()
	buf := make([]byte, 32*1024)
	var written int64
	var werr error
	for written < n {
		chunk := buf
		if rest := n - written; rest < int64(len(chunk)) {
			chunk = chunk[:rest]
		}
		if _, err := io.ReadFull(rand.Reader, chunk); err != nil {
			werr = err
			break
		}
		// Write copies the bytes into the packet, so buf can be reused.
		m, err := s.Write(chunk)
		h.Write(chunk[:m])
		written += int64(m)
		if err != nil {
			werr = err
			break
		}
		runtime.Gosched()
	}
	flushed := waitFlushed(s, 10*time.Second)
	return written, hex.EncodeToString(h.Sum(nil)), flushed, werr
}
