package main

// The node's DNS face over UDP (issue 13), in front of the workers as the HTTP port
// is: a query whose bytes after its ID equal those of one answered before gets that
// answer under its own ID, from memory; any other goes to the workers on a unix
// socket of the node's (resolver/dns/server.py, EdgeForwards) and comes back with how
// long it may be kept and the identifier whose change makes it old. TCP (transfers,
// truncated answers asked again) stays with the workers.
//
// Why here: a Python event loop answering kept queries spends most of its core in one
// recvfrom and one sendto a packet (py-spy, benchmarks/RESULTS.md issue 13); this
// reads and writes up to a batch of packets in one system call each (recvmmsg,
// sendmmsg), as Knot does.
//
// Between the edge and the workers, on a few stream connections (a unix datagram
// socket queues 10 messages, net.unix.max_dgram_qlen, and a full one makes the
// sender spin), each message after its length (u32), big-endian:
//
//	edge -> workers: id u32 | flags u8 (1: fill) | len u8 | the asker's address | query
//	workers -> edge: id u32 | keep ms u32 (0: not kept) | len u16 | identifier | answer
//
// "fill" asks the worker for an answer read fresh (never from its own caches), as
// Idres-Edge: fill does for HTTP: only then may the edge keep it (cache.go). An empty
// answer means none is sent (the query was a response, say).

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

const (
	dnsHeader    = 12
	dnsBatch     = 64
	dnsMaxQuery  = 300 // bytes: a longer query (padding, options) is answered, never kept
	dnsMaxPacket = 65535
	dnsMaxKey    = 65535
	dnsWait      = 5 * time.Second // a query the workers have not answered by then is dropped
	dnsForwards  = 2048            // queries waiting to be written to the workers
	dnsConns     = 8               // connections to the workers (each worker accepts some)
	// queries under way at the workers past which more are dropped (as the workers'
	// own UDP face drops past MAX_PENDING, resolver/dns/server.py)
	dnsMaxPending = 2000
)

// batcher reads and writes packets a batch a system call (ipv4.Message and
// ipv6.Message are one type).
type batcher interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

type dnsPending struct {
	peer    netip.AddrPort
	key     string // the query after its ID ("": not to be kept)
	gen     uint64
	started time.Time
}

// DNS serves one UDP socket.
type DNS struct {
	conn    *net.UDPConn
	batch   batcher // recvmmsg and sendmmsg on conn
	backend string  // the workers' unix socket
	closed  chan struct{}
	cache   *Cache
	shed    *Shedder

	mu      sync.Mutex
	pending map[uint32]dnsPending
	nextID  uint32
	queue   chan []byte

	hits, forwarded, answered, dropped, refused, malformed atomic.Uint64
}

// OpenDNS serves the inherited UDP socket fd, asking the workers at backend (a unix
// stream socket) what it does not hold.
func OpenDNS(fd int, backend string, cache *Cache, shed *Shedder) (*DNS, error) {
	f := os.NewFile(uintptr(fd), "dns")
	pc, err := net.FilePacketConn(f)
	f.Close() // FilePacketConn holds its own duplicate
	if err != nil {
		return nil, err
	}
	conn, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		return nil, errors.New("-dns-fd is not a UDP socket")
	}
	_ = conn.SetReadBuffer(4 << 20)
	_ = conn.SetWriteBuffer(4 << 20)
	var batch batcher = ipv4.NewPacketConn(conn)
	if local, ok := conn.LocalAddr().(*net.UDPAddr); ok && local.IP.To4() == nil {
		batch = ipv6.NewPacketConn(conn)
	}
	return &DNS{
		conn:    conn,
		batch:   batch,
		backend: backend,
		closed:  make(chan struct{}),
		cache:   cache,
		shed:    shed,
		pending: map[uint32]dnsPending{},
		queue:   make(chan []byte, dnsForwards),
	}, nil
}

// Addr is the socket's address.
func (d *DNS) Addr() net.Addr { return d.conn.LocalAddr() }

// Serve answers until the socket is closed: readers of the UDP socket (a core each),
// and a writer and a reader on each connection to the workers.
func (d *DNS) Serve() {
	for range dnsConns {
		go d.link()
	}
	go d.expire()
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.read()
		}()
	}
	wg.Wait()
}

// Close stops serving.
func (d *DNS) Close() {
	d.conn.Close()
	close(d.closed)
}

func (d *DNS) read() {
	in := make([]ipv4.Message, dnsBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, dnsMaxPacket)}
	}
	out := make([]ipv4.Message, 0, dnsBatch)
	bufs := make([][]byte, dnsBatch)
	for {
		n, err := d.batch.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP errors and the like come back here: the next read goes on
		}
		now := time.Now()
		out = out[:0]
		for i := range in[:n] {
			m := &in[i]
			query := m.Buffers[0][:m.N]
			if len(query) < dnsHeader || query[2]&0x80 != 0 {
				d.malformed.Add(1) // no header to answer under, or a response: silence
				continue
			}
			if s, ok := d.cache.Get(query[2:], now.UnixNano()); ok {
				buf := append(bufs[len(out)][:0], query[0], query[1])
				buf = append(buf, s.body...)
				bufs[len(out)] = buf
				out = append(out, ipv4.Message{Buffers: [][]byte{buf}, Addr: m.Addr})
				continue
			}
			d.ask(query, m.Addr, now)
		}
		if len(out) > 0 {
			d.hits.Add(uint64(len(out)))
			for sent := 0; sent < len(out); {
				k, err := d.batch.WriteBatch(out[sent:], 0)
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					k = 1 // that answer is lost, as UDP's may be; the rest go on
				}
				sent += k
			}
		}
	}
}

