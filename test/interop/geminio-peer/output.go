package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strconv"
	"sync"
)

// All machine-readable output goes through emit: one JSON object per line on
// stdout, with "event" first and the other keys in the order given. Logs go to
// stderr only.

var outMu sync.Mutex

// emit writes {"event":event,k1:v1,k2:v2,...} followed by a newline.
// kv alternates string keys and JSON-encodable values.
func emit(event string, kv ...any) {
	var b bytes.Buffer
	b.WriteString(`{"event":`)
	writeJSON(&b, event)
	for i := 0; i+1 < len(kv); i += 2 {
		key, _ := kv[i].(string)
		b.WriteByte(',')
		writeJSON(&b, key)
		b.WriteByte(':')
		writeJSON(&b, kv[i+1])
	}
	b.WriteString("}\n")
	outMu.Lock()
	defer outMu.Unlock()
	// os.Stdout is unbuffered, so each line is flushed by this write.
	_, _ = os.Stdout.Write(b.Bytes())
}

func writeJSON(b *bytes.Buffer, v any) {
	enc, err := json.Marshal(v)
	if err != nil {
		enc, _ = json.Marshal(err.Error())
	}
	b.Write(enc)
}

// emitError reports an unexpected error without exiting.
func emitError(where string, err error) {
	emit("error", "where", where, "error", errText(err))
}

// idStr prints IDs as decimal strings: they are ~2^62 and do not fit a JS number.
func idStr(id uint64) string {
	return strconv.FormatUint(id, 10)
}

// errText is "" for nil, otherwise the error text ("EOF" for io.EOF).
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
