package main

// -serve: the least a Handle server can do over TCP, as the reference the node's face
// is measured beside (benchmarks/handle.py, kind "floor_tcp_per_request"): each
// request on a connection is read whole (RFC 3652 §2.2.1: an envelope, then
// MessageLength bytes) and answered at once with one fixed SUCCESS message (no values)
// under its request id. No cache, no lookup, no limits: what is left is the kernel's
// TCP work and Go's netpoller, which any server of connection-per-request clients pays.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
)

// floorAnswer is a resolution response (opcode 1, SUCCESS) to the handle "" with no
// values: envelope, header, body (handle length 0, value count 0), no credential.
func floorAnswer() []byte {
	out := []byte{2, 11, 2, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	out = binary.BigEndian.AppendUint32(out, 24+8+4)
	out = binary.BigEndian.AppendUint32(out, 1) // opcode: resolution
	out = binary.BigEndian.AppendUint32(out, 1) // response code: success
	out = binary.BigEndian.AppendUint32(out, 0x1000_0000)
	out = append(out, 0xff, 0xff, 0, 0)
	out = binary.BigEndian.AppendUint32(out, 0) // expiration: never checked by handleperf
	out = binary.BigEndian.AppendUint32(out, 8)
	out = append(out, 0, 0, 0, 0, 0, 0, 0, 0)
	return binary.BigEndian.AppendUint32(out, 0)
}

func serve(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return serveOn(ln)
}

func serveOn(ln net.Listener) error {
	answer := floorAnswer()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			continue
		}
		go func(c net.Conn) {
			defer c.Close()
			r := bufio.NewReaderSize(c, 4096)
			head := make([]byte, 20)
			out := append([]byte(nil), answer...)
			var body []byte
			for {
				if _, err := io.ReadFull(r, head); err != nil {
					return
				}
				n := binary.BigEndian.Uint32(head[16:])
				if n > 1<<18 {
					return
				}
				if uint32(cap(body)) < n {
					body = make([]byte, n)
				}
				if _, err := io.ReadFull(r, body[:n]); err != nil {
					return
				}
				copy(out[8:12], head[8:12])
				if _, err := c.Write(out); err != nil {
					return
				}
			}
		}(c)
	}
}
