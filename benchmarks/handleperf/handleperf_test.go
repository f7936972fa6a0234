package main

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const fixtures = "../../tests/fixtures/handle"

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// Every request the client sent is rebuilt byte for byte from another capture used as
// the template, given the capture's handle, request id and expiration.
func TestBuildRebuildsWhatTheClientSent(t *testing.T) {
	cases := []struct{ template, want, handle string }{
		{"resolve-udp-plain.bin", "resolve-udp-plain.bin", "88.100.1/ABC-123"},
		{"resolve-udp-plain.bin", "resolve-tcp-plain.bin", "88.100.1/ABC-123"},
		{"resolve-udp-plain.bin", "resolve-udp-utf8.bin", "88.100.1/Grüße-東京"},
		{"resolve-tcp-plain.bin", "resolve-tcp-utf8.bin", "88.100.1/Grüße-東京"},
		{"resolve-udp-types.bin", "resolve-udp-types.bin", "88.100.1/ABC-123"},
		{"resolve-udp-indexes.bin", "resolve-tcp-indexes.bin", "88.100.1/ABC-123"},
	}
	for _, c := range cases {
		tpl, err := ParseTemplate(fixture(t, c.template))
		if err != nil {
			t.Fatalf("%s: %v", c.template, err)
		}
		want := fixture(t, c.want)
		id := binary.BigEndian.Uint32(want[8:12])
		expires := binary.BigEndian.Uint32(want[36:40])
		got := tpl.Build(nil, []byte(c.handle), id, expires)
		if !bytes.Equal(got, want) {
			t.Errorf("%s as %s:\n got % x\nwant % x", c.template, c.want, got, want)
		}
	}
}

func TestBuildFixesEveryLength(t *testing.T) {
	tpl, err := ParseTemplate(fixture(t, "resolve-udp-types.bin"))
	if err != nil {
		t.Fatal(err)
	}
	handle := []byte("86.1000.12/a-much-longer-suffix-than-the-capture")
	got := tpl.Build(make([]byte, 3), handle, 7, 9)
	if n := binary.BigEndian.Uint32(got[16:20]); int(n) != len(got)-envelopeSize {
		t.Errorf("message length %d, %d bytes follow", n, len(got)-envelopeSize)
	}
	// body: the handle (4 + its bytes), the empty index list (4), the two types (4 + 2 x (4 + 3..5))
	if n := binary.BigEndian.Uint32(got[40:44]); n != uint32(4+len(handle)+4+4+7+9) {
		t.Errorf("body length %d", n)
	}
	if !bytes.Equal(got[48:48+len(handle)], handle) {
		t.Errorf("handle % x", got[48:48+len(handle)])
	}
	if again, err := ParseTemplate(got); err != nil || again.after != 4+4+7+9 {
		t.Errorf("the built request does not parse back as a template: %v", err)
	}
}

