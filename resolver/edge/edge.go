package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

var (
	handlesPath = []byte("/api/handles/")
	metricsPath = []byte("/metrics")
	jsonType    = []byte("application/json")
	sourceName  = []byte("Idres-Source")
	sourceCache = []byte("cache")
	sourceStore = []byte("store")
	http11      = []byte("HTTP/1.1")
	did         = []byte("did") // any DID media type: the workers build those answers
)

// Headers between the edge and the workers; a client's own are dropped.
const (
	edgeHeader   = "Idres-Edge" // "fill": a fresh answer, marked so the edge may keep it
	edgeKey      = "Idres-Edge-Key"
	edgeTTL      = "Idres-Edge-TTL"
	clientHeader = "Idres-Client"
	schemeHeader = "Idres-Scheme" // "https" when the client's connection is TLS
	// the client's TLS certificate (its leaf, DER in standard base64), when it sent one:
	// the workers match its key against an HS_PUBKEY (registry/clientcert.py)
	certHeader = "Idres-Client-Cert"
	// a leaf past this many bytes of DER would not fit the workers' head limits (16
	// KiB a line, base64 adds a third): they hear only that it was too large
	maxClientCert = 8 << 10
	certTooLarge  = "too-large"
	forgetHeader  = "Idres-Edge-Forget" // on a write's answer: the identifier it changed
	retryAfter    = "1"
)

// hopHeaders are not forwarded (RFC 9110 §7.6.1); Expect is answered here.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Expect",
}

// Edge serves one node's port.
type Edge struct {
	cache *Cache
	store *Store // nil: no database, every read the cache lacks goes to the workers
	// Two pools of connections to the workers. A worker's front door answers the
	// reads it knows on a connection and hands the connection for good to its aiohttp
	// application at the first request it does not (resolver/front.py): reads go on
	// connections of their own, so a write or a /metrics never turns them into
	// aiohttp's.
	reads   *fasthttp.HostClient
	workers *fasthttp.HostClient
	shed    *Shedder
	name    string
	timeout time.Duration
	dns     *DNS    // nil: the workers answer DNS themselves
	handle  *Handle // nil: the workers answer the Handle protocol themselves

	forwarded, failed, refused, malformed atomic.Uint64
}

// cacheable is whether a request may be answered from, and fill, the cache: a plain
// GET of one identifier that only the public may see (no signature: a signed read
// may see more), with no query (filters build other answers) and no DID media type.
func cacheable(req *fasthttp.Request) bool {
	if !req.Header.IsGet() {
		return false
	}
	uri := req.Header.RequestURI()
	if !bytes.HasPrefix(uri, handlesPath) || len(uri) == len(handlesPath) {
		return false
	}
	if bytes.IndexByte(uri, '?') >= 0 || bytes.HasSuffix(uri, []byte("/history")) {
		return false
	}
	h := &req.Header
	if len(h.Peek("Signature")) > 0 || len(h.Peek("Signature-Input")) > 0 || len(h.Peek("Authorization")) > 0 {
		return false
	}
	if len(h.Peek("Idres-Via")) > 0 { // a peer's lookup: the workers judge hops and budgets
		return false
	}
	for _, accept := range h.PeekAll("Accept") { // every Accept line: the router joins them
		if bytes.Contains(accept, did) {
			return false
		}
	}
	return h.ContentLength() <= 0
}

