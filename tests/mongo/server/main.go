// SPDX-License-Identifier: Apache-2.0

// Command entitle-mongo-test-server is the Mongo-wire server of Entitle's test suites: it
// embeds FerretDB (package ferretdb, sqlite handler) and serves it on a loopback TCP port,
// so the store contract suite, the store benchmark and the integration tests can run the
// MongoDB backend without a MongoDB installation. It owns nothing but its data directory;
// starting, waiting and stopping belong to mongo_fixture.sh.
//
// Why a proxy: FerretDB 1.x runs findAndModify and update as "query, change in Go, UPDATE
// by _id", with nothing in between to stop a concurrent writer, so two clients incrementing
// one counter can both read 5 and both write 6. MongoDB applies them atomically per
// document, and the store relies on that (SQN, versions, outbox leases). FerretDB therefore
// listens on a Unix socket inside the data directory, and this program's TCP listener
// forwards each client request to it and waits for the reply while holding one process-wide
// mutex: one command at a time, which makes every single-document operation atomic, as on
// MongoDB. (-serialize=false turns that off, to watch the race happen.)
//
//	entitle-mongo-test-server -dir DIR [-listen 127.0.0.1:0] [-uri-file FILE]
//
// With port 0 the kernel picks a free port; the resulting connection string is written to
// -uri-file (atomically, via a rename) once the listener accepts connections, and printed on
// stdout. SIGTERM or SIGINT stops the server; exit status 0 after a clean stop.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	dir := flag.String("dir", "", "data directory (created if missing); required")
	listen := flag.String("listen", "127.0.0.1:0", "loopback TCP address; port 0 = any free port")
	uriFile := flag.String("uri-file", "", "write the mongodb:// URI here once serving")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	serialize := flag.Bool("serialize", true, "run one command at a time (see the package comment)")
	flag.Parse()

	if err := run(*dir, *listen, *uriFile, *logLevel, *serialize); err != nil {
		fmt.Fprintf(os.Stderr, "entitle-mongo-test-server: %s\n", err)
		os.Exit(1)
	}
}

func run(dir, listen, uriFile, logLevel string, serialize bool) error {
	if dir == "" {
		return errors.New("-dir is required")
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", listen, err)
	}
	// A test server must never be reachable from the network.
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen %q: only loopback addresses are allowed", listen)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err = os.MkdirAll(abs, 0o700); err != nil {
		return err
	}

	var level slog.Level
	if err = level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	sock := filepath.Join(abs, "ferretdb.sock")
	_ = os.Remove(sock)
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{Unix: sock},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	// MongoDBURI waits for FerretDB's listener.
	_ = f.MongoDBURI()

	p := &proxy{backend: sock, serialize: serialize, logger: logger}
	proxied := make(chan struct{})
	go func() {
		p.serve(ctx, ln)
		close(proxied)
	}()
	uri := "mongodb://" + ln.Addr().String() + "/"
	if err = waitServing(ctx, uri); err != nil {
		stop()
		<-proxied
		<-done
		return err
	}
	if uriFile != "" {
		if err = writeAtomic(uriFile, uri+"\n"); err != nil {
			stop()
			<-done
			return err
		}
	}
	fmt.Println(uri)

	<-ctx.Done()
	<-proxied
	err = <-done
	if uriFile != "" {
		_ = os.Remove(uriFile)
	}
	return err
}

// waitServing dials the listener until it accepts a connection (at most 30 s).
func waitServing(ctx context.Context, uri string) error {
	addr := strings.TrimSuffix(strings.TrimPrefix(uri, "mongodb://"), "/")
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("listener %s never accepted: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func writeAtomic(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// proxy forwards Mongo wire messages from TCP clients to FerretDB's Unix socket.
type proxy struct {
	backend   string
	serialize bool
	logger    *slog.Logger
	mu        sync.Mutex // held from sending a request until its whole reply is back
	conns     sync.WaitGroup
}

func (p *proxy) serve(ctx context.Context, ln net.Listener) {
	go func() {
		<-ctx.Done()
		_ = ln.Close()
	}()
	var open sync.Map
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		open.Store(c, struct{}{})
		p.conns.Add(1)
		go func() {
			defer p.conns.Done()
			defer open.Delete(c)
			p.handle(c)
		}()
	}
	open.Range(func(k, _ any) bool {
		_ = k.(net.Conn).Close()
		return true
	})
	p.conns.Wait()
}

// OP_MSG flag bit: the sender will send another message without waiting for a reply.
const (
	opMsg          = 2013
	flagMoreToCome = 1 << 1
	maxMessage     = 48 * 1024 * 1024
)

// readMessage reads one whole wire message (16-byte header, int32 length first).
func readMessage(r io.Reader) ([]byte, error) {
	var hdr [16]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.LittleEndian.Uint32(hdr[0:4]))
	if n < 16 || n > maxMessage {
		return nil, fmt.Errorf("bad message length %d", n)
	}
	msg := make([]byte, n)
	copy(msg, hdr[:])
	if _, err := io.ReadFull(r, msg[16:]); err != nil {
		return nil, err
	}
	return msg, nil
}

func moreToCome(msg []byte) bool {
	return len(msg) >= 20 && binary.LittleEndian.Uint32(msg[12:16]) == opMsg &&
		binary.LittleEndian.Uint32(msg[16:20])&flagMoreToCome != 0
}

func (p *proxy) handle(client net.Conn) {
	defer client.Close()
	backend, err := net.Dial("unix", p.backend)
	if err != nil {
		p.logger.Error("proxy: cannot reach FerretDB", "error", err)
		return
	}
	defer backend.Close()
	for {
		req, err := readMessage(client)
		if err != nil {
			return
		}
		if err = p.roundTrip(backend, client, req); err != nil {
			return
		}
	}
}

// roundTrip sends one request and relays its replies: none when the request says more is
// coming, several while a reply says so (exhaust cursors, streaming hello).
func (p *proxy) roundTrip(backend, client net.Conn, req []byte) error {
	if p.serialize {
		p.mu.Lock()
		defer p.mu.Unlock()
	}
	if _, err := backend.Write(req); err != nil {
		return err
	}
	if moreToCome(req) {
		return nil
	}
	for {
		reply, err := readMessage(backend)
		if err != nil {
			return err
		}
		if _, err = client.Write(reply); err != nil {
			return err
		}
		if !moreToCome(reply) {
			return nil
		}
	}
}
