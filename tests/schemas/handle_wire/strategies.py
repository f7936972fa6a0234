"""Hypothesis strategies for Handle messages: every body, within the codec's caps."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import strategies as st

from schemas.handle_wire import (
    AddValueRequest,
    ChallengeAnswerRequest,
    ChallengeResponse,
    CreateHandleRequest,
    CreateHandleResponse,
    DeleteHandleRequest,
    DigestAlgorithm,
    Envelope,
    ErrorResponse,
    GenericRequest,
    GenericResponse,
    GetSiteInfoRequest,
    HandleValue,
    Header,
    Interface,
    ListHandlesRequest,
    ListHandlesResponse,
    ListNAsRequest,
    Message,
    ModifyValueRequest,
    OpCode,
    RemoveValueRequest,
    RequestBody,
    RequestDigest,
    ResolutionRequest,
    ResolutionResponse,
    ResponseBody,
    ResponseCode,
    ServerInfo,
    ServiceReferral,
    SessionExchangeKeyRequest,
    SessionSetupRequest,
    SiteInfo,
    SiteInfoResponse,
    VerifyResponseRequest,
    VerifyResponseResponse,
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
i32 = st.integers(-0x8000_0000, 0x7FFF_FFFF)
handles = st.text(max_size=40).map(lambda text: text.encode("utf-8"))
type_names = st.sampled_from(
    [b"URL", b"EMAIL", b"HS_ADMIN", b"HS_SITE", b"10320/loc", "类型".encode()]
)
blobs = st.binary(max_size=64)
indexes = st.lists(u32, max_size=6).map(tuple)

values = st.builds(
    HandleValue,
    index=u32,
    type=type_names,
    data=blobs,
    ttl_type=u8,
    ttl=i32,
    timestamp=u32,
    admin_read=st.booleans(),
    admin_write=st.booleans(),
    public_read=st.booleans(),
    public_write=st.booleans(),
    references=st.lists(st.tuples(handles, u32), max_size=3).map(tuple),
)
value_lists = st.lists(values, max_size=4).map(tuple)

addresses = st.one_of(
    st.builds(IPv4Address, u32),
    # an IPv6 address whose first 12 octets are zero reads back as IPv4, as in CNRI
    st.builds(IPv6Address, st.integers(1 << 32, (1 << 128) - 1)),
)
sites = st.builds(
    SiteInfo,
    version=u16,
    major_version=u8,
    minor_version=u8,
    serial_number=u16,
    is_primary=st.booleans(),
    multi_primary=st.booleans(),
    hash_option=u8,
    hash_filter=blobs,
    attributes=st.lists(st.tuples(blobs, blobs), max_size=3).map(tuple),
    servers=st.lists(
        st.builds(
            ServerInfo,
            server_id=u32,
            address=addresses,
            public_key=blobs,
            interfaces=st.lists(
                st.builds(Interface, service_type=u8, protocol=u8, port=u32), max_size=3
            ).map(tuple),
        ),
        max_size=3,
    ).map(tuple),
)

digests = st.one_of(
    st.builds(
        RequestDigest,
        algorithm=st.just(DigestAlgorithm.MD5),
        digest=st.binary(min_size=16, max_size=16),
    ),
    st.builds(
        RequestDigest,
        algorithm=st.just(DigestAlgorithm.SHA1),
        digest=st.binary(min_size=20, max_size=20),
    ),
    st.builds(
        RequestDigest,
        algorithm=st.just(DigestAlgorithm.SHA256),
        digest=st.binary(min_size=32, max_size=32),
    ),
    st.builds(RequestDigest, algorithm=st.just(DigestAlgorithm.MD5_OLD_FORMAT), digest=blobs),
)

session_setups = st.one_of(
    st.builds(
        SessionSetupRequest,
        key_exchange_mode=st.sampled_from([1, 4]),
        timeout=u32,
        identity_handle=handles,
        identity_index=u32,
        public_key=blobs,
    ),
    st.builds(
        SessionSetupRequest,
        key_exchange_mode=st.just(3),
        timeout=u32,
        identity_handle=handles,
        identity_index=u32,
        exchange_key_handle=handles,
        exchange_key_index=u32,
    ),
    st.builds(
        SessionSetupRequest,
        key_exchange_mode=st.just(2),
        timeout=u32,
        identity_handle=handles,
        identity_index=u32,
    ),
)

# (opcode, body) pairs a client may send
request_bodies: st.SearchStrategy[tuple[OpCode, RequestBody]] = st.one_of(
    st.tuples(
        st.just(OpCode.RESOLUTION),
        st.builds(
            ResolutionRequest,
            handle=handles,
            indexes=indexes,
            types=st.lists(type_names, max_size=4).map(tuple),
        ),
    ),
    st.tuples(st.just(OpCode.GET_SITE_INFO), st.builds(GetSiteInfoRequest, handle=handles)),
    st.tuples(
        st.just(OpCode.CREATE_HANDLE),
        st.builds(CreateHandleRequest, handle=handles, values=value_lists),
    ),
    st.tuples(st.just(OpCode.DELETE_HANDLE), st.builds(DeleteHandleRequest, handle=handles)),
    st.tuples(
        st.just(OpCode.ADD_VALUE), st.builds(AddValueRequest, handle=handles, values=value_lists)
    ),
    st.tuples(
        st.just(OpCode.MODIFY_VALUE),
        st.builds(ModifyValueRequest, handle=handles, values=value_lists),
    ),
    st.tuples(
        st.just(OpCode.REMOVE_VALUE),
        st.builds(RemoveValueRequest, handle=handles, indexes=indexes),
    ),
    st.tuples(st.just(OpCode.LIST_HANDLES), st.builds(ListHandlesRequest, handle=handles)),
    st.tuples(
        st.sampled_from([OpCode.LIST_NAS, OpCode.LIST_HOMED_NAS]),
        st.builds(ListNAsRequest, handle=handles),
    ),
    st.tuples(
        st.just(OpCode.CHALLENGE_RESPONSE),
        st.builds(
            ChallengeAnswerRequest,
            auth_type=st.sampled_from([b"HS_PUBKEY", b"HS_SECKEY"]),
            key_handle=handles,
            key_index=u32,
            signed_response=blobs,
        ),
    ),
    st.tuples(
        st.just(OpCode.VERIFY_RESPONSE),
        st.builds(
            VerifyResponseRequest,
            key_handle=handles,
            key_index=u32,
            nonce=blobs,
            request_digest=digests,
            signed_response=blobs,
        ),
    ),
    st.tuples(st.just(OpCode.SESSION_SETUP), session_setups),
    st.tuples(
        st.just(OpCode.SESSION_EXCHANGEKEY),
        st.builds(SessionExchangeKeyRequest, encrypted_key=st.one_of(st.none(), blobs)),
    ),
    st.tuples(
        st.sampled_from(
            [
                OpCode.SESSION_TERMINATE,
                OpCode.HOME_NA,
                OpCode.UNHOME_NA,
                OpCode.GET_NEXT_TXN_ID,
                OpCode.BACKUP_SERVER,
            ]
        ),
        st.builds(GenericRequest, handle=handles),
    ),
)

error_codes = st.sampled_from(
    [
        code
        for code in ResponseCode
        if code
        not in (
            ResponseCode.RESERVED,
            ResponseCode.SUCCESS,
            ResponseCode.SERVICE_REFERRAL,
            ResponseCode.PREFIX_REFERRAL,
            ResponseCode.AUTHENTICATION_NEEDED,
        )
    ]
)
error_bodies = st.builds(
    ErrorResponse,
    message=st.text(max_size=40),
    indexes=indexes,
)

# (opcode, response code, body) triples a server may send
response_bodies: st.SearchStrategy[tuple[OpCode, ResponseCode, ResponseBody]] = st.one_of(
    st.tuples(
        st.just(OpCode.RESOLUTION),
        st.just(ResponseCode.SUCCESS),
        st.builds(ResolutionResponse, handle=handles, values=value_lists),
    ),
    st.tuples(
        st.just(OpCode.GET_SITE_INFO),
        st.just(ResponseCode.SUCCESS),
        st.builds(SiteInfoResponse, site=sites),
    ),
    st.tuples(st.sampled_from(list(OpCode)), error_codes, error_bodies),
    st.tuples(
        st.just(OpCode.RESOLUTION),
        st.sampled_from([ResponseCode.SERVICE_REFERRAL, ResponseCode.PREFIX_REFERRAL]),
        st.builds(ServiceReferral, handle=handles, values=st.one_of(st.none(), value_lists)),
    ),
    st.tuples(
        st.sampled_from(list(OpCode)),
        st.just(ResponseCode.AUTHENTICATION_NEEDED),
        st.builds(ChallengeResponse, nonce=blobs),
    ),
    st.tuples(
        st.just(OpCode.VERIFY_RESPONSE),
        st.just(ResponseCode.SUCCESS),
        st.builds(VerifyResponseResponse, valid=st.booleans()),
    ),
    st.tuples(
        st.just(OpCode.CREATE_HANDLE),
        st.just(ResponseCode.SUCCESS),
        st.builds(CreateHandleResponse, handle=st.one_of(st.none(), handles)),
    ),
    st.tuples(
        st.sampled_from([OpCode.LIST_HANDLES, OpCode.LIST_NAS, OpCode.LIST_HOMED_NAS]),
        st.just(ResponseCode.SUCCESS),
        st.builds(ListHandlesResponse, handles=st.lists(handles, max_size=4).map(tuple)),
    ),
    st.tuples(
        st.sampled_from(
            [OpCode.DELETE_HANDLE, OpCode.ADD_VALUE, OpCode.REMOVE_VALUE, OpCode.MODIFY_VALUE]
        ),
        st.just(ResponseCode.SUCCESS),
        st.just(GenericResponse()),
    ),
)

envelopes = st.builds(
    Envelope,
    major=st.just(2),
    minor=u8,
    suggested_major=st.integers(0, 3),
    suggested_minor=u8,
    session_id=u32,
    request_id=u32,
)
flags = u32
credentials = st.one_of(st.none(), st.binary(min_size=1, max_size=64))


@st.composite
def requests(draw: st.DrawFn) -> Message:
    opcode, body = draw(request_bodies)
    header = Header(
        opcode=opcode,
        op_flags=draw(flags),
        site_info_serial=draw(u16),
        recursion_count=draw(u8),
        expiration=draw(u32),
    )
    return Message(envelope=draw(envelopes), header=header, body=body, credential=draw(credentials))


@st.composite
def responses(draw: st.DrawFn) -> Message:
    opcode, code, body = draw(response_bodies)
    header = Header(
        opcode=opcode,
        response_code=code,
        op_flags=draw(flags),
        site_info_serial=draw(u16),
        recursion_count=draw(u8),
        expiration=draw(u32),
    )
    envelope = draw(envelopes)
    if code == ResponseCode.PREFIX_REFERRAL:  # a referral body only from protocol 2.5 on
        envelope = Envelope(major=2, minor=draw(st.integers(5, 0xFF)))
    return Message(
        envelope=envelope,
        header=header,
        body=body,
        request_digest=draw(st.one_of(st.none(), digests)),
        credential=draw(credentials),
    )