// Serve answers one request.
func (e *Edge) Serve(ctx *fasthttp.RequestCtx) {
	req := &ctx.Request
	if !utf8.Valid(req.Header.RequestURI()) {
		// RFC 3986 §2.5: characters outside ASCII travel as percent-encoded UTF-8;
		// bytes that are not even UTF-8 name nothing (the workers' parser refuses them)
		e.malformed.Add(1)
		e.fail(ctx, fasthttp.StatusBadRequest,
			"the request target is not valid UTF-8: percent-encode it (RFC 3986 §2.5)")
		return
	}
	fill := cacheable(req)
	if fill {
		if s, ok := e.cache.Get(req.Header.RequestURI(), time.Now().UnixNano()); ok {
			ctx.Response.SetStatusCode(s.status)
			ctx.Response.Header.SetContentTypeBytes(jsonType)
			ctx.Response.Header.SetBytesKV(sourceName, sourceCache)
			ctx.Response.SetBodyRaw(s.body) // the cached bytes, not copied
			return
		}
		if e.store != nil && e.fromStore(ctx) {
			return
		}
	}
	started := time.Now()
	if !e.shed.Start(started) {
		e.refused.Add(1)
		e.fail(ctx, fasthttp.StatusServiceUnavailable,
			"this node is answering all it can; ask again in "+retryAfter+" s")
		ctx.Response.Header.Set("Retry-After", retryAfter)
		return
	}
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}
	req.Header.Del(edgeHeader)
	req.Header.Del(edgeKey)
	req.Header.Del(edgeTTL)
	req.Header.Set(clientHeader, ctx.RemoteIP().String())
	// what the client's connection was: the workers accept some credentials over TLS
	// only (registry/seckey.py), and they see only the edge's unix socket
	req.Header.Del(schemeHeader)
	req.Header.Del(certHeader)
	if ctx.IsTLS() {
		req.Header.Set(schemeHeader, "https")
		req.URI().SetScheme("http") // the workers' socket speaks plain HTTP
		// only a request with credentials can ask for it (Authorization: Handle
		// clientCert="true"): the workers are not sent it, base64, with every read
		state := ctx.TLSConnectionState()
		if state != nil && len(state.PeerCertificates) > 0 && len(req.Header.Peek("Authorization")) > 0 {
			// requested, not verified (withTLS): the workers judge the key, not the issuer
			leaf := state.PeerCertificates[0].Raw
			if len(leaf) > maxClientCert {
				req.Header.Set(certHeader, certTooLarge) // the workers say so, if it is asked for
			} else {
				req.Header.Set(certHeader, base64.StdEncoding.EncodeToString(leaf))
			}
		}
	}
	gen, keep := e.cache.Gen()
	if fill && keep {
		req.Header.Set(edgeHeader, "fill")
	}
	e.forwarded.Add(1)
	pool := e.workers
	if fill {
		pool = e.reads
	}
	err := pool.DoTimeout(req, &ctx.Response, e.timeout)
	now := time.Now()
	e.shed.Landed(now.Sub(started), now)
	if err != nil {
		e.failed.Add(1)
		ctx.Response.Reset()
		if errors.Is(err, fasthttp.ErrTimeout) {
			e.fail(ctx, fasthttp.StatusGatewayTimeout, "the node's workers did not answer in time")
		} else {
			e.fail(ctx, fasthttp.StatusBadGateway, "the node's workers could not be reached: "+err.Error())
		}
		return
	}
	resp := &ctx.Response
	key := resp.Header.Peek(edgeKey)
	if fill && keep && len(key) > 0 {
		status := resp.StatusCode()
		ttl, perr := strconv.ParseFloat(string(resp.Header.Peek(edgeTTL)), 64)
		if perr == nil && ttl > 0 && (status == 200 || status == 404) {
			e.cache.Put(string(req.Header.RequestURI()), stored{
				status:  status,
				body:    append([]byte(nil), resp.Body()...),
				key:     string(key),
				expires: now.UnixNano() + int64(ttl*float64(time.Second)),
			}, gen)
		}
	}
	if forget := resp.Header.Peek(forgetHeader); len(forget) > 0 {
		// forgotten before the client hears of its write, so that its next read through
		// this edge sees it; the change's NOTIFY (listen.go) comes a moment later
		e.cache.Invalidate([]string{string(forget)})
		resp.Header.Del(forgetHeader)
	}
	resp.Header.Del(edgeKey)
	resp.Header.Del(edgeTTL)
	resp.Header.Del("Idres-Worker") // which process answered is the node's business
	for _, h := range hopHeaders {
		resp.Header.Del(h)
	}
	resp.Header.SetProtocol(http11) // we speak 1.1 to the client, whatever the worker spoke
	if req.Header.IsGet() && bytes.Equal(req.URI().Path(), metricsPath) && resp.StatusCode() == 200 {
		resp.AppendBodyString(e.metrics())
	}
}

// fromStore answers a plain read from the node's answers table, and keeps the answer
// as a worker's would be kept (gen taken before the read: a change heard meanwhile
// keeps it out). False: the workers answer (no row, or the database did not).
func (e *Edge) fromStore(ctx *fasthttp.RequestCtx) bool {
	uri := ctx.Request.Header.RequestURI()
	if bytes.IndexByte(uri, '%') >= 0 { // the table holds canonical names, never encoded
		return false
	}
	gen, keep := e.cache.Gen()
	handle := string(uri[len(handlesPath):])
	now := time.Now()
	body, ttl, ok := e.store.Answer(handle, now)
	if !ok {
		return false
	}
	ctx.Response.SetStatusCode(fasthttp.StatusOK)
	ctx.Response.Header.SetContentTypeBytes(jsonType)
	ctx.Response.Header.SetBytesKV(sourceName, sourceStore)
	ctx.Response.SetBodyRaw(body) // scanned into a slice of its own: the cache may keep it
	if keep && ttl > 0 {
		e.cache.Put(string(uri), stored{
			status:  fasthttp.StatusOK,
			body:    body,
			key:     handle,
			expires: now.UnixNano() + int64(ttl),
		}, gen)
	}
	return true
}

// Malformed answers a request fasthttp could not read.
func (e *Edge) Malformed(ctx *fasthttp.RequestCtx, err error) {
	e.malformed.Add(1)
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		e.fail(ctx, fasthttp.StatusRequestEntityTooLarge, "the request body is larger than this node takes")
	case strings.Contains(err.Error(), "timeout"):
		e.fail(ctx, fasthttp.StatusRequestTimeout, "request not received in time")
	default:
		e.fail(ctx, fasthttp.StatusBadRequest, "malformed HTTP request: "+err.Error())
	}
	ctx.SetConnectionClose()
}

