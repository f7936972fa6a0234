/*
 * HdlProbe: drives a Handle server (RFC 3651/3652) with CNRI's own client library
 * (net.handle:handle-client, see pom.xml), so idres is tested against the reference
 * client rather than against our reading of the RFCs. Built and run by client.sh.
 *
 *   resolve  --tcp|--udp HOST PORT HANDLE [--index N]... [--type T]... [--no-recursion] [--digest]
 *   siteinfo --tcp|--udp HOST PORT
 *   create|delete|add|modify|remove --tcp|--udp HOST PORT HANDLE --admin ADMIN_HANDLE:INDEX
 *            --key PRIVATE_KEY_FILE [--value INDEX:TYPE:DATA]... [--index N]... [--digest]
 *   list     --tcp|--udp HOST PORT PREFIX_HANDLE [--admin ADMIN_HANDLE:INDEX --key PRIVATE_KEY_FILE] [--digest]
 *   keygen-rsa OUT_PRIVATE OUT_PUBLIC
 *
 * resolve and siteinfo go straight to HOST:PORT through HandleResolver.sendHdlTcpRequest /
 * sendHdlUdpRequest: no global resolution, no root servers, no sessions, no cache.
 *
 * The admin commands go as an admin tool sends them: HandleResolver.sendRequestToServer
 * with a PublicKeyAuthenticationInfo, so the library itself answers the server's
 * challenge (RC 402 -> OC 200 with the signed nonce and request digest). The ServerInfo
 * is built for HOST:PORT (one admin+query interface on the given transport), not taken
 * from the site's HS_SITE, so the request goes where the test points it. The resolver
 * has no session tracker (setSessionTracker(null)): no OC 400 session setup.
 *   --admin    the admin's HS_PUBKEY value, e.g. 0.NA/88.100:300 (split at the last ':')
 *   --key      its private key: PKCS#8, PEM ("BEGIN PRIVATE KEY") or DER, unencrypted.
 *              CNRI signs challenges with "SHA256with" + the key's algorithm, so only RSA
 *              and DSA keys can answer; an EC or Ed25519 key loads, and the library then
 *              fails to sign (exit 2, INTERNAL_ERROR "Unable to sign challenge").
 *   --value    INDEX:TYPE:DATA for create, add and modify. DATA is UTF-8 text, or
 *              hex:HEX, file:PATH (the file's bytes, e.g. an HS_PUBKEY from keygen-rsa),
 *              admin:HANDLE:INDEX (an HS_ADMIN record with every permission), text:TEXT.
 *              Values get the library's defaults (TTL 86400, admin read/write, public
 *              read) and the current time as their timestamp, as the admin tools set it.
 *   --index    for remove: the indexes to remove.
 *   --digest   ask for the request digest in responses (RD), as with resolve.
 * list sends a ListHandlesRequest (OC 105) for PREFIX_HANDLE (e.g. 0.NA/88.100) as the
 * library's own HDLList and ListHandlesUtil do: HandleResolver.sendRequestToServer with a
 * ResponseMessageCallback, so the library answers the challenge (with --admin and --key;
 * without them it throws UNABLE_TO_AUTHENTICATE on the server's RC 402) and reads every
 * message of the answer until one without the continuation flag. It prints the last
 * response as the other commands do, with "handles" (every handle of every
 * ListHandlesResponse, in order) and "messages" (how many the callback was given).
 * keygen-rsa writes a fresh 2048-bit RSA pair: OUT_PRIVATE (PKCS#8 PEM, what --key reads),
 * OUT_PUBLIC (the Handle encoding, Util.getBytesFromPublicKey: HS_PUBKEY value data) and
 * OUT_PUBLIC.spki.der (the same key as DER SubjectPublicKeyInfo).
 *
 * stdout is always ONE JSON object. Exit codes:
 *   0  a response arrived (whatever its responseCode)
 *   1  usage error ({"usageError": ...})
 *   2  the library threw HandleException ({"exception": code, "exceptionName": ..., "message": ...})
 *   3  the library crashed on what the server sent (an unchecked exception while decoding:
 *      the CNRI decoder does not bounds-check, so malformed bytes surface this way)
 */

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import java.io.IOException;
import java.net.InetAddress;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.PrivateKey;
import java.security.interfaces.RSAPublicKey;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Set;
import net.handle.hdllib.AbstractMessage;
import net.handle.hdllib.AbstractRequest;
import net.handle.hdllib.AbstractResponse;
import net.handle.hdllib.AddValueRequest;
import net.handle.hdllib.AdminRecord;
import net.handle.hdllib.Attribute;
import net.handle.hdllib.Common;
import net.handle.hdllib.CreateHandleRequest;
import net.handle.hdllib.DeleteHandleRequest;
import net.handle.hdllib.Encoder;
import net.handle.hdllib.ErrorResponse;
import net.handle.hdllib.GenericRequest;
import net.handle.hdllib.GetSiteInfoResponse;
import net.handle.hdllib.HandleException;
import net.handle.hdllib.HandleResolver;
import net.handle.hdllib.HandleValue;
import net.handle.hdllib.Interface;
import net.handle.hdllib.ListHandlesRequest;
import net.handle.hdllib.ListHandlesResponse;
import net.handle.hdllib.ModifyValueRequest;
import net.handle.hdllib.PublicKeyAuthenticationInfo;
import net.handle.hdllib.RemoveValueRequest;
import net.handle.hdllib.ResolutionRequest;
import net.handle.hdllib.ResolutionResponse;
import net.handle.hdllib.ServerInfo;
import net.handle.hdllib.ServiceReferralResponse;
import net.handle.hdllib.SiteInfo;
import net.handle.hdllib.Util;
import net.handle.hdllib.ValueReference;

