"""Sizes fixed by the protocol and the caps this codec puts on what a peer may send.

Every length and count read from the wire is checked against the bytes that remain and
against one of these caps before anything is allocated for it.
"""

from __future__ import annotations

# RFC 3652 §2.2.1 and §2.2.2: fixed sizes of the envelope and the header.
ENVELOPE_SIZE = 20
HEADER_SIZE = 24

# The protocol version this codec speaks: the CNRI 9.3.1 library's Common.MAJOR_VERSION
# and MINOR_VERSION. A reply carries the lower of this and the version the request
# suggests (CNRI AbstractResponse: the request's suggested version, capped at its own).
PROTOCOL_VERSION = (2, 11)

# CNRI Common.MAX_MESSAGE_LENGTH: the client rejects an envelope whose MessageLength is
# larger, so this is both our cap on requests and the most a response may be.
MAX_MESSAGE_LENGTH = 262_144  # 256 KiB

# RFC 3652 §2.3 / CNRI Common.MAX_UDP_PACKET_SIZE: one UDP packet, envelope included.
# The CNRI client places fragment N at N * 492 and reads into a 512-byte buffer, so
# every fragment but the last must carry exactly UDP_PACKET_SIZE - ENVELOPE_SIZE bytes.
UDP_PACKET_SIZE = 512
UDP_DATA_SIZE = UDP_PACKET_SIZE - ENVELOPE_SIZE
# Ours: a reply needing more packets goes over TCP instead (a bound on amplification).
MAX_UDP_PACKETS = 32

# Ours, on what a peer sends (CNRI's own caps are looser: 2048 values, 1M-element arrays).
MAX_VALUES = 1024  # handle values in one message
MAX_LIST_ITEMS = 1024  # indexes, types, references, attributes, servers, interfaces
MAX_STRING = 65_536  # any one length-prefixed octet string (64 KiB)
MAX_HANDLE_LENGTH = 2048  # bytes of UTF-8; CNRI Common.MAX_HANDLE_LENGTH

# CNRI AbstractMessage(): a message expires twelve hours after it is made, and the client
# throws GOT_EXPIRED_MESSAGE on a response whose ExpirationTime has passed.
RESPONSE_LIFETIME = 43_200