// fail answers an error as every idres answer does (responseCode 2: an error).
func (e *Edge) fail(ctx *fasthttp.RequestCtx, status int, message string) {
	body, _ := json.Marshal(map[string]any{"responseCode": 2, "message": message})
	ctx.Response.SetStatusCode(status)
	ctx.Response.Header.SetContentTypeBytes(jsonType)
	ctx.Response.SetBody(body)
}

func (e *Edge) metrics() string {
	c, n := e.cache, e.name
	listening := 0
	if c.Listening() {
		listening = 1
	}
	var b strings.Builder
	line := func(help, kind, name string, value any) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n%s{node=%q} %v\n", name, help, name, kind, name, n, value)
	}
	line("Answers the edge gave from its cache.", "counter", "idres_edge_hits_total", c.hits.Load())
	line("Requests the edge passed to the node's workers.", "counter", "idres_edge_forwarded_total", e.forwarded.Load())
	line("Answers the edge kept.", "counter", "idres_edge_fills_total", c.fills.Load())
	line("Answers not kept because a change was heard while they were on their way.", "counter", "idres_edge_fills_stale_total", c.stale.Load())
	line("Answers the edge forgot because their identifier changed (or it stopped hearing changes).", "counter", "idres_edge_invalidated_total", c.invalidated.Load())
	line("Answers the edge dropped to stay within its size.", "counter", "idres_edge_evicted_total", c.evicted.Load())
	line("Answers the edge holds.", "gauge", "idres_edge_entries", c.Len())
	line("Whether the edge hears the node's changes (0: it caches nothing).", "gauge", "idres_edge_listening", listening)
	line("Requests the edge refused (503) because the workers were past what they answer in time.", "counter", "idres_edge_shed_total", e.refused.Load())
	line("Requests the workers did not answer (502, 504).", "counter", "idres_edge_failed_total", e.failed.Load())
	line("Requests the edge could not read (400, 408, 413).", "counter", "idres_edge_malformed_total", e.malformed.Load())
	line("Requests under way at the workers.", "gauge", "idres_edge_inflight", e.shed.Inflight())
	if st := e.store; st != nil {
		line("Reads the edge answered from the node's answers table.", "counter", "idres_edge_store_answers_total", st.answered.Load())
		line("Reads the answers table had no row for (the workers answered).", "counter", "idres_edge_store_missing_total", st.missing.Load())
		line("Reads of the answers table that failed (the workers answered).", "counter", "idres_edge_store_failed_total", st.failed.Load())
		line("Reads not tried on the answers table while its reads queued (the workers answered).", "counter", "idres_edge_store_shed_total", st.refused.Load())
		line("Queries of the answers table (reads that arrive together share one).", "counter", "idres_edge_store_queries_total", st.queries.Load())
	}
	if d := e.dns; d != nil {
		line("DNS queries the edge answered from the answers it keeps.", "counter", "idres_edge_dns_hits_total", d.hits.Load())
		line("DNS queries the edge passed to the node's workers.", "counter", "idres_edge_dns_forwarded_total", d.workers.forwarded.Load())
		line("DNS answers the workers gave through the edge.", "counter", "idres_edge_dns_answered_total", d.workers.answered.Load())
		line("DNS queries dropped: too many waited for the workers, or they did not answer in time.", "counter", "idres_edge_dns_dropped_total", d.workers.dropped.Load()+d.workers.refused.Load())
		line("UDP packets with no DNS query to answer (too short, or a response).", "counter", "idres_edge_dns_malformed_total", d.malformed.Load())
		line("DNS answers the edge keeps.", "gauge", "idres_edge_dns_entries", d.cache.Len())
		line("DNS queries under way at the workers.", "gauge", "idres_edge_dns_inflight", d.Pending())
	}
	if h := e.handle; h != nil {
		line("Handle requests the edge answered from the answers it keeps.", "counter", "idres_edge_handle_hits_total", h.hits.Load())
		line("Handle requests the edge passed to the node's workers.", "counter", "idres_edge_handle_forwarded_total", h.workers.forwarded.Load())
		line("Handle requests answered SERVER_TOO_BUSY: too many waited for the workers.", "counter", "idres_edge_handle_busy_total", h.busy.Load())
		line("Handle requests the workers did not answer in time (the connection was closed).", "counter", "idres_edge_handle_dropped_total", h.workers.dropped.Load())
		line("Handle connections refused: too many were open.", "counter", "idres_edge_handle_refused_total", h.refused.Load())
		line("Handle answers the edge keeps.", "gauge", "idres_edge_handle_entries", h.cache.Len())
		line("Handle requests under way at the workers.", "gauge", "idres_edge_handle_inflight", h.workers.Pending())
	}
	samples := []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/cpu/classes/gc/total:cpu-seconds"},
		{Name: "/memory/classes/heap/objects:bytes"},
	}
	metrics.Read(samples)
	line("Garbage collections the edge ran.", "counter", "idres_edge_gc_cycles_total", samples[0].Value.Uint64())
	line("CPU the edge's garbage collector took (an estimate of the Go runtime).", "counter",
		"idres_edge_gc_cpu_seconds_total", samples[1].Value.Float64())
	line("Bytes of live and not yet collected objects on the edge's heap.", "gauge", "idres_edge_heap_bytes", samples[2].Value.Uint64())
	return b.String()
}