public final class HdlProbe {
    static final int EXIT_RESPONSE = 0;
    static final int EXIT_USAGE = 1;
    static final int EXIT_HANDLE_EXCEPTION = 2;
    static final int EXIT_CRASH = 3;

    // A dead server must fail in about 3 s: TCP connect and read each wait 3 s at most;
    // UDP sends three times and waits 0.5 + 1 + 1.5 s (the library's own default schedule).
    static final int TCP_TIMEOUT_MS = 3000;
    static final int[] UDP_RETRY_SCHEDULE_MS = {500, 1000, 1500};

    static final String USAGE = String.join("\n",
        "usage: HdlProbe resolve  --tcp|--udp HOST PORT HANDLE [--index N]... [--type T]... [--no-recursion] [--digest]",
        "       HdlProbe siteinfo --tcp|--udp HOST PORT",
        "       HdlProbe create|delete|add|modify|remove --tcp|--udp HOST PORT HANDLE --admin ADMIN_HANDLE:INDEX",
        "                --key PRIVATE_KEY_FILE [--value INDEX:TYPE:DATA]... [--index N]... [--digest]",
        "       HdlProbe list --tcp|--udp HOST PORT PREFIX_HANDLE [--admin ADMIN_HANDLE:INDEX --key PRIVATE_KEY_FILE] [--digest]",
        "       HdlProbe keygen-rsa OUT_PRIVATE OUT_PUBLIC");

    static final Gson GSON = new GsonBuilder().serializeNulls().disableHtmlEscaping().create();

    private HdlProbe() {}

    static final class UsageError extends Exception {
        private static final long serialVersionUID = 1L;

        UsageError(String message) {
            super(message);
        }
    }

    public static void main(String[] argv) {
        JsonObject out;
        int status;
        try {
            out = run(argv);
            status = EXIT_RESPONSE;
        } catch (UsageError e) {
            out = new JsonObject();
            out.addProperty("usageError", e.getMessage());
            System.err.println("HdlProbe: " + e.getMessage());
            System.err.println(USAGE);
            status = EXIT_USAGE;
        } catch (HandleException e) {
            out = new JsonObject();
            out.addProperty("exception", e.getCode());
            out.addProperty("exceptionName", HandleException.getCodeStr(e.getCode()));
            out.addProperty("message", e.getMessage());
            out.addProperty("cause", e.getCause() == null ? null : e.getCause().toString());
            status = EXIT_HANDLE_EXCEPTION;
        } catch (RuntimeException e) {
            out = new JsonObject();
            out.add("exception", JsonNull.INSTANCE);
            out.addProperty("crash", e.getClass().getName());
            out.addProperty("message", e.getMessage());
            status = EXIT_CRASH;
        }
        System.out.println(GSON.toJson(out));
        System.out.flush();
        // Exit explicitly: the library may leave non-daemon threads behind.
        System.exit(status);
    }