// ask passes a query to the workers, unless too many are waiting (then it is dropped,
// as a loaded DNS server drops: the asker asks again).
func (d *DNS) ask(query []byte, from net.Addr, now time.Time) {
	udp, ok := from.(*net.UDPAddr)
	if !ok {
		return
	}
	peer := udp.AddrPort()
	if !d.shed.Start(now) {
		d.refused.Add(1)
		return
	}
	gen, keep := d.cache.Gen()
	key := ""
	if keep && len(query) <= dnsMaxQuery {
		key = string(query[2:])
	}
	ip := peer.Addr().Unmap().String()
	msg := make([]byte, 0, 10+len(ip)+len(query))
	msg = binary.BigEndian.AppendUint32(msg, uint32(6+len(ip)+len(query)))
	msg = binary.BigEndian.AppendUint32(msg, 0) // the id, below
	var flags byte
	if key != "" {
		flags = 1
	}
	msg = append(msg, flags, byte(len(ip)))
	msg = append(msg, ip...)
	msg = append(msg, query...)
	d.mu.Lock()
	d.nextID++
	id := d.nextID
	d.pending[id] = dnsPending{peer: peer, key: key, gen: gen, started: now}
	d.mu.Unlock()
	binary.BigEndian.PutUint32(msg[4:], id)
	select {
	case d.queue <- msg:
		d.forwarded.Add(1)
	default:
		d.drop(id)
	}
}

// link keeps one connection to the workers: it writes queries from the shared queue
// and reads answers, and dials again when the connection fails.
func (d *DNS) link() {
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-d.closed:
			return
		default:
		}
		c, err := net.DialTimeout("unix", d.backend, 5*time.Second)
		if err != nil {
			select {
			case <-d.closed:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		done := make(chan struct{})
		go func() {
			d.answers(c)
			close(done)
		}()
		d.write(c, done)
		c.Close()
		<-done
	}
}

// write sends queued queries on c until c fails (done: its reader saw it) or the edge
// closes. A query whose write failed is forgotten at once (its asker asks again).
func (d *DNS) write(c net.Conn, done chan struct{}) {
	for {
		select {
		case <-d.closed:
			return
		case <-done:
			return
		case msg := <-d.queue:
			if _, err := c.Write(msg); err != nil {
				d.drop(binary.BigEndian.Uint32(msg[4:]))
				return
			}
		}
	}
}

// settle ends the wait for query id, if it is still waited for; the pending entry.
func (d *DNS) settle(id uint32, now time.Time) (dnsPending, bool) {
	d.mu.Lock()
	p, ok := d.pending[id]
	delete(d.pending, id)
	d.mu.Unlock()
	if ok {
		d.shed.Landed(now.Sub(p.started), now)
	}
	return p, ok
}

// drop ends the wait for query id unanswered (it counts as a slow answer: the
// shedder's standing queue).
func (d *DNS) drop(id uint32) {
	d.mu.Lock()
	_, ok := d.pending[id]
	delete(d.pending, id)
	d.mu.Unlock()
	if ok {
		d.shed.Landed(dnsWait, time.Now())
		d.dropped.Add(1)
	}
}

// answers reads the workers' answers on c, sends each to its asker and keeps it as
// told, until c fails.
func (d *DNS) answers(c net.Conn) {
	r := bufio.NewReaderSize(c, 64<<10)
	head := make([]byte, 4)
	buf := make([]byte, 0, 4096)
	for {
		if _, err := io.ReadFull(r, head); err != nil {
			return
		}
		size := int(binary.BigEndian.Uint32(head))
		if size < 10 || size > dnsMaxPacket+dnsMaxKey+10 {
			log.Printf("idres-edge: DNS: a worker sent a message of %d bytes; dropping the connection", size)
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
		ident, answer := string(buf[10:10+klen]), buf[10+klen:]
		now := time.Now()
		p, ok := d.settle(id, now)
		if !ok || len(answer) < dnsHeader {
			continue // expired (the asker has asked again by now), or nothing to send
		}
		d.answered.Add(1)
		_, _ = d.conn.WriteToUDPAddrPort(answer, p.peer)
		if p.key != "" && keepMs > 0 {
			d.cache.Put(p.key, stored{
				body:    append([]byte(nil), answer[2:]...),
				key:     ident, // "": the directory's (a referral), forgotten with it
				expires: now.UnixNano() + int64(keepMs)*int64(time.Millisecond),
			}, p.gen)
		}
	}
}

// expire drops what the workers have not answered within dnsWait.
func (d *DNS) expire() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-d.closed:
			return
		case now := <-tick.C:
			var late []uint32
			d.mu.Lock()
			for id, p := range d.pending {
				if now.Sub(p.started) > dnsWait {
					late = append(late, id)
				}
			}
			d.mu.Unlock()
			for _, id := range late {
				d.drop(id)
			}
		}
	}
}

// Pending is how many queries wait for the workers.
func (d *DNS) Pending() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pending)
}
