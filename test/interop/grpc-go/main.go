// A Go gRPC client (google.golang.org/grpc) for the HTTP/2 interop test: it calls the grpc-js echo service of
// test/sidecar/grpc-helpers.ts through the sidecars with raw-byte messages and prints one JSON line of results.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// rawCodec carries []byte messages as they are (the echo service has no protobuf schema).
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "raw" }

type result struct {
	Unary        string `json:"unary"`
	EchoedHeader string `json:"echoedHeader"`
	Trailer      string `json:"trailer"`
	StreamCount  int    `json:"streamCount"`
	StreamBytes  int    `json:"streamBytes"`
	ErrorCode    string `json:"errorCode"`
	ErrorMessage string `json:"errorMessage"`
	DeadlineCode string `json:"deadlineCode"`
}

func main() {
	addr := flag.String("addr", "", "host:port of the outbound listener")
	ca := flag.String("ca", "", "PEM CA file: connect over TLS (ALPN h2) trusting it; plaintext h2c without it")
	flag.Parse()
	creds := insecure.NewCredentials()
	if *ca != "" {
		tlsCreds, err := credentials.NewClientTLSFromFile(*ca, "")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		creds = tlsCreds
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close()
	var r result
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-client", "go")

	var head, trailer metadata.MD
	in := []byte("hello from go")
	var out []byte
	if err := conn.Invoke(ctx, "/test.Echo/Unary", &in, &out, grpc.Header(&head), grpc.Trailer(&trailer)); err != nil {
		fmt.Fprintln(os.Stderr, "unary:", err)
		os.Exit(1)
	}
	r.Unary = string(out)
	if v := head.Get("x-echo-client"); len(v) > 0 {
		r.EchoedHeader = v[0]
	}
	if v := trailer.Get("x-trailer"); len(v) > 0 {
		r.Trailer = v[0]
	}

	desc := &grpc.StreamDesc{StreamName: "ServerStream", ServerStreams: true}
	s, err := conn.NewStream(ctx, desc, "/test.Echo/ServerStream")
	if err != nil {
		fmt.Fprintln(os.Stderr, "stream:", err)
		os.Exit(1)
	}
	req := []byte("100x10000")
	if err := s.SendMsg(&req); err != nil {
		fmt.Fprintln(os.Stderr, "send:", err)
		os.Exit(1)
	}
	_ = s.CloseSend()
	for {
		var m []byte
		err := s.RecvMsg(&m)
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "recv:", err)
			os.Exit(1)
		}
		r.StreamCount++
		r.StreamBytes += len(m)
	}

	bad := []byte("fail")
	err = conn.Invoke(ctx, "/test.Echo/Unary", &bad, &out)
	st, _ := status.FromError(err)
	r.ErrorCode = st.Code().String()
	r.ErrorMessage = st.Message()

	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	x := []byte("x")
	err = conn.Invoke(dctx, "/test.Echo/Hang", &x, &out)
	st, _ = status.FromError(err)
	r.DeadlineCode = st.Code().String()

	_ = json.NewEncoder(os.Stdout).Encode(r)
}