    static JsonObject run(String[] argv) throws UsageError, HandleException {
        if (argv.length == 0) throw new UsageError("no command");
        Args args = Args.parse(argv);
        switch (args.command) {
            case "resolve":
                return resolve(args);
            case "siteinfo":
                return siteInfo(args);
            case "create":
            case "delete":
            case "add":
            case "modify":
            case "remove":
                return admin(args);
            case "list":
                return list(args);
            case "keygen-rsa":
                return keygenRsa(args);
            default:
                throw new UsageError("unknown command: " + args.command);
        }
    }

    // ---- the commands ---------------------------------------------------------------

    static JsonObject resolve(Args args) throws UsageError, HandleException {
        args.expectPositional(4, "HOST PORT HANDLE");
        byte[][] types = null;
        if (!args.types.isEmpty()) {
            types = new byte[args.types.size()][];
            for (int i = 0; i < types.length; i++) types[i] = Util.encodeString(args.types.get(i));
        }
        int[] indexes = null;
        if (!args.indexes.isEmpty()) {
            indexes = args.indexes.stream().mapToInt(Integer::intValue).toArray();
        }
        ResolutionRequest req = new ResolutionRequest(Util.encodeString(args.positional.get(3)), types, indexes, null);
        req.recursive = !args.noRecursion;
        req.returnRequestDigest = args.digest;
        return describe(send(args, req));
    }

    static JsonObject siteInfo(Args args) throws UsageError, HandleException {
        args.expectPositional(3, "HOST PORT");
        if (!args.indexes.isEmpty() || !args.types.isEmpty() || args.noRecursion || args.digest) {
            throw new UsageError("siteinfo takes no resolution options");
        }
        // The handle "/" (Common.BLANK_HANDLE) is what the library's own tools send
        // (net.handle.apps.tools.GetSiteInfo).
        GenericRequest req = new GenericRequest(Common.BLANK_HANDLE, AbstractMessage.OC_GET_SITE_INFO, null);
        return describe(send(args, req));
    }

    static AbstractResponse send(Args args, AbstractRequest req) throws UsageError, HandleException {
        InetAddress addr = host(args);
        int port = args.port(args.positional.get(2));
        HandleResolver resolver = newResolver();
        return args.tcp ? resolver.sendHdlTcpRequest(req, addr, port) : resolver.sendHdlUdpRequest(req, addr, port);
    }

    static InetAddress host(Args args) throws UsageError {
        try {
            return InetAddress.getByName(args.positional.get(1));
        } catch (java.net.UnknownHostException e) {
            throw new UsageError("unknown host: " + args.positional.get(1));
        }
    }

    static HandleResolver newResolver() {
        HandleResolver resolver = new HandleResolver();
        // Never refresh root info: the library's default configuration would otherwise
        // start a timer thread on the first request that resolves 0.0/0.0 and 0.NA/0.NA
        // at the global root servers (Configuration.startAutoUpdate).
        resolver.getConfiguration().setAutoUpdateRootInfo(false);
        if (resolver.getConfiguration().isAutoUpdateRootInfo()) {
            throw new IllegalStateException("could not turn off root info auto-update");
        }
        resolver.setTcpTimeout(TCP_TIMEOUT_MS);
        resolver.setUdpRetryScheme(UDP_RETRY_SCHEDULE_MS);
        return resolver;
    }

    // ---- administration -------------------------------------------------------------

    // the commands that take --admin and --key
    static final Set<String> ADMIN_COMMANDS = Set.of("create", "delete", "add", "modify", "remove", "list");

