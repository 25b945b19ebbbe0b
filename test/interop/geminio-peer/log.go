package main

import (
	"strings"
	"sync"

	alog "github.com/jumboframes/armorigo/log"
)

// dropLogger is the Logger given to the library (SetLog). It writes to stderr
// like the wrapped *alog.Log, and also watches for the one log line that
// reports silent data loss: when a stream's raw read queue (32 packets unless
// -buffer is set) is full, geminio v1.1.8 discards the incoming raw packet and
// only logs "stream read in packet but buffer full and discard" at INFO level.
// We count those per stream and report them as "dropped" events (the first one
// per stream, then every 100th) and in "stream-closed"/"end-closed" events.
type dropLogger struct {
	*alog.Log
}

const dropLogPrefix = "stream read in packet but buffer full and discard"

var (
	dropsMu sync.Mutex
	drops   = map[dropKey]int64{} // dropped raw packets per stream
)

// Stream IDs are only unique per connection (every End's default stream is 1).
type dropKey struct{ clientID, streamID uint64 }

func droppedOn(clientID, streamID uint64) int64 {
	dropsMu.Lock()
	defer dropsMu.Unlock()
	return drops[dropKey{clientID, streamID}]
}

func (l dropLogger) Infof(format string, v ...interface{}) {
	if strings.HasPrefix(format, dropLogPrefix) && len(v) >= 2 {
		clientID, _ := v[0].(uint64)
		streamID, _ := v[1].(uint64)
		dropsMu.Lock()
		key := dropKey{clientID, streamID}
		drops[key]++
		n := drops[key]
		dropsMu.Unlock()
		if n == 1 || n%100 == 0 {
			emit("dropped", "clientId", idStr(clientID), "streamId", idStr(streamID), "count", n)
		}
	}
	l.Log.Infof(format, v...)
}

var _ alog.Logger = dropLogger{}
