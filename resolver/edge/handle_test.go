package main

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// handleAnswer stands in for the workers' answer to a Handle request: the request's
// bytes with the value after them, so that a test sees which request was answered.
func handleAnswer(request []byte, value string) []byte {
	if value == "" {
		return nil // nothing to send: the edge closes the connection
	}
	return append(append([]byte(nil), request...), value...)
}

func newHandle(t *testing.T, shed *Shedder) (*Handle, *dnsWorker, string) {
	t.Helper()
	backend := filepath.Join(t.TempDir(), "h.sock")
	back, err := net.Listen("unix", backend)
	if err != nil {
		t.Fatal(err)
	}
	w := &dnsWorker{ln: back, value: "one", answer: handleAnswer}
	go w.serve()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	fd, err := syscall.Dup(int(f.Fd())) // the edge's own, as the one the node passes is
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if shed == nil {
		shed = NewShedder(16, hdlMaxPending, time.Second, time.Second)
	}
	h, err := OpenHandle(fd, backend, NewCache(100), shed)
	if err != nil {
		t.Fatal(err)
	}
	h.cache.Forget(true) // as Listen does once it hears the node's changes
	go h.Serve()
	t.Cleanup(func() {
		h.Close()
		back.Close()
	})
	return h, w, addr
}

// handleRequest is a resolution request (opcode 1) for name under request id id and
// expiration time expires: an envelope, a header, the handle, no indexes or types, no
// credential (RFC 3652 §2.2, §3.1).
func handleRequest(id, expires uint32, name string) []byte {
	body := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	body = append(body, name...)
	body = append(body, 0, 0, 0, 0, 0, 0, 0, 0)
	msg := []byte{2, 3, 2, 11, 0, 0, 0, 0}
	msg = binary.BigEndian.AppendUint32(msg, id)
	msg = binary.BigEndian.AppendUint32(msg, 0)
	msg = binary.BigEndian.AppendUint32(msg, uint32(hdlHeader+len(body)+4))
	msg = append(msg, 0, 0, 0, 1, 0, 0, 0, 0, 0x19, 0, 0, 0, 0xff, 0xff, 0, 0)
	msg = binary.BigEndian.AppendUint32(msg, expires)
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(body)))
	msg = append(msg, body...)
	return binary.BigEndian.AppendUint32(msg, 0)
}

// exchange writes msg on c and reads back n bytes (nil: the connection closed first).
func exchange(t *testing.T, c net.Conn, msg []byte, n int) []byte {
	t.Helper()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	out := make([]byte, n)
	if _, err := io.ReadFull(c, out); err != nil {
		return nil
	}
	return out
}