    static JsonObject admin(Args args) throws UsageError, HandleException {
        args.expectPositional(4, "HOST PORT HANDLE --admin ADMIN_HANDLE:INDEX --key FILE");
        if (!args.types.isEmpty() || args.noRecursion) {
            throw new UsageError(args.command + " takes no --type or --no-recursion");
        }
        if (args.admin == null || args.key == null) {
            throw new UsageError(args.command + " needs --admin ADMIN_HANDLE:INDEX and --key FILE");
        }
        boolean takesValues = !args.command.equals("delete") && !args.command.equals("remove");
        if (!takesValues && !args.values.isEmpty()) throw new UsageError(args.command + " takes no --value");
        if (args.command.equals("remove") != !args.indexes.isEmpty()) {
            throw new UsageError("--index is for remove, and remove needs at least one");
        }
        if ((args.command.equals("add") || args.command.equals("modify")) && args.values.isEmpty()) {
            throw new UsageError(args.command + " needs at least one --value");
        }

        PublicKeyAuthenticationInfo auth = authInfo(args);

        HandleValue[] values = new HandleValue[args.values.size()];
        int now = (int) (System.currentTimeMillis() / 1000);
        for (int i = 0; i < values.length; i++) values[i] = parseValue(args.values.get(i), now);
        byte[] handle = Util.encodeString(args.positional.get(3));
        AbstractRequest req;
        switch (args.command) {
            case "create":
                req = new CreateHandleRequest(handle, values, auth);
                break;
            case "delete":
                req = new DeleteHandleRequest(handle, auth);
                break;
            case "add":
                req = new AddValueRequest(handle, values, auth);
                break;
            case "modify":
                req = new ModifyValueRequest(handle, values, auth);
                break;
            default:
                req = new RemoveValueRequest(handle, args.indexes.stream().mapToInt(Integer::intValue).toArray(), auth);
        }
        req.returnRequestDigest = args.digest;
        return describe(adminResolver().sendRequestToServer(req, server(args)));
    }

    static JsonObject list(Args args) throws UsageError, HandleException {
        args.expectPositional(4, "HOST PORT PREFIX_HANDLE [--admin ADMIN_HANDLE:INDEX --key FILE]");
        if (!args.types.isEmpty() || args.noRecursion || !args.indexes.isEmpty() || !args.values.isEmpty()) {
            throw new UsageError("list takes no --type, --no-recursion, --index or --value");
        }
        if ((args.admin == null) != (args.key == null)) throw new UsageError("list takes --admin and --key together");
        PublicKeyAuthenticationInfo auth = args.admin == null ? null : authInfo(args);
        ListHandlesRequest req = new ListHandlesRequest(Util.encodeString(args.positional.get(3)), auth);
        req.returnRequestDigest = args.digest;
        JsonArray handles = new JsonArray();
        int[] messages = { 0 };
        AbstractResponse last = adminResolver().sendRequestToServer(req, server(args), response -> {
            messages[0]++;
            if (response instanceof ListHandlesResponse) {
                for (byte[] handle : ((ListHandlesResponse) response).handles) handles.add(Util.decodeString(handle));
            }
        });
        JsonObject o = describe(last);
        o.add("handles", handles);
        o.addProperty("messages", messages[0]);
        return o;
    }

    static PublicKeyAuthenticationInfo authInfo(Args args) throws UsageError {
        int colon = args.admin.lastIndexOf(':');
        if (colon <= 0) throw new UsageError("--admin wants ADMIN_HANDLE:INDEX, not " + args.admin);
        byte[] adminHandle = Util.encodeString(args.admin.substring(0, colon));
        int adminIndex = parseIndex(args.admin.substring(colon + 1), "--admin");
        return new PublicKeyAuthenticationInfo(adminHandle, adminIndex, loadPrivateKey(args.key));
    }

    /** HOST:PORT as the one server of a site: one admin+query interface on the transport given. */
    static ServerInfo server(Args args) throws UsageError {
        InetAddress addr = host(args);
        ServerInfo server = new ServerInfo();
        server.serverId = 1;
        server.ipAddress = new byte[Common.IP_ADDRESS_LENGTH];
        byte[] raw = addr.getAddress(); // IPv4 goes in the last 4 bytes (ServerInfo.isIPv4)
        System.arraycopy(raw, 0, server.ipAddress, Common.IP_ADDRESS_LENGTH - raw.length, raw.length);
        server.publicKey = new byte[0]; // used only to check certified responses; none asked
        byte protocol = args.tcp ? Interface.SP_HDL_TCP : Interface.SP_HDL_UDP;
        server.interfaces = new Interface[] { new Interface(Interface.ST_ADMIN_AND_QUERY, protocol, args.port(args.positional.get(2))) };
        return server;
    }

