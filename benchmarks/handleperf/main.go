// handleperf: Handle protocol (RFC 3652) resolution load on the bytes of CNRI's client.
//
// Each request is a captured CNRI request (-template, e.g. tests/fixtures/handle/
// resolve-udp-plain.bin) with the handle replaced by the next line of -ids, every
// length fixed, a request id of its own and an expiration of now + 43200 s, as the
// client sets them. The open loop (-rate, -seconds) sends request i at start + i/rate
// whatever came back, and times each answer from that intended time, so a server that
// stalls cannot hide its queue (no coordinated omission). Over -udp the answers are
// matched by request id and multi-packet answers put together by counting their
// packets; over -tcp each of -conns connections carries one request at a time (or,
// -conn-per-request, each request opens a connection of its own, as CNRI's client
// does). A request not answered within -timeout is lost. -max runs a closed loop with
// -inflight requests outstanding for -seconds (the ceiling); -once asks for every
// line of -ids once, closed loop (a warming pass). It prints one JSON object.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"
)

type config struct {
	addr           string
	udp, tcp       bool
	connPerRequest bool
	conns          int
	sockets        int
	rate           float64
	seconds        float64
	timeout        time.Duration
	closed, once   bool
	inflight       int
	ok             map[int32]bool
}

func main() {
	var cfg config
	var idsPath, templatePath, okCodes string
	flag.StringVar(&cfg.addr, "addr", "127.0.0.1:2641", "the Handle server, host:port")
	flag.StringVar(&idsPath, "ids", "", "identifiers, one a line (the load goes through them in order)")
	flag.StringVar(&templatePath, "template", "", "a captured CNRI resolution request")
	flag.BoolVar(&cfg.udp, "udp", false, "over UDP")
	flag.BoolVar(&cfg.tcp, "tcp", false, "over TCP")
	flag.BoolVar(&cfg.connPerRequest, "conn-per-request", false, "TCP: a connection for each request, as CNRI's client")
	flag.IntVar(&cfg.conns, "conns", 64, "TCP: connections (or, -conn-per-request, connections open at once)")
	flag.IntVar(&cfg.sockets, "sockets", 1, "UDP: sockets the open loop sends from")
	flag.Float64Var(&cfg.rate, "rate", 1000, "open loop: requests a second")
	flag.Float64Var(&cfg.seconds, "seconds", 10, "how long to send")
	flag.DurationVar(&cfg.timeout, "timeout", time.Second, "an answer later than this is lost")
	flag.BoolVar(&cfg.closed, "max", false, "closed loop: -inflight requests outstanding, for the ceiling")
	flag.BoolVar(&cfg.once, "once", false, "closed loop: every line of -ids once")
	flag.IntVar(&cfg.inflight, "inflight", 64, "closed loop: requests outstanding")
	flag.StringVar(&okCodes, "ok", "1,100", "response codes that count as answers (1 success, 100 handle not found)")
	serveAddr := flag.String("serve", "", "instead of sending load, answer it on this address (serve.go)")
	flag.Parse()
	if *serveAddr != "" {
		fail(serve(*serveAddr).Error())
	}
	if cfg.udp == cfg.tcp {
		fail("say -udp or -tcp")
	}
	var err error
	if cfg.ok, err = parseCodes(okCodes); err != nil {
		fail(err.Error())
	}
	raw, err := os.ReadFile(templatePath)
	if err != nil {
		fail(err.Error())
	}
	tpl, err := ParseTemplate(raw)
	if err != nil {
		fail(fmt.Sprintf("%s: %v", templatePath, err))
	}
	ids, err := readIDs(idsPath)
	if err != nil {
		fail(err.Error())
	}
	var s Summary
	switch {
	case cfg.closed || cfg.once:
		s = closedLoop(cfg, tpl, ids)
	case cfg.udp:
		s = udpOpen(cfg, tpl, ids)
	default:
		s = tcpOpen(cfg, tpl, ids)
	}
	out, _ := json.Marshal(s)
	fmt.Println(string(out))
}

func fail(why string) {
	fmt.Fprintln(os.Stderr, "handleperf:", why)
	os.Exit(2)
}

func parseCodes(text string) (map[int32]bool, error) {
	out := map[int32]bool{}
	for _, part := range strings.Split(text, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("-ok %q: %v", text, err)
		}
		out[int32(n)] = true
	}
	return out, nil
}

func readIDs(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ids [][]byte
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		if line := bytes.TrimSpace(lines.Bytes()); len(line) > 0 {
			ids = append(ids, bytes.Clone(line))
		}
	}
	if err := lines.Err(); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%s: no identifiers", path)
	}
	return ids, nil
}

// schedule: request i is due at start + i/rate.
type schedule struct {
	start time.Time
	rate  float64
}

func (s schedule) due(i int) time.Time {
	return s.start.Add(time.Duration(float64(i) * 1e9 / s.rate))
}

// Planned is how many requests fall due in seconds at rate (the ticks 0, 1/rate, ...
// before the end), as loadgen.Phase.planned counts them.
func Planned(rate, seconds float64) int {
	return max(0, int(math.Ceil(round(seconds*rate, 6))))
}

// pace calls send(i, due) for each request in turn, never before it is due.
func pace(s schedule, n int, send func(i int, due time.Time)) {
	for i := range n {
		due := s.due(i)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		send(i, due)
	}
}

// requestBase is the first request id of a run: random, as the client's are, and far
// enough below 2^31 that every id of the run stays a positive int4.
func requestBase() uint32 {
	return 1 + rand.Uint32N(1<<30)
}

func expiration() uint32 {
	return uint32(time.Now().Unix() + requestLifetime)
}

// failures counts what went wrong by kind (the first words of the error).
type failures map[string]int

func (f failures) add(what string, err error) {
	text := err.Error()
	if i := strings.LastIndex(text, ": "); i >= 0 {
		text = text[i+2:] // "dial tcp ...: connection refused" -> "connection refused"
	}
	f[what+": "+text]++
}

func (f failures) merge(other failures) {
	for k, v := range other {
		f[k] += v
	}
}
