package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// worker stands in for a node's Python workers on their unix socket: it answers
// every read with the record it holds, marked for the edge when asked to fill.
type worker struct {
	mu      sync.Mutex
	value   string
	delay   time.Duration
	asked   atomic.Int64
	headers chan http.Header
}

func (w *worker) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w.asked.Add(1)
	select {
	case w.headers <- r.Header.Clone():
	default:
	}
	time.Sleep(w.delay)
	if r.Method == http.MethodPut { // a write: the new value, and the identifier it changed
		body, _ := io.ReadAll(r.Body)
		w.mu.Lock()
		w.value = string(body)
		w.mu.Unlock()
		rw.Header().Set(forgetHeader, strings.TrimPrefix(r.URL.Path, "/api/handles/"))
		rw.WriteHeader(http.StatusOK)
		return
	}
	w.mu.Lock()
	value := w.value
	w.mu.Unlock()
	if r.Header.Get(edgeHeader) == "fill" {
		rw.Header().Set(edgeKey, strings.TrimPrefix(r.URL.Path, "/api/handles/"))
		rw.Header().Set(edgeTTL, "60.000")
	}
	rw.Header().Set("Content-Type", "application/json")
	rw.Header().Set("Idres-Source", "replica")
	_, _ = rw.Write([]byte(`{"responseCode":1,"value":"` + value + `"}`))
}

type harness struct {
	edge   *Edge
	worker *worker
	client *fasthttp.Client
}

