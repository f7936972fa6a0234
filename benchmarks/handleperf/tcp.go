package main

// The open loop over TCP, and the closed loops over both transports.

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// tcpOpen: the requests fall due into one queue; each of -conns workers takes the next,
// sends it on its connection (a new one for each with -conn-per-request) and waits for
// its answer. A request that waited a whole -timeout for a worker is lost unsent.
func tcpOpen(cfg config, tpl *Template, ids [][]byte) Summary {
	n := Planned(cfg.rate, cfg.seconds)
	outcomes := make([]Outcome, n)
	base := requestBase()
	queue := make(chan int, n)
	sched := schedule{start: time.Now().Add(20 * time.Millisecond), rate: cfg.rate}
	fails := make([]failures, cfg.conns)
	var wg sync.WaitGroup
	for w := range cfg.conns {
		fails[w] = failures{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := tcpClient{cfg: cfg, tpl: tpl, fails: fails[w]}
			defer c.close()
			for idx := range queue {
				due := sched.due(idx)
				if time.Since(due) > cfg.timeout {
					continue
				}
				code, err := c.ask(ids[idx%len(ids)], base+uint32(idx), due.Add(cfg.timeout), func() {
					outcomes[idx].Late = time.Since(due)
				})
				if err == nil {
					outcomes[idx].Code = code
					outcomes[idx].Latency = max(time.Since(due), 1)
				}
			}
		}()
	}
	pace(sched, n, func(i int, _ time.Time) { queue <- i })
	close(queue)
	wg.Wait()
	s := Summarise(outcomes, cfg.ok, cfg.timeout, cfg.seconds)
	s.Transport, s.Mode, s.Connections, s.OfferedRate = "tcp", "open", cfg.conns, cfg.rate
	s.ConnPerRequest = cfg.connPerRequest
	s.Failures = merged(fails)
	return s
}

// tcpClient asks over one connection at a time, opened when needed.
type tcpClient struct {
	cfg   config
	tpl   *Template
	conn  net.Conn
	fails failures
	out   []byte
	env   [envelopeSize]byte
	in    []byte // the answer's message
}

// ask sends one request and reads its answer before deadline; sent is called once the
// request is written. Any failure closes the connection: a late answer would
// otherwise be read as the next request's.
func (c *tcpClient) ask(handle []byte, id uint32, deadline time.Time, sent func()) (int32, error) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.cfg.addr, time.Until(deadline))
		if err != nil {
			c.fails.add("tcp connect", err)
			return 0, err
		}
		c.conn = conn
	}
	code, err := c.exchange(handle, id, deadline, sent)
	if err != nil || c.cfg.connPerRequest {
		c.close()
	}
	return code, err
}

func (c *tcpClient) exchange(handle []byte, id uint32, deadline time.Time, sent func()) (int32, error) {
	_ = c.conn.SetDeadline(deadline)
	c.out = c.tpl.Build(c.out, handle, id, expiration())
	_, err := c.conn.Write(c.out)
	sent()
	if err != nil {
		c.fails.add("tcp write", err)
		return 0, err
	}
	if _, err := io.ReadFull(c.conn, c.env[:]); err != nil {
		c.fails.add("tcp read", err)
		return 0, err
	}
	p, err := ParsePacket(c.env[:])
	if err == nil && p.RequestID != id {
		err = fmt.Errorf("the answer has request id %d, not %d", p.RequestID, id)
	}
	if err != nil {
		c.fails.add("tcp answer", err)
		return 0, err
	}
	if cap(c.in) < int(p.Length) {
		c.in = make([]byte, p.Length)
	}
	payload := c.in[:p.Length]
	if _, err := io.ReadFull(c.conn, payload); err != nil {
		c.fails.add("tcp read", err)
		return 0, err
	}
	if len(payload) < 8 {
		err := fmt.Errorf("a %d-byte message has no header", len(payload))
		c.fails.add("tcp answer", err)
		return 0, err
	}
	return int32(binary.BigEndian.Uint32(payload[4:8])), nil
}

