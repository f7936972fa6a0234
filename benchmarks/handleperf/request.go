package main

// Requests built from a captured CNRI request, and the few bytes of an answer the load
// needs (RFC 3652 §2.2.1, the envelope; §2.2.2, the header). Nothing here does I/O.

import (
	"encoding/binary"
	"fmt"
)

const (
	envelopeSize = 20
	// the body starts after the envelope and the 24-byte header, with the handle's
	// length; the header's last field (bytes 40-43) is the body's length
	handleOffset = envelopeSize + 24
	// what the CNRI client adds to the time it builds a request (AbstractMessage)
	requestLifetime = 43200
	// a UDP packet carries 512 bytes, 20 of them the envelope (Common.MAX_UDP_DATA_SIZE)
	udpDataSize = 492
	// the client refuses a longer message (Common.MAX_MESSAGE_LENGTH)
	maxMessageLength = 262144
)

// Template is one captured request cut around its handle: what comes before the
// handle's length, and what follows the handle (the index and type lists, the
// credential).
type Template struct {
	head  []byte // envelope and header
	tail  []byte // the body after the handle, then the credential
	after int    // body bytes after the handle
}

// ParseTemplate checks that raw is one whole request whose body starts with a handle.
func ParseTemplate(raw []byte) (*Template, error) {
	if len(raw) < handleOffset+4 {
		return nil, fmt.Errorf("a request of %d bytes has no handle (it needs %d)", len(raw), handleOffset+4)
	}
	if n := int(binary.BigEndian.Uint32(raw[16:20])); n != len(raw)-envelopeSize {
		return nil, fmt.Errorf("the envelope says %d bytes follow, the file has %d", n, len(raw)-envelopeSize)
	}
	body := int(binary.BigEndian.Uint32(raw[40:44]))
	handle := int(binary.BigEndian.Uint32(raw[44:48]))
	if handleOffset+4+handle > len(raw) {
		return nil, fmt.Errorf("the handle's length %d runs past the request's end", handle)
	}
	after := body - 4 - handle
	rest := raw[handleOffset+4+handle:]
	if after < 0 || after > len(rest) {
		return nil, fmt.Errorf("the body's length %d does not hold its %d-byte handle", body, handle)
	}
	return &Template{head: raw[:handleOffset], tail: rest, after: after}, nil
}

// Build appends to dst[:0] the template's request for handle, with its own request id
// and expiration, every length fixed.
func (t *Template) Build(dst, handle []byte, requestID, expires uint32) []byte {
	dst = append(dst[:0], t.head...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(handle)))
	dst = append(dst, handle...)
	dst = append(dst, t.tail...)
	binary.BigEndian.PutUint32(dst[8:12], requestID)
	binary.BigEndian.PutUint32(dst[16:20], uint32(len(dst)-envelopeSize))
	binary.BigEndian.PutUint32(dst[36:40], expires)
	binary.BigEndian.PutUint32(dst[40:44], uint32(4+len(handle)+t.after))
	return dst
}

// Packet is what the load reads of one answer's packet: whose it is, its place in the
// message, the message's whole length and (in the first packet) the response code.
type Packet struct {
	RequestID uint32
	Sequence  uint32
	Length    uint32
	Code      int32 // -1 when the packet does not hold the header's response code
}

// ParsePacket reads an envelope (and the response code, when this packet carries
// the payload's first eight bytes).
func ParsePacket(p []byte) (Packet, error) {
	if len(p) < envelopeSize {
		return Packet{}, fmt.Errorf("%d bytes: shorter than an envelope", len(p))
	}
	out := Packet{
		RequestID: binary.BigEndian.Uint32(p[8:12]),
		Sequence:  binary.BigEndian.Uint32(p[12:16]),
		Length:    binary.BigEndian.Uint32(p[16:20]),
		Code:      -1,
	}
	if out.Length > maxMessageLength {
		return Packet{}, fmt.Errorf("a message of %d bytes: over the %d a client accepts", out.Length, maxMessageLength)
	}
	if out.Sequence == 0 && len(p) >= envelopeSize+8 {
		out.Code = int32(binary.BigEndian.Uint32(p[envelopeSize+4 : envelopeSize+8]))
	}
	return out, nil
}

// PacketCount is how many UDP packets carry a message of length bytes, as the CNRI
// client counts them: at least one.
func PacketCount(length uint32) int {
	return max(1, int((length+udpDataSize-1)/udpDataSize))
}