    static HandleResolver adminResolver() {
        HandleResolver resolver = newResolver();
        resolver.setSessionTracker(null); // else every admin request first opens a session (OC 400)
        return resolver;
    }

    static int parseIndex(String s, String what) throws UsageError {
        try {
            return Integer.parseInt(s);
        } catch (NumberFormatException e) {
            throw new UsageError(what + " needs a number as its index, not " + s);
        }
    }

    /** INDEX:TYPE:DATA; see the header comment for the forms of DATA. */
    static HandleValue parseValue(String spec, int now) throws UsageError {
        String[] parts = spec.split(":", 3);
        if (parts.length != 3 || parts[1].isEmpty()) throw new UsageError("--value wants INDEX:TYPE:DATA, not " + spec);
        int index = parseIndex(parts[0], "--value");
        String data = parts[2];
        byte[] bytes;
        if (data.startsWith("hex:")) {
            bytes = Util.encodeHexString(data.substring(4));
        } else if (data.startsWith("file:")) {
            try {
                bytes = Files.readAllBytes(Paths.get(data.substring(5)));
            } catch (IOException e) {
                throw new UsageError("cannot read " + data.substring(5) + ": " + e);
            }
        } else if (data.startsWith("admin:")) {
            String ref = data.substring(6);
            int colon = ref.lastIndexOf(':');
            if (colon <= 0) throw new UsageError("admin: wants HANDLE:INDEX, not " + ref);
            boolean all = true;
            AdminRecord admin = new AdminRecord(Util.encodeString(ref.substring(0, colon)), parseIndex(ref.substring(colon + 1), "admin:"),
                all, all, all, all, all, all, all, all, all, all, all, all);
            bytes = Encoder.encodeAdminRecord(admin);
        } else if (data.startsWith("text:")) {
            bytes = Util.encodeString(data.substring(5));
        } else {
            bytes = Util.encodeString(data);
        }
        HandleValue value = new HandleValue(index, Util.encodeString(parts[1]), bytes);
        value.setTimestamp(now);
        return value;
    }

    /** An unencrypted PKCS#8 private key, PEM or DER, of whichever algorithm it holds. */
    static PrivateKey loadPrivateKey(String path) throws UsageError {
        byte[] der;
        try {
            der = Files.readAllBytes(Paths.get(path));
        } catch (IOException e) {
            throw new UsageError("cannot read " + path + ": " + e);
        }
        String text = new String(der, StandardCharsets.ISO_8859_1);
        if (text.contains("-----BEGIN ")) {
            String begin = "-----BEGIN PRIVATE KEY-----";
            String end = "-----END PRIVATE KEY-----";
            int from = text.indexOf(begin);
            int to = text.indexOf(end);
            if (from < 0 || to < from) throw new UsageError(path + ": want an unencrypted PKCS#8 PEM (" + begin + ")");
            try {
                der = Base64.getMimeDecoder().decode(text.substring(from + begin.length(), to));
            } catch (IllegalArgumentException e) {
                throw new UsageError(path + ": bad base64 in the PEM: " + e.getMessage());
            }
        }
        PKCS8EncodedKeySpec spec = new PKCS8EncodedKeySpec(der);
        for (String algorithm : new String[] { "RSA", "DSA", "EC", "Ed25519" }) {
            try {
                return KeyFactory.getInstance(algorithm).generatePrivate(spec);
            } catch (GeneralSecurityException e) {
                // not this algorithm; try the next
            }
        }
        throw new UsageError(path + ": not a PKCS#8 RSA, DSA, EC or Ed25519 private key");
    }

