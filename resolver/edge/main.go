// idres-edge: a node's one port, compiled, in front of its Python workers (issue 12).
//
// It answers from memory the reads it has cached (GET /api/handles/{id}, the plain
// answer, as every worker's front door would), answers such a read it has not cached
// from the node's answers table when the record is there (store.go: the bytes a
// worker would give, written with the record), and passes every other request, with
// the client's address in Idres-Client, to the node's workers on a unix socket that
// only the node's processes reach. What the workers answer for a plain read comes
// back marked (Idres-Edge-Key: the identifier, Idres-Edge-TTL: how long at most) and
// is kept; a NOTIFY on idres_changed (the sync process's apply transaction, as the
// workers hear it) forgets it. See cache.go for why no answer older than a change
// the edge has heard of is kept, and listen.go for what happens while it cannot hear.
//
// Overload (RFC 9110 §15.6.4): cached answers are always served (they cost the edge
// microseconds); requests for the workers are refused at once with 503 and
// Retry-After while too many are under way, or while none has come back within
// -forward-target for -standing (CoDel on their sojourn, RFC 8289 §3).
//
// With -tls-cert and -tls-key the port speaks HTTPS (TLS 1.2 or later) and the
// workers are told so (Idres-Scheme: https); a client may then present a certificate
// of its own, which the workers hear of in Idres-Client-Cert (Handle.Net's client
// certificates: self-signed, its key an HS_PUBKEY; no CA is asked).
//
//	idres-edge -fd 3 -backend /run/idres/w.sock -database postgresql://... -name node
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

