package main

import (
	"reflect"
	"time"
)

// Why this exists: in geminio v1.1.8 stream.Write only puts the packet on the
// stream's 32-deep write queue (application stream.writeInCh); a goroutine then
// moves it to the dialogue's queue (multiplexer dialogue.writeInCh). But
// stream.Close() puts the Dismiss straight onto the dialogue's queue, so a
// Close issued right after a Write can overtake up to 32 queued data packets,
// and packets still queued when the stream finalizes are discarded. To make
// "written" mean "handed to the connection", we wait until those queues are
// empty before printing it. The library exposes no API for this, so we peek at
// the channel lengths with reflection (read-only; pinned to v1.1.8 internals).
// If the layout is not found, we do not wait.

const applicationPkg = "github.com/singchia/geminio/application"

// streamQueues returns the outgoing channels of the *application.stream
// behind s (stream.writeInCh, dialogue.writeInCh and dialogue.writeOutCh) and
// its streamOK flag (false once the stream is finalized).
func streamQueues(s any) (out []reflect.Value, streamOK reflect.Value) {
	sm, ok := findAppStream(reflect.ValueOf(s), 0)
	if !ok {
		return nil, reflect.Value{}
	}
	if f := sm.FieldByName("streamOK"); f.IsValid() && f.Kind() == reflect.Bool {
		streamOK = f
	}
	if ch := sm.FieldByName("writeInCh"); ch.IsValid() && ch.Kind() == reflect.Chan {
		out = append(out, ch)
	}
	dg := sm.FieldByName("dg")
	for i := 0; i < 4 && dg.IsValid() && (dg.Kind() == reflect.Interface || dg.Kind() == reflect.Ptr); i++ {
		if dg.IsNil() {
			return out, streamOK
		}
		dg = dg.Elem()
	}
	if dg.IsValid() && dg.Kind() == reflect.Struct {
		for _, name := range []string{"writeInCh", "writeOutCh"} {
			if ch := dg.FieldByName(name); ch.IsValid() && ch.Kind() == reflect.Chan {
				out = append(out, ch)
			}
		}
	}
	return out, streamOK
}

// findAppStream unwraps interfaces/pointers and the End wrappers
// (client/server End -> field End -> application.End -> embedded *stream).
// A RetryEnd keeps its End behind an unsafe.Pointer and is not unwrapped.
func findAppStream(v reflect.Value, depth int) (reflect.Value, bool) {
	for ; depth < 12; depth++ {
		switch v.Kind() {
		case reflect.Interface, reflect.Ptr:
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		case reflect.Struct:
			t := v.Type()
			if t.Name() == "stream" && t.PkgPath() == applicationPkg {
				return v, true
			}
			next := reflect.Value{}
			for _, name := range []string{"stream", "End"} {
				if sf, ok := t.FieldByName(name); ok && len(sf.Index) == 1 {
					next = v.Field(sf.Index[0])
					break
				}
			}
			if !next.IsValid() {
				return reflect.Value{}, false
			}
			v = next
		default:
			return reflect.Value{}, false
		}
	}
	return reflect.Value{}, false
}

// waitFlushed polls until the outgoing queues of s have been seen empty three
// times in a row, or timeout passes, or the stream is finalized (whatever is
// still queued then is discarded by the library). It reports whether they
// drained.
func waitFlushed(s any, timeout time.Duration) bool {
	queues, streamOK := streamQueues(s)
	if len(queues) == 0 {
		return true
	}
	deadline := time.Now().Add(timeout)
	empty := 0
	for time.Now().Before(deadline) {
		// unsynchronized read of a bool the library sets under its lock; fine for polling
		if streamOK.IsValid() && !streamOK.Bool() {
			return false
		}
		n := 0
		for _, q := range queues {
			n += q.Len() // nil channel (finalized stream) has length 0
		}
		if n == 0 {
			empty++
			if empty >= 3 {
				return true
			}
		} else {
			empty = 0
		}
		time.Sleep(time.Millisecond)
	}
	return false
}
