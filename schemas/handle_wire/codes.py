"""The numbers of the Handle protocol: opcodes, response codes, op flags, digest algorithms.

Each number is checked against RFC 3652 and against the constants of the CNRI client
(``net.handle:handle-client`` 9.3.1, ``AbstractMessage``, ``Encoder``, ``Common``),
which is what clients run. Where the two differ the CNRI meaning wins and the RFC name
is given in the comment.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag


class OpCode(IntEnum):
    """RFC 3652 §2.2.2.1 <OpCode>; CNRI ``AbstractMessage.OC_*``."""

    RESERVED = 0
    RESOLUTION = 1
    GET_SITE_INFO = 2
    CREATE_HANDLE = 100
    DELETE_HANDLE = 101
    ADD_VALUE = 102
    REMOVE_VALUE = 103
    MODIFY_VALUE = 104
    LIST_HANDLES = 105
    # RFC 3652 §2.2.2.1 OC_LIST_NA; the CNRI 9.3.1 client has no 106 and lists prefixes
    # with LIST_HOMED_NAS (302) instead.
    LIST_NAS = 106
    CHALLENGE_RESPONSE = 200  # CNRI OC_RESPONSE_TO_CHALLENGE
    VERIFY_RESPONSE = 201  # CNRI OC_VERIFY_CHALLENGE
    # RFC 3652 §2.2.2.1 reserves 300-399 for server administration; CNRI uses these:
    HOME_NA = 300
    UNHOME_NA = 301
    LIST_HOMED_NAS = 302
    SESSION_SETUP = 400
    SESSION_TERMINATE = 401
    SESSION_EXCHANGEKEY = 402
    # CNRI replication between servers of one site (not in the RFC)
    GET_NEXT_TXN_ID = 1000
    RETRIEVE_TXN_LOG = 1001
    DUMP_HANDLES = 1002
    BACKUP_SERVER = 1003


class ResponseCode(IntEnum):
    """RFC 3652 §2.2.2.2 <ResponseCode>; CNRI ``AbstractMessage.RC_*``.

    The RFC's RC_TRYING/RC_FORWARDED/RC_QUEUED (900-902) are left out on purpose: the
    CNRI client throws "Unknown responseCode" on them.
    """

    RESERVED = 0  # every request carries 0
    SUCCESS = 1
    ERROR = 2
    SERVER_TOO_BUSY = 3
    PROTOCOL_ERROR = 4
    OPERATION_NOT_SUPPORTED = 5  # RFC RC_OPERATION_DENIED
    RECURSION_COUNT_TOO_HIGH = 6  # RFC RC_RECUR_LIMIT_EXCEEDED
    SERVER_READ_ONLY = 7  # CNRI RC_SERVER_BACKUP, "server backup/maintain"; not in the RFC
    HANDLE_NOT_FOUND = 100
    HANDLE_ALREADY_EXISTS = 101
    INVALID_HANDLE = 102
    VALUES_NOT_FOUND = 200
    VALUE_ALREADY_EXISTS = 201
    INVALID_VALUE = 202
    EXPIRED_SITE_INFO = 300  # CNRI RC_OUT_OF_DATE_SITE_INFO
    SERVER_NOT_RESP = 301
    SERVICE_REFERRAL = 302
    PREFIX_REFERRAL = 303  # RFC RC_NA_DELEGATE
    INVALID_ADMIN = 400  # RFC RC_NOT_AUTHORIZED
    INSUFFICIENT_PERMISSIONS = 401  # RFC RC_ACCESS_DENIED
    AUTHENTICATION_NEEDED = 402
    AUTHENTICATION_FAILED = 403
    INVALID_CREDENTIAL = 404
    AUTHEN_TIMEOUT = 405
    UNABLE_TO_AUTHENTICATE = 406  # CNRI RC_AUTHEN_ERROR
    SESSION_TIMEOUT = 500
    SESSION_FAILED = 501
    # 502-504 mean different things in the RFC (RC_NO_SESSION_KEY, RC_SESSION_NO_SUPPORT,
    # RC_SESSION_KEY_INVALID); these are the CNRI meanings clients decode.
    INVALID_SESSION_KEY = 502
    NEED_RSAKEY_FOR_SESSIONEXCHANGE = 503
    INVALID_SESSIONSETUP_REQUEST = 504
    SESSION_MESSAGE_REJECTED = 505  # CNRI replay defence; not in the RFC


class OpFlag(IntFlag):
    """RFC 3652 §2.2.2.3 <OpFlag> bits (bit 0 is the most significant); CNRI ``MSG_FLAG_*``."""

    AUTHORITATIVE = 0x8000_0000  # AT
    CERTIFY = 0x4000_0000  # CT
    ENCRYPT = 0x2000_0000  # ENC
    RECURSIVE = 0x1000_0000  # REC
    CACHE_CERTIFY = 0x0800_0000  # CA
    CONTINUOUS = 0x0400_0000  # CN
    KEEP_ALIVE = 0x0200_0000  # KC
    PUBLIC_ONLY = 0x0100_0000  # PO
    RETURN_REQUEST_DIGEST = 0x0080_0000  # RD
    # CNRI additions after the RFC (``Encoder.MSG_FLAG_OVRW``, ``_MINT``, ``_DNRF``)
    OVERWRITE_WHEN_EXISTS = 0x0040_0000
    MINT_NEW_SUFFIX = 0x0020_0000
    DO_NOT_REFER = 0x0010_0000


class DigestAlgorithm(IntEnum):
    """The octet before a <RequestDigest> (RFC 3652 §2.2.3): 1 MD5, 2 SHA-1.

    SHA-256 (3) is the CNRI extension (``Common.HASH_CODE_SHA256``) that CNRI servers
    send to clients of protocol 2.7 and later. 0 is CNRI's pre-2.1 form, where the
    digest follows as a length-prefixed octet string instead of a fixed-size one.
    """

    MD5_OLD_FORMAT = 0
    MD5 = 1
    SHA1 = 2
    SHA256 = 3


class ServiceType(IntEnum):
    """<ServiceType> of a server interface in HS_SITE (RFC 3651 §3.2.2); CNRI ``Interface.ST_*``."""

    OUT_OF_SERVICE = 0
    ADMIN = 1
    QUERY = 2
    ADMIN_AND_QUERY = 3


class TransportProtocol(IntEnum):
    """<TransmissionProtocol> of a server interface (RFC 3651 §3.2.2); CNRI ``Interface.SP_*``."""

    UDP = 0
    TCP = 1
    HTTP = 2
    HTTPS = 3


class HashOption(IntEnum):
    """<HashOption> of HS_SITE: how a handle picks one server of a site (RFC 3651 §3.2.2)."""

    BY_PREFIX = 0
    BY_SUFFIX = 1
    BY_HANDLE = 2  # CNRI HASH_TYPE_BY_ALL, its default


class TtlType(IntEnum):
    """<TTLType> of a handle value (RFC 3652 §3.2.2): 0 relative seconds, 1 absolute time."""

    RELATIVE = 0
    ABSOLUTE = 1