func newHarness(t *testing.T, floor int, delay time.Duration) *harness {
	t.Helper()
	path := filepath.Join(t.TempDir(), "w.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{value: "old", delay: delay, headers: make(chan http.Header, 64)}
	backend := &http.Server{Handler: w}
	go func() { _ = backend.Serve(ln) }()
	t.Cleanup(func() { _ = backend.Close() })

	cache := NewCache(100)
	cache.Forget(true) // as if listening
	e := &Edge{
		cache:   cache,
		name:    "test",
		timeout: 5 * time.Second,
		shed:    NewShedder(floor, 64, 50*time.Millisecond, 100*time.Millisecond),
		reads:   workersClient(path, 5*time.Second, 5),
		workers: workersClient(path, 5*time.Second, 1),
	}
	front := fasthttputil.NewInmemoryListener()
	server := &fasthttp.Server{Handler: e.Serve, ErrorHandler: e.Malformed, NoDefaultContentType: true}
	go func() { _ = server.Serve(front) }()
	t.Cleanup(func() { _ = server.Shutdown() })
	client := &fasthttp.Client{Dial: func(string) (net.Conn, error) { return front.Dial() }}
	return &harness{edge: e, worker: w, client: client}
}

func (h *harness) get(t *testing.T, target string, header ...string) *fasthttp.Response {
	t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI("http://node" + target)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp := &fasthttp.Response{}
	if err := h.client.DoTimeout(req, resp, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return resp
}

func value(t *testing.T, resp *fasthttp.Response) string {
	t.Helper()
	var body struct{ Value string }
	if err := json.Unmarshal(resp.Body(), &body); err != nil {
		t.Fatalf("%v: %q", err, resp.Body())
	}
	return body.Value
}

func TestAReadIsKeptAndAnsweredFromTheCacheUntilItsIdentifierChanges(t *testing.T) {
	h := newHarness(t, 16, 0)
	const target = "/api/handles/88.100.1/A"
	first := h.get(t, target, "Idres-Client", "6.6.6.6", "Idres-Edge", "forged")
	if value(t, first) != "old" || string(first.Header.Peek("Idres-Source")) != "replica" {
		t.Fatalf("first answer %q", first.Body())
	}
	sent := <-h.worker.headers
	if sent.Get(clientHeader) == "6.6.6.6" || sent.Get(clientHeader) == "" {
		t.Fatalf("the client's own Idres-Client reached the worker: %q", sent.Get(clientHeader))
	}
	if sent.Get(edgeHeader) != "fill" {
		t.Fatalf("the worker was not asked to fill: %v", sent)
	}
	for _, h := range []string{edgeKey, edgeTTL} {
		if len(first.Header.Peek(h)) > 0 {
			t.Fatalf("%s reached the client", h)
		}
	}
	second := h.get(t, target)
	if value(t, second) != "old" || string(second.Header.Peek("Idres-Source")) != "cache" {
		t.Fatalf("second answer %q from %q", second.Body(), second.Header.Peek("Idres-Source"))
	}
	if n := h.worker.asked.Load(); n != 1 {
		t.Fatalf("the worker was asked %d times", n)
	}

	h.worker.mu.Lock()
	h.worker.value = "new"
	h.worker.mu.Unlock()
	h.edge.cache.Invalidate([]string{"88.100.1/A"}) // the NOTIFY of the apply
	if v := value(t, h.get(t, target)); v != "new" {
		t.Fatalf("after the change the edge answered %q", v)
	}
	if v := value(t, h.get(t, target)); v != "new" || h.worker.asked.Load() != 2 {
		t.Fatalf("the new answer was not kept: %q, %d asks", v, h.worker.asked.Load())
	}
}

func TestReadsTheEdgeMayNotKeepAlwaysReachTheWorkers(t *testing.T) {
	h := newHarness(t, 16, 0)
	for _, c := range []struct {
		target string
		header []string
	}{
		{"/api/handles/88.100.1/A?type=URL", nil},
		{"/api/handles/88.100.1/A", []string{"Accept", "application/did-resolution"}},
		{"/api/handles/88.100.1/A", []string{"Accept", "application/json", "Accept", "application/did+ld+json"}},
		{"/api/handles/88.100.1/A", []string{"Signature", "sig1=:AAAA:"}},
		{"/api/handles/88.100.1/A", []string{"Idres-Via", "backbone"}},
		{"/88.100.1/A", nil},
	} {
		before := h.worker.asked.Load()
		for i := 0; i < 2; i++ {
			h.get(t, c.target, c.header...)
		}
		if got := h.worker.asked.Load() - before; got != 2 {
			t.Fatalf("%s %v: the worker was asked %d times of 2", c.target, c.header, got)
		}
	}
}

func TestAnAnswerOnItsWayWhileAChangeIsHeardIsPassedOnNotKept(t *testing.T) {
	c := NewCache(10)
	c.Forget(true)
	gen, keep := c.Gen()
	if !keep {
		t.Fatal("a listening cache keeps answers")
	}
	c.Invalidate([]string{"something else"})
	if c.Put("/api/handles/x", stored{status: 200, key: "x", expires: time.Now().Add(time.Hour).UnixNano()}, gen) {
		t.Fatal("kept an answer read before a change the edge heard")
	}
	c.Forget(false) // stopped listening
	gen, keep = c.Gen()
	if keep || c.Put("/api/handles/x", stored{status: 200, key: "x", expires: time.Now().Add(time.Hour).UnixNano()}, gen) {
		t.Fatal("kept an answer while deaf")
	}
}

func TestTheCacheStaysWithinItsSizeAndForgetsEverySpelling(t *testing.T) {
	c := NewCache(3)
	c.Forget(true)
	later := time.Now().Add(time.Hour).UnixNano()
	for _, target := range []string{"/a", "/b", "/c", "/d", "/e"} {
		gen, _ := c.Gen()
		c.Put(target, stored{status: 200, key: "k" + target, expires: later}, gen)
	}
	if c.Len() != 3 || c.evicted.Load() != 2 {
		t.Fatalf("%d held, %d evicted", c.Len(), c.evicted.Load())
	}
	gen, _ := c.Gen()
	c.Put("/api/handles/88.100.1%2FA", stored{status: 200, key: "88.100.1/A", expires: later}, gen)
	c.Put("/api/handles/88.100.1/A", stored{status: 200, key: "88.100.1/A", expires: later}, gen)
	c.Invalidate([]string{"88.100.1/A"})
	for _, target := range []string{"/api/handles/88.100.1%2FA", "/api/handles/88.100.1/A"} {
		if _, ok := c.Get([]byte(target), time.Now().UnixNano()); ok {
			t.Fatalf("%s outlived its identifier's change", target)
		}
	}
	gen, _ = c.Gen()
	c.Put("/x", stored{status: 200, key: "x", expires: time.Now().UnixNano() - 1}, gen)
	if _, ok := c.Get([]byte("/x"), time.Now().UnixNano()); ok {
		t.Fatal("an expired answer was served")
	}
}

func TestSlowWorkersAreRefusedAtOnceWhileCachedAnswersGoOut(t *testing.T) {
	h := newHarness(t, 2, 0)
	h.get(t, "/api/handles/88.100.1/HOT") // kept
	h.worker.delay = 400 * time.Millisecond
	var refused, slowRefusals atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 24; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 10 * time.Millisecond) // past the standing interval
			started := time.Now()
			resp := h.get(t, "/api/handles/88.100.1/COLD-"+string(rune('a'+i)))
			if resp.StatusCode() == 503 {
				refused.Add(1)
				if string(resp.Header.Peek("Retry-After")) != retryAfter {
					t.Errorf("a refusal without Retry-After")
				}
				if time.Since(started) > 100*time.Millisecond {
					slowRefusals.Add(1)
				}
			}
		}(i)
	}
	time.Sleep(150 * time.Millisecond)
	started := time.Now()
	hot := h.get(t, "/api/handles/88.100.1/HOT")
	if hot.StatusCode() != 200 || time.Since(started) > 100*time.Millisecond {
		t.Fatalf("a cached answer during the overload: %d after %v", hot.StatusCode(), time.Since(started))
	}
	wg.Wait()
	if refused.Load() == 0 || slowRefusals.Load() > 0 {
		t.Fatalf("%d refused, %d of them slowly", refused.Load(), slowRefusals.Load())
	}
	if !strings.Contains(h.edge.metrics(), `idres_edge_shed_total{node="test"} `) {
		t.Fatal("the metrics do not show what was shed")
	}
}