func TestParseTemplateRefusesWhatIsNotOneRequest(t *testing.T) {
	plain := fixture(t, "resolve-udp-plain.bin")
	longer := append(bytes.Clone(plain), 0)
	badHandle := bytes.Clone(plain)
	binary.BigEndian.PutUint32(badHandle[44:48], 200)
	badBody := bytes.Clone(plain)
	binary.BigEndian.PutUint32(badBody[40:44], 3)
	for name, raw := range map[string][]byte{
		"short": plain[:40], "trailing byte": longer, "handle length": badHandle, "body length": badBody,
	} {
		if _, err := ParseTemplate(raw); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParsePacket(t *testing.T) {
	packet := make([]byte, 40)
	copy(packet, []byte{2, 11, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 3, 0})
	binary.BigEndian.PutUint32(packet[24:28], 100) // the header's response code
	p, err := ParsePacket(packet)
	if err != nil || p != (Packet{RequestID: 258, Sequence: 0, Length: 768, Code: 100}) {
		t.Errorf("%+v %v", p, err)
	}
	binary.BigEndian.PutUint32(packet[12:16], 1) // a later packet: no header in it
	if p, _ := ParsePacket(packet); p.Code != -1 || p.Sequence != 1 {
		t.Errorf("%+v", p)
	}
	if _, err := ParsePacket(packet[:19]); err == nil {
		t.Error("a 19-byte packet parsed")
	}
}

func TestPacketCount(t *testing.T) {
	for length, want := range map[uint32]int{0: 1, 1: 1, 492: 1, 493: 2, 984: 2, 985: 3} {
		if got := PacketCount(length); got != want {
			t.Errorf("PacketCount(%d) = %d, want %d", length, got, want)
		}
	}
}

func TestPercentileIsNearestRank(t *testing.T) {
	thousand := make([]float64, 1000)
	for i := range thousand {
		thousand[i] = float64(i + 1)
	}
	cases := []struct {
		values []float64
		q      float64
		want   float64
	}{
		{nil, 99, 0},
		{[]float64{5}, 50, 5},
		{[]float64{1, 2, 3, 4}, 50, 2},
		{[]float64{1, 2, 3, 4}, 51, 3},
		{thousand, 99.9, 999},
		{thousand, 100, 1000},
		{thousand, 0, 1},
	}
	for _, c := range cases {
		if got := Percentile(c.values, c.q); got != c.want {
			t.Errorf("Percentile(%d values, %g) = %g, want %g", len(c.values), c.q, got, c.want)
		}
	}
}

func TestSummariseCountsLostAndLateAtTheTimeout(t *testing.T) {
	ok := map[int32]bool{1: true, 100: true}
	outcomes := []Outcome{
		{Latency: 2 * time.Millisecond, Code: 1},
		{Latency: 3 * time.Millisecond, Code: 100},
		{Latency: 4 * time.Millisecond, Code: 2}, // answered, an error
		{},                                       // never answered
		{Latency: 2 * time.Second, Code: 1},      // answered after the timeout
	}
	s := Summarise(outcomes, ok, time.Second, 2)
	if s.Sent != 5 || s.Answered != 3 || s.Lost != 2 || s.Errors != 3 {
		t.Errorf("sent %d answered %d lost %d errors %d", s.Sent, s.Answered, s.Lost, s.Errors)
	}
	if s.AchievedRate != 1 { // two good answers in two seconds
		t.Errorf("achieved %g", s.AchievedRate)
	}
	if s.Codes["1"] != 1 || s.Codes["100"] != 1 || s.Codes["2"] != 1 {
		t.Errorf("codes %v", s.Codes)
	}
	if s.P50 != 4 || s.Max != 1000 {
		t.Errorf("p50 %g max %g", s.P50, s.Max)
	}
}

func TestPlannedCountsTicksBeforeTheEnd(t *testing.T) {
	for _, c := range []struct {
		rate, seconds float64
		want          int
	}{{1000, 3, 3000}, {3, 1, 3}, {2.5, 1, 3}, {0, 5, 0}} {
		if got := Planned(c.rate, c.seconds); got != c.want {
			t.Errorf("Planned(%g, %g) = %d, want %d", c.rate, c.seconds, got, c.want)
		}
	}
}

// The reference server answers each request on a connection under its request id,
// with SUCCESS, as many as the connection carries.
func TestServeAnswersEachRequestUnderItsID(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serveOn(ln)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := fixture(t, "resolve-tcp-plain.bin")
	for id := uint32(1); id <= 2; id++ {
		binary.BigEndian.PutUint32(req[8:], id)
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		out := make([]byte, len(floorAnswer()))
		if _, err := io.ReadFull(c, out); err != nil {
			t.Fatal(err)
		}
		if got := binary.BigEndian.Uint32(out[8:]); got != id {
			t.Fatalf("answer under request id %d, want %d", got, id)
		}
		if code := binary.BigEndian.Uint32(out[24:]); code != 1 {
			t.Fatalf("response code %d, want 1", code)
		}
		if n := binary.BigEndian.Uint32(out[16:]); int(n) != len(out)-20 {
			t.Fatalf("message length %d for %d bytes", n, len(out)-20)
		}
	}
}
