package main

// The node's Handle face over TCP (issue 14), in front of the workers as the HTTP port
// is: a request whose bytes, but for its request id and expiration time, equal those
// of one answered before gets that answer under its own request id and a fresh
// expiration time, from memory; any other goes to the workers (forward.go; their side
// is resolver/handle/server.py) and comes back with how long it may be kept and the
// identifier whose change makes it old. UDP stays with the workers.
//
// Why here: the CNRI client opens a TCP connection for each request. A Python event
// loop spent its core on accepting and closing them and held 0.57x the HTTP path's
// rate that way (benchmarks/RESULTS.md, issue 14); goroutines on a netpoller do not.
//
// A connection carries requests one after another (RFC 3652 §2.2.1: an envelope, then
// MessageLength bytes), answered in order; it is closed when idle for hdlIdle, on a
// length no message can have, or when too many are open already (hdlMaxConns, or
// hdlMaxPerPeer from one address).

import (
	"bufio"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

const (
	hdlEnvelope   = 20                                                    // RFC 3652 §2.2.1
	hdlHeader     = 24                                                    // §2.2.2
	hdlExpiration = hdlEnvelope + 16                                      // a message's <ExpirationTime>
	hdlMaxMessage = 262_144                                               // CNRI Common.MAX_MESSAGE_LENGTH (schemas/handle_wire/limits.py)
	hdlMaxKept    = 512                                                   // bytes: a longer request is answered, never kept
	hdlLifetime   = 43_200                                                // seconds an answer is good for (RESPONSE_LIFETIME)
	hdlIdle       = 10 * time.Second                                      // a connection may sit this long between requests
	hdlWait       = 30 * time.Second                                      // a request the workers have not answered by then fails
	hdlMaxConns   = 2000                                                  // connections open at once
	hdlMaxPerPeer = 200                                                   // of them from one address
	hdlMaxPending = 2000                                                  // requests under way at the workers, at most
	hdlBusy       = 3                                                     // RC_SERVER_TOO_BUSY (§2.2.2.2)
	hdlReturnRD   = 0x0080_0000                                           // the <OpFlag> RD bit (§2.2.2.3)
	hdlEchoed     = 0x8000_0000 | 0x0800_0000 | 0x0100_0000 | 0x0010_0000 // AT CA PO DNRF
	hdlRecursive  = 0x1000_0000
)

// Handle serves one listening TCP socket.
type Handle struct {
	ln      *net.TCPListener
	cache   *Cache
	workers *Forwarder

	mu    sync.Mutex
	open  int
	peers map[string]int

	hits, refused, busy atomic.Uint64
}

// OpenHandle serves the inherited listening socket fd, asking the workers at backend
// (a unix stream socket) what it does not hold.
func OpenHandle(fd int, backend string, cache *Cache, shed *Shedder) (*Handle, error) {
	f := os.NewFile(uintptr(fd), "handle")
	ln, err := net.FileListener(f)
	f.Close() // FileListener holds its own duplicate
	if err != nil {
		return nil, err
	}
	tcp, ok := ln.(*net.TCPListener)
	if !ok {
		ln.Close()
		return nil, errors.New("-handle-fd is not a TCP socket")
	}
	return &Handle{
		ln:      tcp,
		cache:   cache,
		workers: NewForwarder("Handle", backend, hdlWait, shed),
		peers:   map[string]int{},
	}, nil
}

// Addr is the socket's address.
func (h *Handle) Addr() net.Addr { return h.ln.Addr() }

// Serve accepts connections until the socket is closed.
func (h *Handle) Serve() {
	h.workers.Run()
	for {
		c, err := h.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // out of descriptors, say: the next try may do
			continue
		}
		go h.serve(c)
	}
}

// Close stops serving.
func (h *Handle) Close() {
	h.ln.Close()
	h.workers.Close()
}

func (h *Handle) admit(peer string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.open >= hdlMaxConns || h.peers[peer] >= hdlMaxPerPeer {
		return false
	}
	h.open++
	h.peers[peer]++
	return true
}

func (h *Handle) release(peer string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.open--
	if h.peers[peer]--; h.peers[peer] <= 0 {
		delete(h.peers, peer)
	}
}

func (h *Handle) serve(c *net.TCPConn) {
	defer c.Close()
	peer := ""
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		peer = a.AddrPort().Addr().Unmap().String()
	}
	if !h.admit(peer) {
		h.refused.Add(1)
		return
	}
	defer h.release(peer)
	r := bufio.NewReaderSize(c, 4096)
	msg := make([]byte, 0, 512)
	key := make([]byte, 0, hdlMaxKept)
	out := make([]byte, 0, 1024)
	for {
		_ = c.SetReadDeadline(time.Now().Add(hdlIdle))
		msg = msg[:hdlEnvelope]
		if _, err := io.ReadFull(r, msg); err != nil {
			return
		}
		length := int(binary.BigEndian.Uint32(msg[16:]))
		if length > hdlMaxMessage { // no request is that long: the stream is lost
			return
		}
		msg = slices.Grow(msg, length)[:hdlEnvelope+length]
		if _, err := io.ReadFull(r, msg[hdlEnvelope:]); err != nil {
			return
		}
		now := time.Now()
		key = keptKey(key, msg)
		if s, ok := h.cache.Get(key, now.UnixNano()); ok && len(s.body) >= hdlExpiration+4 {
			h.hits.Add(1)
			out = append(out[:0], s.body...)
			copy(out[8:12], msg[8:12])
			binary.BigEndian.PutUint32(out[hdlExpiration:], uint32(now.Unix()+hdlLifetime))
			if !write(c, out) {
				return
			}
		} else if !h.forward(c, msg, key, peer, now) {
			return
		}
	}
}