// rawAnswer is the edge's answer to request, sent as raw bytes.
func rawAnswer(t *testing.T, h *harness, request string) *fasthttp.Response {
	t.Helper()
	ln := fasthttputil.NewInmemoryListener()
	server := &fasthttp.Server{Handler: h.edge.Serve, ErrorHandler: h.edge.Malformed}
	go func() { _ = server.Serve(ln) }()
	t.Cleanup(func() { _ = server.Shutdown() })
	conn, err := ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_, _ = conn.Write([]byte(request))
	resp := &fasthttp.Response{}
	if err := resp.Read(bufio.NewReader(conn)); err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestAMalformedRequestGetsAnErrorThatSaysSo(t *testing.T) {
	h := newHarness(t, 16, 0)
	resp := rawAnswer(t, h, "GET /api/handles/x HTTP/1.1\r\nHost: n\r\nContent-Length: nope\r\n\r\n")
	if resp.StatusCode() != 400 || !strings.Contains(string(resp.Body()), `"responseCode":2`) {
		t.Fatalf("%d %q", resp.StatusCode(), resp.Body())
	}
}

func TestATargetThatIsNotUTF8IsRefusedHereNotPassedOn(t *testing.T) {
	h := newHarness(t, 16, 0)
	resp := rawAnswer(t, h, "GET /api/handles/88.100.1/\xff\xfe HTTP/1.1\r\nHost: n\r\n\r\n")
	if resp.StatusCode() != 400 || !strings.Contains(string(resp.Body()), "UTF-8") {
		t.Fatalf("%d %q", resp.StatusCode(), resp.Body())
	}
	if h.edge.forwarded.Load() != 0 {
		t.Fatal("the request reached the workers")
	}
}

// bigCertificate is a client certificate of more than maxClientCert bytes.
func bigCertificate(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "300:0.NA/88.100.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	for i := 0; len(tmpl.DNSNames)*40 < 2*maxClientCert; i++ {
		tmpl.DNSNames = append(tmpl.DNSNames, strings.Repeat("x", 30)+strconv.Itoa(i)+".example")
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// selfSigned writes a certificate for 127.0.0.1 and its key as PEM files.
func selfSigned(t *testing.T) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "node"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, priv := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for path, block := range map[string]*pem.Block{
		cert: {Type: "CERTIFICATE", Bytes: der},
		priv: {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cert, priv
}

func TestTheWorkersHearWhetherTheClientSpokeTLSAndNeverTheClientsOwnWord(t *testing.T) {
	cert, key := selfSigned(t)
	if _, err := withTLS(fasthttputil.NewInmemoryListener(), cert, ""); err == nil {
		t.Fatal("a certificate without its key was taken")
	}
	for _, secure := range []bool{false, true} {
		h := newHarness(t, 16, 0)
		front := fasthttputil.NewInmemoryListener()
		ln := net.Listener(front)
		if secure {
			var err error
			if ln, err = withTLS(front, cert, key); err != nil {
				t.Fatal(err)
			}
		}
		server := &fasthttp.Server{Handler: h.edge.Serve, NoDefaultContentType: true}
		go func() { _ = server.Serve(ln) }()
		t.Cleanup(func() { _ = server.Shutdown() })
		client := &fasthttp.Client{
			Dial:      func(string) (net.Conn, error) { return front.Dial() },
			TLSConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // our own test certificate
		}
		req := fasthttp.AcquireRequest()
		scheme := map[bool]string{false: "http", true: "https"}[secure]
		req.SetRequestURI(scheme + "://node/api/handles/88.100.1/A?x=1")
		req.Header.Set(schemeHeader, "https") // a client's own word counts for nothing
		resp := &fasthttp.Response{}
		if err := client.DoTimeout(req, resp, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		fasthttp.ReleaseRequest(req)
		if resp.StatusCode() != 200 {
			t.Fatalf("TLS %v: %d %s", secure, resp.StatusCode(), resp.Body())
		}
		sent := <-h.worker.headers
		want := map[bool]string{false: "", true: "https"}[secure]
		if got := sent.Get(schemeHeader); got != want {
			t.Fatalf("TLS %v: the workers heard Idres-Scheme %q, want %q", secure, got, want)
		}
	}
}

func TestTheWorkersHearTheClientsOwnCertificateOnlyFromTheHandshake(t *testing.T) {
	cert, key := selfSigned(t)
	mine, err := tls.LoadX509KeyPair(cert, key) // a self-signed client certificate: no CA asked
	if err != nil {
		t.Fatal(err)
	}
	oversize := bigCertificate(t)
	forged := base64.StdEncoding.EncodeToString([]byte("not from the handshake"))
	for _, tc := range []struct {
		name   string
		secure bool
		certs  []tls.Certificate
		want   string
	}{
		{"plain HTTP", false, nil, ""},
		{"TLS without a certificate", true, nil, ""},
		{"TLS with a certificate", true, []tls.Certificate{mine}, base64.StdEncoding.EncodeToString(mine.Certificate[0])},
		{"TLS with an oversize certificate", true, []tls.Certificate{oversize}, certTooLarge},
	} {
		h := newHarness(t, 16, 0)
		front := fasthttputil.NewInmemoryListener()
		ln := net.Listener(front)
		if tc.secure {
			if ln, err = withTLS(front, cert, key); err != nil {
				t.Fatal(err)
			}
		}
		server := &fasthttp.Server{Handler: h.edge.Serve, NoDefaultContentType: true}
		go func() { _ = server.Serve(ln) }()
		t.Cleanup(func() { _ = server.Shutdown() })
		client := &fasthttp.Client{
			Dial: func(string) (net.Conn, error) { return front.Dial() },
			TLSConfig: &tls.Config{
				InsecureSkipVerify: true, //nolint:gosec // our own test certificate
				Certificates:       tc.certs,
			},
		}
		req := fasthttp.AcquireRequest()
		req.Header.SetMethod("PUT")
		req.SetRequestURI(map[bool]string{false: "http", true: "https"}[tc.secure] + "://node/api/handles/88.100.1/A")
		req.Header.Set(certHeader, forged)                          // a client's own word counts for nothing
		req.Header.Set("Authorization", `Handle clientCert="true"`) // as pyhandle asks
		resp := &fasthttp.Response{}
		if err := client.DoTimeout(req, resp, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		sent := <-h.worker.headers
		if got := sent.Get(certHeader); got != tc.want {
			t.Fatalf("%s: the workers heard Idres-Client-Cert %q, want %q", tc.name, got, tc.want)
		}
		// a request with no credentials cannot use it: it is not sent along
		req.Header.Del("Authorization")
		req.Header.Set(certHeader, forged)
		if err := client.DoTimeout(req, resp, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		fasthttp.ReleaseRequest(req)
		sent = <-h.worker.headers
		if got := sent.Get(certHeader); got != "" {
			t.Fatalf("%s, no Authorization: the workers heard Idres-Client-Cert %q", tc.name, got)
		}
	}
}

func TestAWriteThroughTheEdgeIsReadBackAtOnceWithoutWaitingForTheNotice(t *testing.T) {
	h := newHarness(t, 16, 0)
	const target = "/api/handles/88.100.1/RYW"
	h.get(t, target) // kept
	if got := h.get(t, target); string(got.Header.Peek("Idres-Source")) != "cache" {
		t.Fatalf("not kept: %q", got.Header.Peek("Idres-Source"))
	}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI("http://node" + target + "?overwrite=true")
	req.Header.SetMethod(fasthttp.MethodPut)
	req.SetBodyString("new")
	resp := &fasthttp.Response{}
	if err := h.client.DoTimeout(req, resp, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if len(resp.Header.Peek(forgetHeader)) > 0 {
		t.Fatalf("%s reached the client", forgetHeader)
	}
	if got := value(t, h.get(t, target)); got != "new" { // no NOTIFY was sent
		t.Fatalf("read after the write: %q", got)
	}
}