func main() {
	fd := flag.Int("fd", -1, "an inherited listening socket to serve on")
	listen := flag.String("listen", "", "an address to serve on (instead of -fd)")
	backend := flag.String("backend", "", "the workers' unix socket")
	database := flag.String("database", "", "the node's PostgreSQL, to hear its changes (default $IDRES_EDGE_DATABASE; none: nothing is cached)")
	name := flag.String("name", "node", "the node's name (metrics)")
	maxEntries := flag.Int("max-entries", 1_000_000, "answers kept at most")
	maxBody := flag.Int("max-body", 64<<20, "bytes a request body may have (the workers judge smaller limits)")
	maxForward := flag.Int("max-forward", 512, "requests under way at the workers past which more are refused")
	floor := flag.Int("shed-floor", 16, "requests under way at the workers below which none is refused")
	target := flag.Duration("forward-target", 50*time.Millisecond, "a forwarded request slower than this waited in a queue")
	standing := flag.Duration("standing", 100*time.Millisecond, "how long no forwarded request may be quick before new ones are refused")
	storeConns := flag.Int("store-conns", 2, "connections reading the node's answers table (0: none; the workers answer every read the cache lacks)")
	timeout := flag.Duration("timeout", 60*time.Second, "how long the workers may take to answer")
	dnsFd := flag.Int("dns-fd", -1, "an inherited UDP socket to answer DNS on (dns.go)")
	dnsBackend := flag.String("dns-backend", "", "the workers' unix datagram socket for DNS queries")
	dnsEntries := flag.Int("dns-max-entries", 1_000_000, "DNS answers kept at most")
	handleFd := flag.Int("handle-fd", -1, "an inherited listening TCP socket to answer the Handle protocol on (handle.go)")
	handleBackend := flag.String("handle-backend", "", "the workers' unix socket for Handle requests")
	tlsCert := flag.String("tls-cert", "", "PEM certificate chain: serve HTTPS (with -tls-key)")
	tlsKey := flag.String("tls-key", "", "PEM private key of -tls-cert")
	flag.Parse()
	if *backend == "" {
		log.Fatal("idres-edge: -backend is required")
	}
	ln, err := listener(*fd, *listen)
	if err != nil {
		log.Fatalf("idres-edge: %v", err)
	}
	ln, err = withTLS(ln, *tlsCert, *tlsKey)
	if err != nil {
		log.Fatalf("idres-edge: %v", err)
	}
	cache := NewCache(*maxEntries)
	var dnsFace *DNS
	if *dnsFd >= 0 {
		if *dnsBackend == "" {
			log.Fatal("idres-edge: -dns-fd needs -dns-backend")
		}
		dnsFace, err = OpenDNS(*dnsFd, *dnsBackend, NewCache(*dnsEntries),
			NewShedder(*floor, dnsMaxPending, *target, *standing))
		if err != nil {
			log.Fatalf("idres-edge: DNS: %v", err)
		}
	}
	var handleFace *Handle
	if *handleFd >= 0 {
		if *handleBackend == "" {
			log.Fatal("idres-edge: -handle-fd needs -handle-backend")
		}
		handleFace, err = OpenHandle(*handleFd, *handleBackend, NewCache(*dnsEntries),
			NewShedder(*floor, hdlMaxPending, *target, *standing))
		if err != nil {
			log.Fatalf("idres-edge: Handle: %v", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *database == "" {
		*database = os.Getenv("IDRES_EDGE_DATABASE") // not on the command line: ps shows it
	}
	var store *Store
	if *database != "" {
		caches := []*Cache{cache}
		if dnsFace != nil {
			caches = append(caches, dnsFace.cache)
		}
		if handleFace != nil {
			caches = append(caches, handleFace.cache)
		}
		go Listen(ctx, *database, caches...)
		if *storeConns > 0 {
			store = OpenStore(ctx, *database, *storeConns, NewShedder(*floor, *maxForward, *target, *standing))
		}
	}
	edge := &Edge{
		cache:   cache,
		store:   store,
		name:    *name,
		timeout: *timeout,
		shed:    NewShedder(*floor, *maxForward, *target, *standing),
		reads:   workersClient(*backend, *timeout, 5),
		workers: workersClient(*backend, *timeout, 1),
		dns:     dnsFace,
		handle:  handleFace,
	}
	server := &fasthttp.Server{
		Handler:                      edge.Serve,
		ErrorHandler:                 edge.Malformed,
		Name:                         "idres",
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		Concurrency:                  1 << 16,
		ReadBufferSize:               16 << 10,
		MaxRequestBodySize:           *maxBody,
		ReadTimeout:                  *timeout,
		IdleTimeout:                  30 * time.Second,
	}
	go orphaned(stop)
	if dnsFace != nil {
		go dnsFace.Serve()
		defer dnsFace.Close()
		fmt.Printf("idres-edge: answering DNS on udp %s\n", dnsFace.Addr())
	}
	if handleFace != nil {
		go handleFace.Serve()
		defer handleFace.Close()
		fmt.Printf("idres-edge: answering the Handle protocol on tcp %s\n", handleFace.Addr())
	}
	go func() {
		<-ctx.Done()
		deadline, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = server.ShutdownWithContext(deadline)
	}()
	fmt.Printf("idres-edge: serving %s for node %s, workers at %s, up to %d answers cached\n",
		ln.Addr(), *name, *backend, *maxEntries)
	if err := server.Serve(ln); err != nil && ctx.Err() == nil {
		log.Fatalf("idres-edge: %v", err)
	}
}

// workersClient is a pool of connections to the workers. attempts: how often a
// request is sent again on a connection found closed; fasthttp would resend even a
// PUT, which a worker may have applied already: 1 for everything but reads.
func workersClient(backend string, timeout time.Duration, attempts int) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		MaxIdemponentCallAttempts: attempts,
		Addr:                      "workers",
		Dial: func(string) (net.Conn, error) {
			return net.DialTimeout("unix", backend, 5*time.Second)
		},
		MaxConns:               4096,
		DisablePathNormalizing: true,
		MaxResponseBodySize:    256 << 20,
		ReadTimeout:            timeout,
		WriteTimeout:           timeout,
	}
}

// orphaned stops the edge once the node that started it is gone (even killed with
// SIGKILL, which gives it no chance to stop its children): a port held by an edge
// whose workers are gone would answer 502 forever.
func orphaned(stop func()) {
	parent := os.Getppid()
	for range time.Tick(time.Second) {
		if os.Getppid() != parent {
			log.Printf("idres-edge: the node that started it is gone; stopping")
			stop()
			return
		}
	}
}

// withTLS serves ln over TLS when a certificate is given. TLS 1.2 is the floor
// (RFC 9325 §3.1.1); HTTP/1.1 only, which is all fasthttp speaks (ALPN, RFC 7301).
func withTLS(ln net.Listener, certFile, keyFile string) (net.Listener, error) {
	if certFile == "" && keyFile == "" {
		return ln, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("-tls-cert and -tls-key go together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	return tls.NewListener(ln, &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
		// Handle.Net's client certificates are self-signed and name an HS_PUBKEY: the
		// edge asks for one and checks only that the client holds its key (the TLS
		// handshake does); whether the key may act is the workers' decision. A client
		// without one goes on without, as before.
		ClientAuth: tls.RequestClientCert,
	}), nil
}

func listener(fd int, addr string) (net.Listener, error) {
	if fd >= 0 {
		f := os.NewFile(uintptr(fd), "listener")
		defer f.Close() // FileListener holds its own duplicate
		return net.FileListener(f)
	}
	if addr == "" {
		return nil, fmt.Errorf("give -fd or -listen")
	}
	return net.Listen("tcp", addr)
}
