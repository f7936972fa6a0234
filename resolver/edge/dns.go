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
// The workers are asked through a Forwarder (forward.go).

import (
	"errors"
	"net"
	"os"
	"runtime"
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
	dnsWait      = 5 * time.Second // a query the workers have not answered by then is dropped
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

// DNS serves one UDP socket.
type DNS struct {
	conn    *net.UDPConn
	batch   batcher // recvmmsg and sendmmsg on conn
	cache   *Cache
	workers *Forwarder

	hits, malformed atomic.Uint64
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
		cache:   cache,
		workers: NewForwarder("DNS", backend, dnsWait, shed),
	}, nil
}

// Addr is the socket's address.
func (d *DNS) Addr() net.Addr { return d.conn.LocalAddr() }

// Serve answers until the socket is closed: readers of the UDP socket (a core each),
// and the connections to the workers.
func (d *DNS) Serve() {
	d.workers.Run()
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
	d.workers.Close()
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
	gen, keep := d.cache.Gen()
	key := ""
	if keep && len(query) <= dnsMaxQuery {
		key = string(query[2:])
	}
	d.workers.Ask(query, key != "", peer.Addr().Unmap().String(), now,
		func(keepMs uint32, ident string, answer []byte, ok bool) {
			if !ok || len(answer) < dnsHeader {
				return // dropped (the asker asks again), or nothing to send
			}
			if key != "" && keepMs > 0 { // kept before it is sent: asked again, it is there
				d.cache.Put(key, stored{
					body:    append([]byte(nil), answer[2:]...),
					key:     ident, // "": the directory's (a referral), forgotten with it
					expires: time.Now().UnixNano() + int64(keepMs)*int64(time.Millisecond),
				}, gen)
			}
			_, _ = d.conn.WriteToUDPAddrPort(answer, peer)
		})
}

// Pending is how many queries wait for the workers.
func (d *DNS) Pending() int { return d.workers.Pending() }