    static JsonObject keygenRsa(Args args) throws UsageError, HandleException {
        args.expectPositional(3, "OUT_PRIVATE OUT_PUBLIC");
        if (args.transportGiven || !args.indexes.isEmpty() || !args.types.isEmpty() || args.noRecursion || args.digest) {
            throw new UsageError("keygen-rsa takes no options");
        }
        KeyPair pair;
        try {
            KeyPairGenerator generator = KeyPairGenerator.getInstance("RSA");
            generator.initialize(2048);
            pair = generator.generateKeyPair();
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("no RSA key generator", e);
        }
        String pem = "-----BEGIN PRIVATE KEY-----\n"
            + Base64.getMimeEncoder(64, new byte[] { '\n' }).encodeToString(pair.getPrivate().getEncoded())
            + "\n-----END PRIVATE KEY-----\n";
        byte[] handleEncoding = Util.getBytesFromPublicKey(pair.getPublic());
        byte[] spki = pair.getPublic().getEncoded(); // X.509 SubjectPublicKeyInfo, DER
        String privatePath = args.positional.get(1);
        String publicPath = args.positional.get(2);
        String spkiPath = publicPath + ".spki.der";
        try {
            Files.write(Paths.get(privatePath), pem.getBytes(StandardCharsets.US_ASCII));
            Files.write(Paths.get(publicPath), handleEncoding);
            Files.write(Paths.get(spkiPath), spki);
        } catch (IOException e) {
            throw new UsageError("cannot write the key files: " + e);
        }
        JsonObject o = new JsonObject();
        o.addProperty("privateKey", privatePath);
        o.addProperty("publicKey", publicPath);
        o.addProperty("publicKeySpki", spkiPath);
        o.addProperty("modulusBits", ((RSAPublicKey) pair.getPublic()).getModulus().bitLength());
        o.addProperty("publicKeyHex", hexOrNull(handleEncoding));
        return o;
    }

    // ---- responses as JSON ----------------------------------------------------------

    static JsonObject describe(AbstractResponse resp) throws HandleException {
        JsonObject o = new JsonObject();
        o.addProperty("responseCode", resp.responseCode);
        o.addProperty("responseName", AbstractMessage.getResponseCodeMessage(resp.responseCode));
        o.addProperty("opCode", resp.opCode);
        o.addProperty("responseClass", resp.getClass().getSimpleName());
        // Envelope: the version the server answered with and the one it suggests.
        o.addProperty("protocolVersion", resp.majorProtocolVersion + "." + resp.minorProtocolVersion);
        o.addProperty("suggestedVersion", resp.suggestMajorProtocolVersion + "." + resp.suggestMinorProtocolVersion);
        o.addProperty("requestId", resp.requestId);
        o.addProperty("sessionId", resp.sessionId);
        // Header.
        o.addProperty("siteInfoSerial", resp.siteInfoSerial);
        o.addProperty("recursionCount", resp.recursionCount);
        o.addProperty("expiration", resp.expiration);
        // The resolver's full path (sendRequestToInterface) refuses an expired response
        // (HandleException GOT_EXPIRED_MESSAGE); the raw send used here does not, so say it.
        o.addProperty("expired", resp.expiration < System.currentTimeMillis() / 1000);
        JsonObject flags = new JsonObject();
        flags.addProperty("authoritative", resp.authoritative);
        flags.addProperty("certify", resp.certify);
        flags.addProperty("encrypt", resp.encrypt);
        flags.addProperty("recursive", resp.recursive);
        flags.addProperty("cacheCertify", resp.cacheCertify);
        flags.addProperty("continuous", resp.continuous);
        flags.addProperty("keepAlive", resp.keepAlive);
        flags.addProperty("publicOnly", resp.ignoreRestrictedValues);
        flags.addProperty("returnRequestDigest", resp.returnRequestDigest);
        flags.addProperty("doNotRefer", resp.doNotRefer);
        o.add("flags", flags);
        o.addProperty("rdHashType", resp.requestDigest == null ? null : (int) resp.rdHashType);
        o.addProperty("requestDigest", hexOrNull(resp.requestDigest));
        o.addProperty("signatureLength", resp.signature == null ? null : resp.signature.length);

        if (resp instanceof ResolutionResponse) {
            ResolutionResponse r = (ResolutionResponse) resp;
            o.addProperty("handle", Util.decodeString(r.handle));
            o.add("values", values(r.getHandleValues()));
        } else if (resp instanceof ServiceReferralResponse) {
            // RC 302 (service referral) and 303 (prefix referral); values may be absent.
            ServiceReferralResponse r = (ServiceReferralResponse) resp;
            o.addProperty("handle", Util.decodeString(r.handle));
            HandleValue[] vals = r.getHandleValues();
            o.add("values", vals == null ? JsonNull.INSTANCE : values(vals));
        } else if (resp instanceof GetSiteInfoResponse) {
            o.add("site", site(((GetSiteInfoResponse) resp).siteInfo));
        } else if (resp instanceof ErrorResponse) {
            byte[] message = ((ErrorResponse) resp).message;
            o.addProperty("message", message == null ? null : utf8OrNull(message));
            o.addProperty("messageHex", hexOrNull(message));
        }
        return o;
    }

