"""Byte vectors written out by hand from the field tables of RFC 3652 (and CNRI's layout
where it differs), one comment per field, so a reader can check each against the RFC."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address

from schemas.handle_wire import (
    ChallengeResponse,
    DigestAlgorithm,
    Envelope,
    ErrorResponse,
    HandleValue,
    Header,
    Interface,
    Message,
    OpCode,
    OpFlag,
    RequestDigest,
    ResolutionRequest,
    ResolutionResponse,
    ResponseCode,
    ServerInfo,
    ServiceReferral,
    SiteInfo,
    SiteInfoResponse,
    decode_request,
    decode_response,
    encode_message,
    encode_response,
    reply_envelope,
    tcp_message,
)
from schemas.handle_wire.wire import Reader, Writer

NOW = 1_800_000_000  # the server's clock in these vectors; replies expire at NOW + 43200

# RFC 3652 §2.2.1 Message Envelope, as the CNRI 9.3.1 client sends it.
ENVELOPE = bytes.fromhex(
    "02"  # MajorVersion 2
    "03"  # MinorVersion 3 (CNRI's compatibility version)
    "02"  # MessageFlag, 1st octet: CP=0 EC=0 TC=0; low bits: suggested major version 2
    "0b"  # MessageFlag, 2nd octet: suggested minor version 11 (CNRI, not in the RFC)
    "00000000"  # SessionId: no session
    "4734dfc2"  # RequestId
    "00000000"  # SequenceNumber: the first (only) packet
    "00000038"  # MessageLength: 56 bytes follow
)

# A resolution request for 88.100.1/ABC-123 (the CNRI client's default flags).
RESOLUTION_REQUEST = bytes.fromhex(
    # Message Header, RFC 3652 §2.2.2
    "00000001"  # OpCode: OC_RESOLUTION (§2.2.2.1)
    "00000000"  # ResponseCode: 0 in a request (§2.2.2.2)
    "19000000"  # OpFlag: REC 0x10000000 | CA 0x08000000 | PO 0x01000000 (§2.2.2.3)
    "ffff"  # SiteInfoSerialNumber: CNRI's -1, no HS_SITE in hand (§2.2.2.4)
    "00"  # RecursionCount (§2.2.2.5)
    "00"  # reserved
    "6b17531a"  # ExpirationTime (§2.2.2.6)
    "0000001c"  # BodyLength: 28 (§2.2.2.7)
    # Message Body, RFC 3652 §3.2.1
    "00000010"  # Handle: UTF8-String of 16 bytes (§2.1.4)
    "38382e3130302e312f4142432d313233"  # "88.100.1/ABC-123"
    "00000000"  # IndexList: empty, every index
    "00000000"  # TypeList: empty, every type
    # Message Credential, RFC 3652 §2.2.4
    "00000000"  # CredentialLength 0: not signed
)

URL_VALUE = HandleValue(
    index=1,
    type=b"URL",
    data=b"https://example.com/p/ABC",
    timestamp=1_795_420_800,
)
# RFC 3652 §3.2.2 <HandleValue>
URL_VALUE_BYTES = bytes.fromhex(
    "00000001"  # Index 1
    "6b03f280"  # Timestamp 1795420800
    "00"  # TTLType: relative
    "00015180"  # TTL: 86400 seconds
    "0e"  # Permission: ADMIN_READ 0x8 | ADMIN_WRITE 0x4 | PUBLIC_READ 0x2
    "00000003"  # Type: 3 bytes
    "55524c"  # "URL"
    "00000019"  # Data: 25 bytes
    "68747470733a2f2f6578616d706c652e636f6d2f702f414243"  # "https://example.com/p/ABC"
    "00000000"  # References: none
)

# The successful reply to RESOLUTION_REQUEST, with our HS_SITE serial 1.
RESOLUTION_RESPONSE = bytes.fromhex(
    # Message Header, RFC 3652 §2.2.2
    "00000001"  # OpCode: copied from the request
    "00000001"  # ResponseCode: RC_SUCCESS
    "19000000"  # OpFlag: REC (always, as CNRI), CA and PO echoed
    "0001"  # SiteInfoSerialNumber: the responding site's
    "00"  # RecursionCount: the request's
    "00"  # reserved
    "6b4a7ac0"  # ExpirationTime: NOW + 43200
    "0000004e"  # BodyLength: 78
    # Message Body, RFC 3652 §3.2.2
    "00000010"  # Handle: 16 bytes
    "38382e3130302e312f4142432d313233"  # "88.100.1/ABC-123"
    "00000001"  # ValueList: 1 value
)
RESOLUTION_RESPONSE += URL_VALUE_BYTES + bytes.fromhex("00000000")  # no credential

# RFC 3652 §3.3 Error Response: HANDLE_NOT_FOUND to RESOLUTION_REQUEST.
ERROR_RESPONSE = bytes.fromhex(
    "00000001"  # OpCode: copied
    "00000064"  # ResponseCode: 100, RC_HANDLE_NOT_FOUND
    "19000000"  # OpFlag
    "ffff"  # SiteInfoSerialNumber: the request's, echoed by default
    "00"  # RecursionCount
    "00"  # reserved
    "6b4a7ac0"  # ExpirationTime: NOW + 43200
    "0000000d"  # BodyLength: 13
    "00000009"  # ErrorMessage: 9 bytes
    "6e6f7420666f756e64"  # "not found"
    "00000000"  # no credential
)

# RFC 3651 §3.2.2 HS_SITE: the data of a site's HS_SITE value.
SITE = SiteInfo(
    serial_number=7,
    attributes=((b"desc", b"test"),),
    servers=(
        ServerInfo(
            server_id=1,
            address=IPv4Address("127.0.0.1"),
            interfaces=(
                Interface(service_type=3, protocol=0, port=2641),
                Interface(service_type=3, protocol=1, port=2641),
            ),
        ),
    ),
)
SITE_BYTES = bytes.fromhex(
    "0001"  # Version: 1 (CNRI SITE_RECORD_FORMAT_VERSION)
    "02"  # ProtocolVersion: major 2
    "0b"  # ProtocolVersion: minor 11
    "0007"  # SerialNumber 7
    "80"  # PrimaryMask: primary site (0x80), not multi-primary (0x40)
    "02"  # HashOption: by the whole handle
    "00000000"  # HashFilter: empty
    "00000001"  # AttributeList: 1 attribute
    "00000004"  # name: 4 bytes
    "64657363"  # "desc"
    "00000004"  # value: 4 bytes
    "74657374"  # "test"
    "00000001"  # NumOfServer: 1
    "00000001"  # ServerID 1
    "000000000000000000000000"  # Address: twelve zero octets (CNRI's IPv4 form) ...
    "7f000001"  # ... and 127.0.0.1
    "00000000"  # PublicKeyRecord: empty
    "00000002"  # ServiceInterface: 2 interfaces
    "03"  # ServiceType: ADMIN_AND_QUERY
    "00"  # TransmissionProtocol: UDP
    "00000a51"  # PortNumber 2641
    "03"  # ServiceType: ADMIN_AND_QUERY
    "01"  # TransmissionProtocol: TCP
    "00000a51"  # PortNumber 2641
)


def request() -> Message:
    envelope = Envelope.decode(ENVELOPE)
    return decode_request(envelope, RESOLUTION_REQUEST)


def test_envelope_fields_are_read_from_their_octets() -> None:
    envelope = Envelope.decode(ENVELOPE)

    assert envelope == Envelope(
        major=2,
        minor=3,
        suggested_major=2,
        suggested_minor=11,
        request_id=0x4734DFC2,
        message_length=56,
    )
    assert envelope.suggested_version == (2, 11)
    assert envelope.encode() == ENVELOPE


def test_envelope_flags_sit_in_the_top_bits_of_the_first_flag_octet() -> None:
    data = bytearray(ENVELOPE)
    data[2] = 0x80 | 0x40 | 0x20 | 0x02  # CP, EC, TC and suggested major 2

    envelope = Envelope.decode(bytes(data))

    assert (envelope.compressed, envelope.encrypted, envelope.truncated) == (True, True, True)
    assert envelope.suggested_major == 2
    assert envelope.encode() == bytes(data)


def test_no_suggested_version_falls_back_to_the_envelope_version() -> None:
    data = bytearray(ENVELOPE)
    data[2:4] = b"\x00\x00"  # a sender older than CNRI's suggested-version octets

    assert Envelope.decode(bytes(data)).suggested_version == (2, 3)


def test_resolution_request_decodes_field_by_field() -> None:
    message = request()

    assert message.header == Header(
        opcode=OpCode.RESOLUTION,
        op_flags=OpFlag.RECURSIVE | OpFlag.CACHE_CERTIFY | OpFlag.PUBLIC_ONLY,
        site_info_serial=0xFFFF,
        expiration=0x6B17531A,
        body_length=28,
    )
    assert message.header.recursive
    assert message.header.cache_certify
    assert message.header.public_only
    assert not message.header.authoritative
    assert message.body == ResolutionRequest(handle=b"88.100.1/ABC-123")
    assert message.credential is None
    assert message.header_and_body == RESOLUTION_REQUEST[:-4]


def test_resolution_request_encodes_to_the_same_bytes() -> None:
    message = request()

    assert encode_message(message) == RESOLUTION_REQUEST


def test_handle_value_layout() -> None:
    assert URL_VALUE.encode() == URL_VALUE_BYTES
    assert HandleValue.decode(URL_VALUE_BYTES) == URL_VALUE


def test_resolution_response_layout() -> None:
    payload = encode_response(
        request(),
        ResponseCode.SUCCESS,
        ResolutionResponse(handle=b"88.100.1/ABC-123", values=(URL_VALUE,)),
        now=NOW,
        site_info_serial=1,
    )

    assert payload == RESOLUTION_RESPONSE


def test_error_response_layout() -> None:
    payload = encode_response(
        request(), ResponseCode.HANDLE_NOT_FOUND, ErrorResponse(message="not found"), now=NOW
    )

    assert payload == ERROR_RESPONSE


def test_reply_envelope_copies_the_ids_and_speaks_the_suggested_version() -> None:
    framed = tcp_message(reply_envelope(Envelope.decode(ENVELOPE)), RESOLUTION_RESPONSE)

    assert framed[:20] == bytes.fromhex(
        "02"  # MajorVersion: the request suggested 2.11, which we speak
        "0b"  # MinorVersion 11
        "02"  # MessageFlag: no CP/EC/TC; our suggested major version 2
        "0b"  # our suggested minor version 11
        "00000000"  # SessionId: the request's
        "4734dfc2"  # RequestId: the request's
        "00000000"  # SequenceNumber
        "0000006a"  # MessageLength: 24 + 78 + 4 = 106
    )
    assert framed[20:] == RESOLUTION_RESPONSE


def test_site_info_layout() -> None:
    assert SITE.encode() == SITE_BYTES
    assert SiteInfo.decode(SITE_BYTES) == SITE


def test_site_info_keeps_ipv6_addresses_whole() -> None:
    address = IPv6Address("2001:db8::1")
    site = replace(SITE, servers=(replace(SITE.servers[0], address=address),))

    encoded = site.encode()

    assert encoded[40:56] == address.packed  # after the 40 bytes up to ServerID
    assert SiteInfo.decode(encoded).servers[0].address == address


def test_site_info_response_body_is_the_record_itself() -> None:
    site_request = bytes.fromhex(
        "00000002"  # OpCode: OC_GET_SITE_INFO
        "00000000"  # ResponseCode
        "19000000"  # OpFlag
        "ffff0000"  # SiteInfoSerialNumber, RecursionCount, reserved
        "6b17531d"  # ExpirationTime
        "00000005"  # BodyLength 5
        "00000001"  # Handle: 1 byte
        "2f"  # "/", CNRI's BLANK_HANDLE
        "00000000"  # no credential
    )
    envelope = replace(Envelope.decode(ENVELOPE), message_length=len(site_request))
    message = decode_request(envelope, site_request)

    payload = encode_response(message, ResponseCode.SUCCESS, SiteInfoResponse(site=SITE), now=NOW)

    assert payload[24:-4] == SITE_BYTES
    assert payload[20:24] == len(SITE_BYTES).to_bytes(4, "big")  # BodyLength


# RFC 3652 §3.4 Service Referral: ask the service of 0.NA/88.100 instead.
SERVICE_REFERRAL = bytes.fromhex(
    "00000001"  # OpCode: copied
    "0000012e"  # ResponseCode: 302, RC_SERVICE_REFERRAL
    "19000000"  # OpFlag
    "ffff"  # SiteInfoSerialNumber
    "00"  # RecursionCount
    "00"  # reserved
    "6b4a7ac0"  # ExpirationTime: NOW + 43200
    "0000000f"  # BodyLength: 15
    "0000000b"  # ReferralHandle: 11 bytes
    "302e4e412f38382e313030"  # "0.NA/88.100"
    "00000000"  # no credential
)


def test_service_referral_without_values_ends_at_the_handle() -> None:
    payload = encode_response(
        request(), ResponseCode.SERVICE_REFERRAL, ServiceReferral(handle=b"0.NA/88.100"), now=NOW
    )

    assert payload == SERVICE_REFERRAL


def test_service_referral_with_values_appends_the_value_list() -> None:
    payload = encode_response(
        request(),
        ResponseCode.SERVICE_REFERRAL,
        ServiceReferral(handle=b"0.NA/88.100", values=()),
        now=NOW,
    )

    assert payload[20:24] == bytes.fromhex("00000013")  # BodyLength: 19
    assert payload[24:-4] == SERVICE_REFERRAL[24:-4] + bytes.fromhex("00000000")  # 0 values


def with_flags(message: bytes, flags: str) -> bytes:
    return message[:8] + bytes.fromhex(flags) + message[12:]


def test_request_digest_leads_the_body_when_the_request_sets_rd() -> None:
    asked = with_flags(RESOLUTION_REQUEST, "19800000")  # RD 0x00800000 added
    message = decode_request(Envelope.decode(ENVELOPE), asked)

    payload = encode_response(
        message,
        ResponseCode.SUCCESS,
        ResolutionResponse(handle=b"88.100.1/ABC-123", values=(URL_VALUE,)),
        now=NOW,
        site_info_serial=1,
    )

    digest = hashlib.sha256(asked[:-4]).digest()  # header and body, not the credential
    expected = (
        RESOLUTION_RESPONSE[:8]
        + bytes.fromhex("19800000")  # OpFlag: RD set, the body starts with the digest
        + RESOLUTION_RESPONSE[12:20]
        + bytes.fromhex("0000006f")  # BodyLength: 78 + 1 + 32
        + bytes.fromhex("03")  # digest algorithm: SHA-256 (CNRI, protocol 2.7 and later)
        + digest
        + RESOLUTION_RESPONSE[24:]
    )
    assert payload == expected


def test_clients_before_protocol_2_7_get_a_sha1_digest() -> None:
    envelope = bytearray(ENVELOPE)
    envelope[3] = 6  # suggested version 2.6
    asked = with_flags(RESOLUTION_REQUEST, "19800000")
    message = decode_request(Envelope.decode(bytes(envelope)), asked)

    payload = encode_response(
        message, ResponseCode.HANDLE_NOT_FOUND, ErrorResponse(message="not found"), now=NOW
    )

    assert payload[24:45] == bytes.fromhex("02") + hashlib.sha1(asked[:-4]).digest()


def test_a_challenge_always_carries_the_request_digest() -> None:
    nonce = bytes(range(16))

    payload = encode_response(
        request(), ResponseCode.AUTHENTICATION_NEEDED, ChallengeResponse(nonce=nonce), now=NOW
    )

    expected = (
        bytes.fromhex(
            "00000001"  # OpCode: copied
            "00000192"  # ResponseCode: 402, RC_AUTHENTICATION_NEEDED
            "19800000"  # OpFlag: RD set although the request did not ask (CNRI)
            "ffff0000"  # SiteInfoSerialNumber, RecursionCount, reserved
            "6b4a7ac0"  # ExpirationTime
            "00000035"  # BodyLength: 1 + 32 + 4 + 16
            "03"  # RequestDigest: SHA-256 ...
        )
        + hashlib.sha256(RESOLUTION_REQUEST[:-4]).digest()  # ... of the request
        + bytes.fromhex("00000010")  # Nonce: 16 bytes (RFC 3652 §3.5.1)
        + nonce
        + bytes.fromhex("00000000")  # no credential
    )
    assert payload == expected


def test_a_response_with_a_digest_decodes_and_matches_its_request() -> None:
    asked = with_flags(RESOLUTION_REQUEST, "19800000")
    message = decode_request(Envelope.decode(ENVELOPE), asked)
    payload = encode_response(
        message, ResponseCode.HANDLE_NOT_FOUND, ErrorResponse(message="not found"), now=NOW
    )
    framed = tcp_message(reply_envelope(message.envelope), payload)

    response = decode_response(Envelope.decode(framed), framed[20:])

    assert response.request_digest is not None
    assert response.request_digest.algorithm == DigestAlgorithm.SHA256
    assert response.request_digest.matches(asked[:-4])
    assert response.body == ErrorResponse(message="not found")
    assert response.header.expiration == NOW + 43_200


def test_cnri_old_digest_form_is_length_prefixed() -> None:
    digest = RequestDigest(algorithm=DigestAlgorithm.MD5_OLD_FORMAT, digest=bytes(16))
    w = Writer()
    digest.write(w)

    assert w.getvalue() == bytes.fromhex("00000010") + bytes(16)  # length 16, then the MD5
    assert RequestDigest.read(Reader(w.getvalue(), "test")) == digest
