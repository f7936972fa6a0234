// A prototype compiled front for a node's cached answers (issue 12).
//
// It loads cached answers from a file of lines "<request target> <body>" (what
// benchmarks.dataset.dump_lines writes), answers a GET whose exact target is cached with
// 200, Content-Type: application/json, Idres-Source: cache and the cached bytes, and
// forwards every other request (misses, other methods, targets with a query, DID
// resolution asked for by Accept) to -backend, the Python node, as a reverse proxy.
//
// A prototype: the answers are loaded once and never change (no invalidation feed from
// the node), the proxying is tested for GETs only, and there is no shedding, no metrics.
//
//	compiled-front -listen 127.0.0.1:8080 -answers answers.txt -backend http://127.0.0.1:8000 [-server fasthttp|nethttp]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
)

// answers maps a request target (path, as the client sent it) to its body. Keys and
// values point into one buffer holding the whole file: two allocations for N answers.
type answers map[string][]byte

func load(path string) (answers, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := make(answers, bytes.Count(data, []byte{'\n'}))
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		sp := bytes.IndexByte(line, ' ')
		if sp <= 0 {
			continue
		}
		out[unsafe.String(&line[0], sp)] = line[sp+1 : len(line) : len(line)]
	}
	return out, nil
}

var (
	jsonType  = []byte("application/json")
	didType   = []byte("application/did-resolution")
	sourceKey = []byte("Idres-Source")
	cacheVal  = []byte("cache")
	http11    = []byte("HTTP/1.1")
)

// hopHeaders are not forwarded (RFC 9110 §7.6.1).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func serveFast(ln net.Listener, cached answers, backend *url.URL) error {
	client := &fasthttp.HostClient{
		Addr:                   backend.Host,
		MaxConns:               1024,
		DisablePathNormalizing: true,
		ReadTimeout:            30 * time.Second,
		WriteTimeout:           30 * time.Second,
	}
	handler := func(ctx *fasthttp.RequestCtx) {
		if ctx.IsGet() {
			// the raw target: a query, or any other spelling, is not a hit
			if body, ok := cached[string(ctx.RequestURI())]; ok &&
				!bytes.Contains(ctx.Request.Header.Peek("Accept"), didType) {
				ctx.Response.Header.SetContentTypeBytes(jsonType)
				ctx.Response.Header.SetBytesKV(sourceKey, cacheVal)
				ctx.Response.SetBodyRaw(body) // the cached bytes, not copied
				return
			}
		}
		req := &ctx.Request
		for _, h := range hopHeaders {
			req.Header.Del(h)
		}
		req.Header.Add("X-Forwarded-For", ctx.RemoteIP().String())
		if err := client.Do(req, &ctx.Response); err != nil {
			ctx.Response.Reset()
			ctx.Error("bad gateway: "+err.Error(), fasthttp.StatusBadGateway)
			return
		}
		for _, h := range hopHeaders {
			ctx.Response.Header.Del(h)
		}
		ctx.Response.Header.SetProtocol(http11) // we speak 1.1 to the client, whatever the node spoke
	}
	server := &fasthttp.Server{
		Handler:               handler,
		Name:                  "idres-front",
		NoDefaultServerHeader: true,
		Concurrency:           1 << 16,
		ReadTimeout:           60 * time.Second,
		IdleTimeout:           120 * time.Second,
	}
	return server.Serve(ln)
}

func serveNet(ln net.Listener, cached answers, backend *url.URL) error {
	proxy := httputil.NewSingleHostReverseProxy(backend)
	proxy.Transport = &http.Transport{MaxIdleConnsPerHost: 1024, IdleConnTimeout: 90 * time.Second}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			if body, ok := cached[r.RequestURI]; ok && !strings.Contains(r.Header.Get("Accept"), string(didType)) {
				h := w.Header()
				h["Content-Type"] = []string{"application/json"}
				h["Idres-Source"] = []string{"cache"}
				h["Content-Length"] = []string{fmt.Sprint(len(body))}
				w.Write(body)
				return
			}
		}
		proxy.ServeHTTP(w, r)
	})
	return (&http.Server{Handler: handler, IdleTimeout: 120 * time.Second}).Serve(ln)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	file := flag.String("answers", "", "cached answers: lines of '<target> <body>'")
	backendURL := flag.String("backend", "http://127.0.0.1:8000", "the node every other request goes to")
	kind := flag.String("server", "fasthttp", "fasthttp or nethttp")
	flag.Parse()
	started := time.Now()
	cached := answers{}
	if *file != "" {
		var err error
		if cached, err = load(*file); err != nil {
			log.Fatal(err)
		}
	}
	backend, err := url.Parse(*backendURL)
	if err != nil {
		log.Fatal(err)
	}
	runtime.GC() // the load's garbage, before serving
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("ready: %d answers cached in %.1f s, %s, GOMAXPROCS=%d\n",
		len(cached), time.Since(started).Seconds(), *kind, runtime.GOMAXPROCS(0))
	switch *kind {
	case "fasthttp":
		err = serveFast(ln, cached, backend)
	case "nethttp":
		err = serveNet(ln, cached, backend)
	default:
		err = fmt.Errorf("unknown -server %q", *kind)
	}
	log.Fatal(err)
}
