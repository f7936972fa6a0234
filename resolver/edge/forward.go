package main

// What the edge passes on to the workers for its other faces (DNS over UDP, dns.go;
// the Handle protocol over TCP, handle.go): messages on a few stream connections to a
// unix socket of the node's (a unix datagram socket queues 10 messages,
// net.unix.max_dgram_qlen, and a full one makes the sender spin), each after its
// length (u32), big-endian:
//
//	edge -> workers: id u32 | flags u8 (1: fill) | len u8 | the asker's address | request
//	workers -> edge: id u32 | keep ms u32 (0: not kept) | len u16 | identifier | answer
//
// "fill" asks the worker for an answer read fresh (never from its own caches), as
// Idres-Edge: fill does for HTTP: only then may the edge keep it (cache.go). An empty
// answer means none is sent. An answer of several messages (a Handle list of handles)
// comes as parts, each with keep ms fwdPart, before its last message (kept never).
// The workers' side is resolver/edge_forwards.py.

import (
	"bufio"
	"encoding/binary"
	"io"
	"log"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

const (
	fwdConns    = 8    // connections to the workers (each worker accepts some)
	fwdQueue    = 2048 // requests waiting to be written to the workers
	fwdMaxKey   = 65535
	fwdMaxReply = 1 << 20 // bytes: a larger answer from a worker is a broken stream
	// keep ms of a part of an answer: more of it follows under the same id
	fwdPart = 0xFFFF_FFFF
)

// answered is how a forwarded request ends: with the workers' answer (which lives
// until the call returns: copy what you keep), or, when ok is false, with none
// (refused, dropped, or not answered within the wait). Before the end, it is called
// for each part of an answer of several (keepMs fwdPart, ok true).
type answered func(keepMs uint32, ident string, answer []byte, ok bool)

type forward struct {
	done    answered
	started time.Time
}

// Forwarder passes requests to the workers at backend and hands back their answers.
type Forwarder struct {
	what    string // for the log: "DNS", "Handle"
	backend string
	wait    time.Duration // a request the workers have not answered by then is dropped
	shed    *Shedder
	closed  chan struct{}
	once    sync.Once

	mu      sync.Mutex
	pending map[uint32]forward
	nextID  uint32
	queue   chan []byte

	forwarded, answered, dropped, refused atomic.Uint64
}

func NewForwarder(what, backend string, wait time.Duration, shed *Shedder) *Forwarder {
	return &Forwarder{
		what:    what,
		backend: backend,
		wait:    wait,
		shed:    shed,
		closed:  make(chan struct{}),
		pending: map[uint32]forward{},
		queue:   make(chan []byte, fwdQueue),
	}
}

// Run keeps the connections to the workers until Close.
func (f *Forwarder) Run() {
	for range fwdConns {
		go f.link()
	}
	go f.expire()
}

// Close stops forwarding; what waits is dropped as it expires.
func (f *Forwarder) Close() { f.once.Do(func() { close(f.closed) }) }

// Ask passes request to the workers, unless the shedder refuses it (then false, and
// done is never called). done is called once, from another goroutine.
func (f *Forwarder) Ask(request []byte, fill bool, peer string, now time.Time, done answered) bool {
	if !f.shed.Start(now) {
		f.refused.Add(1)
		return false
	}
	msg := make([]byte, 0, 10+len(peer)+len(request))
	msg = binary.BigEndian.AppendUint32(msg, uint32(6+len(peer)+len(request)))
	msg = binary.BigEndian.AppendUint32(msg, 0) // the id, below
	var flags byte
	if fill {
		flags = 1
	}
	msg = append(msg, flags, byte(len(peer)))
	msg = append(msg, peer...)
	msg = append(msg, request...)
	f.mu.Lock()
	f.nextID++
	id := f.nextID
	f.pending[id] = forward{done: done, started: now}
	f.mu.Unlock()
	binary.BigEndian.PutUint32(msg[4:], id)
	select {
	case f.queue <- msg:
		f.forwarded.Add(1)
	default:
		f.drop(id)
	}
	return true
}

// link keeps one connection to the workers: it writes requests from the shared queue
// and reads answers, and dials again when the connection fails.
func (f *Forwarder) link() {
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-f.closed:
			return
		default:
		}
		c, err := net.DialTimeout("unix", f.backend, 5*time.Second)
		if err != nil {
			select {
			case <-f.closed:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		done := make(chan struct{})
		go func() {
			f.answers(c)
			close(done)
		}()
		f.write(c, done)
		c.Close()
		<-done
	}
}

// write sends queued requests on c until c fails (done: its reader saw it) or the
// forwarder closes. A request whose write failed ends at once, unanswered.
func (f *Forwarder) write(c net.Conn, done chan struct{}) {
	for {
		select {
		case <-f.closed:
			return
		case <-done:
			return
		case msg := <-f.queue:
			if _, err := c.Write(msg); err != nil {
				f.drop(binary.BigEndian.Uint32(msg[4:]))
				return
			}
		}
	}
}

// settle ends the wait for request id, if it is still waited for.
func (f *Forwarder) settle(id uint32, now time.Time) (forward, bool) {
	f.mu.Lock()
	p, ok := f.pending[id]
	delete(f.pending, id)
	f.mu.Unlock()
	if ok {
		f.shed.Landed(now.Sub(p.started), now)
	}
	return p, ok
}

// more is the request a part of an answer came for; the wait for the rest starts
// again (a long answer is not a late one).
func (f *Forwarder) more(id uint32) (forward, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pending[id]
	if ok {
		p.started = time.Now()
		f.pending[id] = p
	}
	return p, ok
}

// drop ends the wait for request id unanswered (it counts as a slow answer: the
// shedder's standing queue).
func (f *Forwarder) drop(id uint32) {
	f.mu.Lock()
	p, ok := f.pending[id]
	delete(f.pending, id)
	f.mu.Unlock()
	if ok {
		f.shed.Landed(f.wait, time.Now())
		f.dropped.Add(1)
		p.done(0, "", nil, false)
	}
}

// answers reads the workers' answers on c and hands each to its asker, until c fails.
func (f *Forwarder) answers(c net.Conn) {
	r := bufio.NewReaderSize(c, 64<<10)
	head := make([]byte, 4)
	buf := make([]byte, 0, 4096)
	for {
		if _, err := io.ReadFull(r, head); err != nil {
			return
		}
		size := int(binary.BigEndian.Uint32(head))
		if size < 10 || size > fwdMaxReply+fwdMaxKey+10 {
			log.Printf("idres-edge: %s: a worker sent a message of %d bytes; dropping the connection", f.what, size)
			return
		}
		buf = slices.Grow(buf[:0], size)[:size]
		if _, err := io.ReadFull(r, buf); err != nil {
			return
		}
		id := binary.BigEndian.Uint32(buf)
		keepMs := binary.BigEndian.Uint32(buf[4:])
		klen := int(binary.BigEndian.Uint16(buf[8:]))
		if size < 10+klen {
			return
		}
		if keepMs == fwdPart {
			p, ok := f.more(id)
			if ok {
				p.done(keepMs, "", buf[10+klen:], true)
			}
			continue
		}
		p, ok := f.settle(id, time.Now())
		if !ok {
			continue // expired: its asker has been told, or has asked again by now
		}
		f.answered.Add(1)
		p.done(keepMs, string(buf[10:10+klen]), buf[10+klen:], true)
	}
}

// expire drops what the workers have not answered within the wait.
func (f *Forwarder) expire() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-f.closed:
			return
		case now := <-tick.C:
			var late []uint32
			f.mu.Lock()
			for id, p := range f.pending {
				if now.Sub(p.started) > f.wait {
					late = append(late, id)
				}
			}
			f.mu.Unlock()
			for _, id := range late {
				f.drop(id)
			}
		}
	}
}

// Pending is how many requests wait for the workers.
func (f *Forwarder) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pending)
}