    static JsonArray values(HandleValue[] vals) {
        JsonArray array = new JsonArray();
        for (HandleValue v : vals) {
            JsonObject o = new JsonObject();
            o.addProperty("index", v.getIndex());
            o.addProperty("type", Util.decodeString(v.getType()));
            o.addProperty("data", utf8OrNull(v.getData()));
            o.addProperty("dataHex", hexOrNull(v.getData()));
            o.addProperty("ttlType", v.getTTLType());
            o.addProperty("ttl", v.getTTL());
            o.addProperty("timestamp", v.getTimestamp());
            o.addProperty("adminRead", v.getAdminCanRead());
            o.addProperty("adminWrite", v.getAdminCanWrite());
            o.addProperty("publicRead", v.getAnyoneCanRead());
            o.addProperty("publicWrite", v.getAnyoneCanWrite());
            JsonArray refs = new JsonArray();
            ValueReference[] references = v.getReferences();
            if (references != null) {
                for (ValueReference ref : references) {
                    JsonArray pair = new JsonArray();
                    pair.add(Util.decodeString(ref.handle));
                    pair.add(ref.index);
                    refs.add(pair);
                }
            }
            o.add("references", refs);
            // Typed data as the library itself decodes it (Encoder.decode*Record)
            String type = Util.decodeString(v.getType());
            try {
                if (type.equals("HS_SITE")) {
                    SiteInfo site = new SiteInfo();
                    Encoder.decodeSiteInfoRecord(v.getData(), 0, site);
                    o.add("site", site(site));
                } else if (type.equals("HS_ADMIN")) {
                    AdminRecord admin = new AdminRecord();
                    Encoder.decodeAdminRecord(v.getData(), 0, admin);
                    JsonObject ao = new JsonObject();
                    ao.addProperty("handle", Util.decodeString(admin.adminId));
                    ao.addProperty("index", admin.adminIdIndex);
                    JsonArray perms = new JsonArray();
                    for (boolean p : admin.perms) perms.add(p);
                    ao.add("perms", perms);
                    o.add("admin", ao);
                }
            } catch (HandleException e) {
                o.addProperty("decodeError", e.getMessage());
            }
            array.add(o);
        }
        return array;
    }

    static JsonObject site(SiteInfo s) {
        JsonObject o = new JsonObject();
        o.addProperty("dataFormatVersion", s.dataFormatVersion);
        o.addProperty("protocolVersion", s.majorProtocolVersion + "." + s.minorProtocolVersion);
        o.addProperty("serial", s.serialNumber);
        o.addProperty("primary", s.isPrimary);
        o.addProperty("multiPrimary", s.multiPrimary);
        o.addProperty("hashOption", s.hashOption);
        o.addProperty("hashFilterHex", hexOrNull(s.hashFilter));
        JsonArray attributes = new JsonArray();
        if (s.attributes != null) {
            for (Attribute a : s.attributes) {
                JsonObject ao = new JsonObject();
                ao.addProperty("name", Util.decodeString(a.name));
                ao.addProperty("value", utf8OrNull(a.value));
                attributes.add(ao);
            }
        }
        o.add("attributes", attributes);
        JsonArray servers = new JsonArray();
        if (s.servers != null) {
            for (ServerInfo server : s.servers) {
                JsonObject so = new JsonObject();
                so.addProperty("serverId", server.serverId);
                so.addProperty("address", server.getAddressString());
                so.addProperty("addressHex", hexOrNull(server.ipAddress));
                so.addProperty("publicKeyHex", hexOrNull(server.publicKey));
                JsonArray interfaces = new JsonArray();
                for (Interface i : server.interfaces) {
                    JsonObject io = new JsonObject();
                    io.addProperty("type", i.type);
                    io.addProperty("typeName", Interface.typeName(i.type));
                    io.addProperty("protocol", i.protocol);
                    io.addProperty("protocolName", Interface.protocolName(i.protocol));
                    io.addProperty("port", i.port);
                    interfaces.add(io);
                }
                so.add("interfaces", interfaces);
                servers.add(so);
            }
        }
        o.add("servers", servers);
        return o;
    }