func (c *tcpClient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// closedLoop: -inflight workers, each asking as soon as its last answer came, for
// -seconds (or, -once, through the identifiers once); latency from each send.
func closedLoop(cfg config, tpl *Template, ids [][]byte) Summary {
	base := requestBase()
	var next atomic.Int64
	start := time.Now()
	stop := start.Add(time.Duration(cfg.seconds * 1e9))
	results := make([][]Outcome, cfg.inflight)
	fails := make([]failures, cfg.inflight)
	var wg sync.WaitGroup
	for w := range cfg.inflight {
		fails[w] = failures{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ask func(handle []byte, id uint32, deadline time.Time) (int32, error)
			if cfg.udp {
				u := newUDPClient(cfg, tpl, fails[w])
				defer u.sock.Close()
				ask = u.ask
			} else {
				c := tcpClient{cfg: cfg, tpl: tpl, fails: fails[w]}
				defer c.close()
				ask = func(handle []byte, id uint32, deadline time.Time) (int32, error) {
					return c.ask(handle, id, deadline, func() {})
				}
			}
			for {
				i := int(next.Add(1) - 1)
				if (cfg.once && i >= len(ids)) || (!cfg.once && time.Now().After(stop)) {
					return
				}
				sent := time.Now()
				code, err := ask(ids[i%len(ids)], base+uint32(i), sent.Add(cfg.timeout))
				o := Outcome{Code: code}
				if err == nil {
					o.Latency = max(time.Since(sent), 1)
				}
				results[w] = append(results[w], o)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	var all []Outcome
	for _, r := range results {
		all = append(all, r...)
	}
	s := Summarise(all, cfg.ok, cfg.timeout, elapsed)
	s.Transport, s.Mode, s.Connections = "tcp", "max", cfg.inflight
	if cfg.udp {
		s.Transport = "udp"
	}
	if cfg.once {
		s.Mode = "once"
	}
	s.ConnPerRequest = cfg.tcp && cfg.connPerRequest
	s.Duration = round(elapsed, 3)
	s.Failures = merged(fails)
	return s
}

// udpClient: one connected socket, one request outstanding.
type udpClient struct {
	cfg   config
	tpl   *Template
	sock  *net.UDPConn
	fails failures
	out   []byte
	in    []byte
}

func newUDPClient(cfg config, tpl *Template, fails failures) *udpClient {
	raddr, err := net.ResolveUDPAddr("udp", cfg.addr)
	if err != nil {
		fail(err.Error())
	}
	sock, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		fail(err.Error())
	}
	return &udpClient{cfg: cfg, tpl: tpl, sock: sock, fails: fails, in: make([]byte, 65536)}
}

func (u *udpClient) ask(handle []byte, id uint32, deadline time.Time) (int32, error) {
	u.out = u.tpl.Build(u.out, handle, id, expiration())
	if _, err := u.sock.Write(u.out); err != nil {
		u.fails.add("udp write", err)
		return 0, err
	}
	_ = u.sock.SetReadDeadline(deadline)
	var seen uint64
	var code int32
	for {
		m, err := u.sock.Read(u.in)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				u.fails.add("udp", err)
				return 0, err
			}
			continue // ECONNREFUSED and the like: wait on
		}
		p, err := ParsePacket(u.in[:m])
		if err != nil || p.RequestID != id || p.Sequence >= 64 {
			continue // an answer to an earlier, lost request
		}
		if p.Code >= 0 {
			code = p.Code
		}
		seen |= 1 << p.Sequence
		if bits.OnesCount64(seen) >= PacketCount(p.Length) {
			return code, nil
		}
	}
}

func merged(parts []failures) failures {
	out := failures{}
	for _, f := range parts {
		out.merge(f)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