// keptKey is what a kept answer to msg is found by: its bytes but for its request id
// (envelope bytes 8..12) and expiration time (resolver/handle/respond.py, kept_key).
// Empty when msg is too short to have them, or too long to be kept.
func keptKey(key, msg []byte) []byte {
	if len(msg) <= hdlExpiration+4 || len(msg) > hdlMaxKept {
		return key[:0]
	}
	key = append(key[:0], msg[:8]...)
	key = append(key, msg[12:hdlExpiration]...)
	return append(key, msg[hdlExpiration+4:]...)
}

// reply is what the workers said to a request: an answer, or a part of one (more
// follows), or nothing (out nil: the connection is to be closed).
type reply struct {
	out  []byte
	part bool
}

// forward has the workers answer msg and writes their answer on c (part by part, for
// an answer of several messages), keeping it if they say it may be; false: c is to be
// closed (they had nothing to send, or did not answer in time). Refused by the
// shedder, msg is answered SERVER_TOO_BUSY here.
func (h *Handle) forward(c net.Conn, msg, key []byte, peer string, now time.Time) bool {
	gen, keep := h.cache.Gen()
	fill := keep && len(key) > 0
	target := ""
	if fill {
		target = string(key)
	}
	replies := make(chan reply, 64)
	gone := make(chan struct{}) // the connection stopped listening: parts are dropped
	defer close(gone)
	var several atomic.Bool // an answer of several messages is never kept
	asked := h.workers.Ask(msg, fill, peer, now, func(keepMs uint32, ident string, answer []byte, ok bool) {
		var r reply
		if ok && len(answer) >= hdlEnvelope {
			r = reply{out: append([]byte(nil), answer...), part: keepMs == fwdPart}
		}
		if r.part {
			several.Store(true)
		} else if r.out != nil && fill && keepMs > 0 && !several.Load() && len(r.out) >= hdlExpiration+4 {
			h.cache.Put(target, stored{
				body:    r.out, // kept and written as is: never changed
				key:     ident, // "": the directory's (a referral), forgotten with it
				expires: time.Now().UnixNano() + int64(keepMs)*int64(time.Millisecond),
			}, gen)
		}
		select {
		case replies <- r:
		case <-gone:
		}
	})
	if !asked {
		h.busy.Add(1)
		return write(c, tooBusy(msg, now))
	}
	for {
		r := <-replies
		if !write(c, r.out) {
			return false
		}
		if !r.part {
			return true
		}
	}
}

// write sends out on c within hdlIdle; false when there is nothing to send or it failed.
func write(c net.Conn, out []byte) bool {
	if out == nil {
		return false
	}
	_ = c.SetWriteDeadline(time.Now().Add(hdlIdle))
	_, err := c.Write(out)
	return err == nil
}

// tooBusy is the answer SERVER_TOO_BUSY to msg, as the workers' codec would frame it
// (schemas/handle_wire/messages.py, encode_response; RFC 3652 §2.2): nil when msg has
// no whole header to answer under.
func tooBusy(msg []byte, now time.Time) []byte {
	if len(msg) < hdlEnvelope+hdlHeader {
		return nil
	}
	payload := msg[hdlEnvelope:]
	bodyEnd := hdlHeader + int(binary.BigEndian.Uint32(payload[20:]))
	if bodyEnd > len(payload) {
		return nil
	}
	// the reply's version: the one the client suggests, at most ours (2.11); CNRI puts
	// the suggested major version in the low two bits of the flags octet
	major, minor := msg[0], msg[1]
	if suggested := msg[2] & 0x03; suggested != 0 {
		major, minor = suggested, msg[3]
	}
	if major > 2 || (major == 2 && minor > 11) {
		major, minor = 2, 11
	}
	flags := hdlRecursive | binary.BigEndian.Uint32(payload[8:])&hdlEchoed
	var body []byte
	if binary.BigEndian.Uint32(payload[8:])&hdlReturnRD != 0 {
		flags |= hdlReturnRD
		if major > 2 || (major == 2 && minor >= 7) { // SHA-256 from protocol 2.7 on
			sum := sha256.Sum256(payload[:bodyEnd])
			body = append(append(body, 3), sum[:]...)
		} else {
			sum := sha1.Sum(payload[:bodyEnd])
			body = append(append(body, 2), sum[:]...)
		}
	}
	const text = "the server is too busy: ask again in a moment"
	body = binary.BigEndian.AppendUint32(body, uint32(len(text)))
	body = append(body, text...)
	out := make([]byte, 0, hdlEnvelope+hdlHeader+len(body)+4)
	out = append(out, major, minor, 2, 11)
	out = append(out, msg[4:12]...) // session and request ids
	out = binary.BigEndian.AppendUint32(out, 0)
	out = binary.BigEndian.AppendUint32(out, uint32(hdlHeader+len(body)+4))
	out = append(out, payload[:4]...) // the opcode
	out = binary.BigEndian.AppendUint32(out, hdlBusy)
	out = binary.BigEndian.AppendUint32(out, flags)
	out = append(out, payload[12], payload[13], payload[14], 0) // serial, recursion count
	out = binary.BigEndian.AppendUint32(out, uint32(now.Unix()+hdlLifetime))
	out = binary.BigEndian.AppendUint32(out, uint32(len(body)))
	out = append(out, body...)
	return binary.BigEndian.AppendUint32(out, 0) // no credential
}
