package main

// The open loop over UDP: one sender paces the requests over -sockets connected
// sockets, one reader a socket matches answers to requests by request id.

import (
	"errors"
	"math/bits"
	"net"
	"sync"
	"time"
)

const socketBuffer = 4 << 20

func udpOpen(cfg config, tpl *Template, ids [][]byte) Summary {
	raddr, err := net.ResolveUDPAddr("udp", cfg.addr)
	if err != nil {
		fail(err.Error())
	}
	socks := make([]*net.UDPConn, cfg.sockets)
	for k := range socks {
		if socks[k], err = net.DialUDP("udp", nil, raddr); err != nil {
			fail(err.Error())
		}
		_ = socks[k].SetReadBuffer(socketBuffer)
		_ = socks[k].SetWriteBuffer(socketBuffer)
	}
	n := Planned(cfg.rate, cfg.seconds)
	outcomes := make([]Outcome, n)
	base := requestBase()
	sched := schedule{start: time.Now().Add(20 * time.Millisecond), rate: cfg.rate}
	strays := make([]int, len(socks))
	var wg sync.WaitGroup
	for k, sock := range socks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			strays[k] = receive(sock, outcomes, base, sched)
		}()
	}
	fails := failures{}
	buf := make([]byte, 0, 512)
	pace(sched, n, func(i int, due time.Time) {
		buf = tpl.Build(buf, ids[i%len(ids)], base+uint32(i), expiration())
		if _, err := socks[i%len(socks)].Write(buf); err != nil {
			fails.add("udp write", err)
		}
		outcomes[i].Late = time.Since(due)
	})
	time.Sleep(time.Until(sched.start.Add(time.Duration(cfg.seconds*1e9) + cfg.timeout)))
	for _, sock := range socks {
		sock.Close()
	}
	wg.Wait()
	s := Summarise(outcomes, cfg.ok, cfg.timeout, cfg.seconds)
	s.Transport, s.Mode, s.Connections, s.OfferedRate = "udp", "open", len(socks), cfg.rate
	for _, k := range strays {
		s.Stray += k
	}
	if len(fails) > 0 {
		s.Failures = fails
	}
	return s
}

// receive reads answers until sock is closed; a request is answered when every packet
// of its message has come. Returns the packets that belong to no request.
func receive(sock *net.UDPConn, outcomes []Outcome, base uint32, sched schedule) int {
	masks := make(map[int]uint64) // packets seen of messages not yet whole
	stray := 0
	buf := make([]byte, 65536)
	for {
		m, err := sock.Read(buf)
		now := time.Now()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return stray
			}
			continue // ECONNREFUSED: an ICMP answer to an earlier request
		}
		p, err := ParsePacket(buf[:m])
		idx := int(p.RequestID - base)
		if err != nil || p.RequestID < base || idx >= len(outcomes) || p.Sequence >= 64 {
			stray++
			continue
		}
		o := &outcomes[idx]
		if o.Latency > 0 {
			continue // a copy
		}
		if p.Code >= 0 {
			o.Code = p.Code
		}
		seen := masks[idx] | 1<<p.Sequence
		if bits.OnesCount64(seen) < PacketCount(p.Length) {
			masks[idx] = seen
			continue
		}
		delete(masks, idx)
		o.Latency = max(now.Sub(sched.due(idx)), 1)
	}
}