func dialHandle(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestHandleKeepsAnswersUnderEachRequestsID(t *testing.T) {
	h, w, addr := newHandle(t, nil)
	first := handleRequest(7, 1000, "88.100.1/X")
	c := dialHandle(t, addr)
	got := exchange(t, c, first, len(first)+3)
	if !bytes.Equal(got, append(append([]byte(nil), first...), "one"...)) {
		t.Fatalf("first answer %x", got)
	}
	// the same question under another request id and expiration, on a new connection
	// (as the CNRI client asks): from memory, under its own id, expiring in 12 hours
	w.set("two")
	again := handleRequest(9, 2000, "88.100.1/X")
	got = exchange(t, dialHandle(t, addr), again, len(again)+3)
	if w.asked.Load() != 1 || h.hits.Load() != 1 {
		t.Fatalf("workers asked %d times, %d hits: want 1 and 1", w.asked.Load(), h.hits.Load())
	}
	if binary.BigEndian.Uint32(got[8:]) != 9 || string(got[len(got)-3:]) != "one" {
		t.Fatalf("kept answer %x: want request id 9 and the kept value", got)
	}
	expires := int64(binary.BigEndian.Uint32(got[hdlExpiration:]))
	if now := time.Now().Unix(); expires < now+hdlLifetime-5 || expires > now+hdlLifetime+5 {
		t.Fatalf("kept answer expires at %d, want about now + %d", expires, hdlLifetime)
	}
	// another question goes to the workers; a change to the identifier forgets the answer
	other := handleRequest(10, 2000, "88.100.1/Y")
	if got := exchange(t, c, other, len(other)+3); string(got[len(got)-3:]) != "two" {
		t.Fatalf("another question answered %x", got)
	}
	h.cache.Invalidate([]string{dnsIdent})
	if got := exchange(t, c, again, len(again)+3); string(got[len(got)-3:]) != "two" || w.asked.Load() != 3 {
		t.Fatalf("after the change: %x, asked %d", got, w.asked.Load())
	}
}

func TestHandleClosesOnWhatCannotBeAnswered(t *testing.T) {
	_, w, addr := newHandle(t, nil)
	// a length no message can have: the stream is lost, the workers never asked
	huge := handleRequest(1, 0, "88.100.1/X")
	binary.BigEndian.PutUint32(huge[16:], hdlMaxMessage+1)
	if got := exchange(t, dialHandle(t, addr), huge, 1); got != nil {
		t.Fatalf("an oversized message was answered %x", got)
	}
	// the workers have nothing to send (a request they could not frame an answer to)
	w.set("")
	if got := exchange(t, dialHandle(t, addr), handleRequest(2, 0, "88.100.1/Z"), 1); got != nil {
		t.Fatalf("answered %x where the workers sent nothing", got)
	}
	if w.asked.Load() != 1 {
		t.Fatalf("workers asked %d times, want 1", w.asked.Load())
	}
}

func TestHandleTooBusyWhenShedding(t *testing.T) {
	// a shedder that admits nothing: every request the cache lacks is answered busy
	_, w, addr := newHandle(t, NewShedder(0, 0, time.Second, time.Second))
	msg := handleRequest(5, 0, "88.100.1/X")
	c := dialHandle(t, addr)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	head := make([]byte, hdlEnvelope)
	if _, err := io.ReadFull(c, head); err != nil {
		t.Fatal(err)
	}
	rest := make([]byte, binary.BigEndian.Uint32(head[16:]))
	if _, err := io.ReadFull(c, rest); err != nil {
		t.Fatal(err)
	}
	if code := binary.BigEndian.Uint32(rest[4:]); code != hdlBusy || binary.BigEndian.Uint32(head[8:]) != 5 {
		t.Fatalf("answer %x %x: want SERVER_TOO_BUSY under request id 5", head, rest)
	}
	if w.asked.Load() != 0 {
		t.Fatalf("workers asked %d times while shedding", w.asked.Load())
	}
}

// TestTooBusyAsTheCodecFramesIt: the edge's SERVER_TOO_BUSY to the CNRI client's own
// requests (tests/fixtures/handle) is byte for byte what the workers' codec makes
// (encode_response with ErrorResponse, at the same second: the vectors below).
func TestTooBusyAsTheCodecFramesIt(t *testing.T) {
	const text = "0000002d7468652073657276657220697320746f6f20627573793a2061736b20616761696e20696e2061206d6f6d656e7400000000"
	for name, want := range map[string]string{
		// RD set: a SHA-256 request digest first (version 2.11 suggested)
		"resolve-tcp-digest.bin": "020b020b00000000027c44d5000000000000006e000000010000000319800000ffff00006b4a7ac000000052036295f927c8d655e7a95cd8ad9bdfeb3860c7f2dcc64bb68894f2b7a9da3551ad" + text,
		"resolve-tcp-plain.bin":  "020b020b000000004734dfc2000000000000004d000000010000000319000000ffff00006b4a7ac000000031" + text,
	} {
		msg, err := os.ReadFile(filepath.Join("..", "..", "tests", "fixtures", "handle", name))
		if err != nil {
			t.Fatal(err)
		}
		got := hex.EncodeToString(tooBusy(msg, time.Unix(1_800_000_000, 0)))
		if got != want {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
	if tooBusy(make([]byte, hdlEnvelope+hdlHeader-1), time.Now()) != nil {
		t.Error("a message with no whole header was answered")
	}
}

func TestHandleAnswerOfSeveralMessagesGoesOutPartByPart(t *testing.T) {
	_, w, addr := newHandle(t, nil)
	w.parts = 3 // set before any request: the worker reads it as it answers
	msg := handleRequest(4, 0, "88.100.1/LIST")
	one := append(append([]byte(nil), msg...), "one"...)
	c := dialHandle(t, addr)
	got := exchange(t, c, msg, 4*len(one))
	if !bytes.Equal(got, bytes.Repeat(one, 4)) {
		t.Fatalf("got %x, want the 3 parts and the last message", got)
	}
	// the connection carries on; a multi-message answer is never kept
	got = exchange(t, c, msg, 4*len(one))
	if got == nil || w.asked.Load() != 2 {
		t.Fatalf("asked again: %x, workers asked %d times", got, w.asked.Load())
	}
}
