package main

import (
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// dnsWorker stands in for the workers' EdgeForwards: it answers each query with the
// query's bytes, QR set, and the record's value after them, and marks the answer
// keepable for 60 s, about ident, when asked to fill.
type dnsWorker struct {
	ln    net.Listener
	mu    sync.Mutex
	value string
	asked atomic.Int64
	fills atomic.Int64
	hold  chan struct{} // when set, each answer waits for a receive
	// the answer to a request (nil: a DNS query's, with QR set and the value after it)
	answer func(request []byte, value string) []byte
	parts  int // parts sent before each answer, as of an answer of several messages
}

const dnsIdent = "88.100.1/X"

func (w *dnsWorker) serve() {
	for {
		c, err := w.ln.Accept()
		if err != nil {
			return
		}
		go w.conn(c)
	}
}

func (w *dnsWorker) conn(c net.Conn) {
	defer c.Close()
	head := make([]byte, 4)
	for {
		if _, err := io.ReadFull(c, head); err != nil {
			return
		}
		msg := make([]byte, binary.BigEndian.Uint32(head))
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		w.asked.Add(1)
		fill := msg[4]&1 == 1
		if fill {
			w.fills.Add(1)
		}
		query := msg[6+int(msg[5]):]
		if w.hold != nil {
			<-w.hold
		}
		w.mu.Lock()
		value := w.value
		w.mu.Unlock()
		var answer []byte
		if w.answer != nil {
			answer = w.answer(query, value)
		} else {
			answer = append([]byte(nil), query...)
			answer[2] |= 0x80
			answer = append(answer, value...)
		}
		for range w.parts {
			part := binary.BigEndian.AppendUint32(nil, uint32(10+len(answer)))
			part = append(part, msg[:4]...)
			part = binary.BigEndian.AppendUint32(part, fwdPart)
			part = binary.BigEndian.AppendUint16(part, 0)
			if _, err := c.Write(append(part, answer...)); err != nil {
				return
			}
		}
		var keep uint32
		ident := ""
		if fill {
			keep, ident = 60_000, dnsIdent
		}
		out := binary.BigEndian.AppendUint32(nil, uint32(10+len(ident)+len(answer)))
		out = append(out, msg[:4]...)
		out = binary.BigEndian.AppendUint32(out, keep)
		out = binary.BigEndian.AppendUint16(out, uint16(len(ident)))
		out = append(out, ident...)
		out = append(out, answer...)
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

func (w *dnsWorker) set(value string) {
	w.mu.Lock()
	w.value = value
	w.mu.Unlock()
}

func newDNS(t *testing.T, hold chan struct{}) (*DNS, *dnsWorker, *net.UDPAddr) {
	t.Helper()
	backend := filepath.Join(t.TempDir(), "d.sock")
	back, err := net.Listen("unix", backend)
	if err != nil {
		t.Fatal(err)
	}
	w := &dnsWorker{ln: back, value: "one", hold: hold}
	go w.serve()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f, err := udp.File()
	if err != nil {
		t.Fatal(err)
	}
	addr := udp.LocalAddr().(*net.UDPAddr)
	udp.Close()
	fd, err := syscall.Dup(int(f.Fd())) // the edge's own, as the one the node passes is
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	d, err := OpenDNS(fd, backend, NewCache(100), NewShedder(16, dnsMaxPending, time.Second, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	d.cache.Forget(true) // as Listen does once it hears the node's changes
	go d.Serve()
	t.Cleanup(func() {
		d.Close()
		back.Close()
	})
	return d, w, addr
}

// answerWait is how long a test waits for an answer it expects: long, as the suite's
// machine may be loaded (an answer that does come returns at once).
const answerWait = 5 * time.Second

// ask sends a query (a header with ID id, then name) and returns the answer, or nil
// when none comes within wait.
func ask(t *testing.T, to *net.UDPAddr, id uint16, name string, wait time.Duration) []byte {
	t.Helper()
	c, err := net.DialUDP("udp", nil, to)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	query := binary.BigEndian.AppendUint16(nil, id)
	query = append(query, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0)
	query = append(query, name...)
	if _, err := c.Write(query); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func TestDNSKeptAnswerGoesOutUnderTheAskersID(t *testing.T) {
	_, w, addr := newDNS(t, nil)
	first := ask(t, addr, 1, "q", answerWait)
	second := ask(t, addr, 2, "q", answerWait)
	if string(first[12:]) != "qone" || first[0] != 0 || first[1] != 1 {
		t.Fatalf("first answer %q", first)
	}
	if second[1] != 2 || string(second[2:]) != string(first[2:]) {
		t.Fatalf("kept answer %q, want %q under ID 2", second, first)
	}
	if w.asked.Load() != 1 {
		t.Fatalf("workers asked %d times, want 1", w.asked.Load())
	}
	if other := ask(t, addr, 3, "r", answerWait); string(other[12:]) != "rone" || w.asked.Load() != 2 {
		t.Fatalf("another question %q (asked %d)", other, w.asked.Load())
	}
}

func TestDNSChangeForgetsTheKeptAnswer(t *testing.T) {
	d, w, addr := newDNS(t, nil)
	ask(t, addr, 1, "q", answerWait)
	w.set("two")
	if got := ask(t, addr, 2, "q", answerWait); string(got[12:]) != "qone" {
		t.Fatalf("before the notice: %q", got)
	}
	d.cache.Invalidate([]string{dnsIdent})
	if got := ask(t, addr, 3, "q", answerWait); string(got[12:]) != "qtwo" {
		t.Fatalf("after the notice: %q", got)
	}
}

func TestDNSAnswerOfATripAChangeCrossedIsSentNotKept(t *testing.T) {
	hold := make(chan struct{})
	d, w, addr := newDNS(t, hold)
	got := make(chan []byte, 1)
	go func() { got <- ask(t, addr, 1, "q", 2*time.Second) }()
	for w.asked.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	d.cache.Invalidate([]string{"88.100.1/OTHER"}) // any change heard meanwhile
	hold <- struct{}{}
	if answer := <-got; string(answer[12:]) != "qone" {
		t.Fatalf("answer %q", answer)
	}
	go func() { hold <- struct{}{} }()
	ask(t, addr, 2, "q", answerWait)
	if w.asked.Load() != 2 {
		t.Fatalf("workers asked %d times: the crossed answer was kept", w.asked.Load())
	}
}

func TestDNSKeepsNothingWhileNotHearingChanges(t *testing.T) {
	d, w, addr := newDNS(t, nil)
	d.cache.Forget(false) // the edge lost its feed of changes
	ask(t, addr, 1, "q", answerWait)
	ask(t, addr, 2, "q", answerWait)
	if w.asked.Load() != 2 || w.fills.Load() != 0 {
		t.Fatalf("asked %d, fills %d: want 2 asks, no fill", w.asked.Load(), w.fills.Load())
	}
}

func TestDNSPacketWithoutAQueryGetsNoAnswer(t *testing.T) {
	d, w, addr := newDNS(t, nil)
	c, err := net.DialUDP("udp", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	response := []byte{0, 1, 0x81, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	for _, packet := range [][]byte{{0, 1, 2}, response} {
		if _, err := c.Write(packet); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 512)); err == nil {
		t.Fatalf("an answer of %d bytes to a packet with no query", n)
	}
	if d.malformed.Load() != 2 || w.asked.Load() != 0 {
		t.Fatalf("malformed %d, asked %d", d.malformed.Load(), w.asked.Load())
	}
}

func TestDNSDirectoryChangeForgetsAndAnswersUnderWayAreNotKept(t *testing.T) {
	d, w, addr := newDNS(t, nil)
	ask(t, addr, 1, "q", answerWait)
	gen, _ := d.cache.Gen()
	d.cache.Clear() // what Listen does again a while after a directory notice
	if !d.cache.Listening() {
		t.Fatal("Clear stopped the keeping")
	}
	if d.cache.Put("late", stored{key: dnsIdent, expires: time.Now().Add(time.Minute).UnixNano()}, gen) {
		t.Fatal("an answer worked out before the clear was kept")
	}
	ask(t, addr, 2, "q", answerWait)
	if w.asked.Load() != 2 {
		t.Fatalf("workers asked %d times: the answer outlived the clear", w.asked.Load())
	}
}