    /** Strict UTF-8: bytes that are not valid UTF-8 give null (dataHex has them). */
    static String utf8OrNull(byte[] bytes) {
        if (bytes == null) return null;
        try {
            return StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT)
                .decode(ByteBuffer.wrap(bytes))
                .toString();
        } catch (CharacterCodingException e) {
            return null;
        }
    }

    static String hexOrNull(byte[] bytes) {
        if (bytes == null) return null;
        StringBuilder sb = new StringBuilder(bytes.length * 2);
        for (byte b : bytes) sb.append(String.format("%02x", b & 0xff));
        return sb.toString();
    }

    // ---- the command line -------------------------------------------------------------

    static final class Args {
        String command;
        boolean tcp;
        final List<String> positional = new ArrayList<>(); // command, HOST, PORT, [HANDLE]
        final List<Integer> indexes = new ArrayList<>();
        final List<String> types = new ArrayList<>();
        boolean noRecursion;
        boolean digest;
        boolean transportGiven;
        // admin commands only (--admin, --key, --value after the command)
        String admin;
        String key;
        final List<String> values = new ArrayList<>();

        static Args parse(String[] argv) throws UsageError {
            Args a = new Args();
            Boolean transport = null;
            for (int i = 0; i < argv.length; i++) {
                String arg = argv[i];
                switch (arg) {
                    case "--tcp":
                    case "--udp":
                        if (transport != null) throw new UsageError("give one of --tcp or --udp, once");
                        transport = arg.equals("--tcp");
                        break;
                    case "--index":
                        if (++i >= argv.length) throw new UsageError("--index needs a number");
                        try {
                            a.indexes.add(Integer.parseInt(argv[i]));
                        } catch (NumberFormatException e) {
                            throw new UsageError("--index needs a number, not " + argv[i]);
                        }
                        break;
                    case "--type":
                        if (++i >= argv.length) throw new UsageError("--type needs a type");
                        a.types.add(argv[i]);
                        break;
                    case "--no-recursion":
                        a.noRecursion = true;
                        break;
                    case "--digest":
                        a.digest = true;
                        break;
                    case "--admin":
                    case "--key":
                    case "--value":
                        // only after an admin command; anywhere else they stay unknown options
                        if (a.positional.isEmpty() || !ADMIN_COMMANDS.contains(a.positional.get(0))) {
                            throw new UsageError("unknown option: " + arg);
                        }
                        if (++i >= argv.length) throw new UsageError(arg + " needs an argument");
                        if (arg.equals("--admin")) a.admin = argv[i];
                        else if (arg.equals("--key")) a.key = argv[i];
                        else a.values.add(argv[i]);
                        break;
                    default:
                        if (arg.startsWith("--")) throw new UsageError("unknown option: " + arg);
                        a.positional.add(arg);
                }
            }
            if (a.positional.isEmpty()) throw new UsageError("no command");
            a.command = a.positional.get(0);
            boolean query = a.command.equals("resolve") || a.command.equals("siteinfo");
            if (transport == null && (query || ADMIN_COMMANDS.contains(a.command))) {
                throw new UsageError(a.command + " needs --tcp or --udp");
            }
            a.tcp = transport != null && transport;
            a.transportGiven = transport != null;
            return a;
        }

        void expectPositional(int n, String what) throws UsageError {
            if (positional.size() != n) throw new UsageError(command + " takes " + what);
        }

        int port(String s) throws UsageError {
            try {
                int p = Integer.parseInt(s);
                if (p >= 1 && p <= 65535) return p;
            } catch (NumberFormatException e) {
                // fall through
            }
            throw new UsageError("PORT must be 1..65535, not " + s);
        }
    }
}
