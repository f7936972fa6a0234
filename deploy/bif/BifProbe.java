/*
 * BifProbe: BIF's own Java SDK (cn.bitfactory:bif-chain-sdk, see pom.xml) asked for keys
 * and did:bid addresses, so idres's derivation is tested against the SDK rather than
 * against our reading of RFC-003. Built and run by sdk.sh.
 *
 *   keygen N                  N fresh Ed25519 pairs (KeyPairEntity.getBidAndKeyPair)
 *   address [--code C] HEX... the address of each BIF public key (PublicKeyManager.getEncAddress),
 *                             on sub-chain C if given
 *   public PRIVATE...         the public key and address of each BIF private key ("pri...")
 *
 * stdout is always ONE JSON object: {"keys": [{"address", "publicKeyHex", "privateKey",
 * "rawPublicKey"}...]} for keygen, {"addresses": [...]} for address, {"keys": [...]} (no
 * privateKey) for public. Exit 0 done, 1 usage error, 2 the SDK threw.
 */

import cn.bif.model.crypto.KeyPairEntity;
import cn.bif.module.encryption.key.PrivateKeyManager;
import cn.bif.module.encryption.key.PublicKeyManager;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import java.util.Arrays;
import java.util.HexFormat;

public final class BifProbe {
  private BifProbe() {}

  public static void main(String[] args) {
    JsonObject out = new JsonObject();
    int status = 0;
    try {
      if (args.length >= 2 && args[0].equals("keygen")) {
        out.add("keys", keygen(Integer.parseInt(args[1])));
      } else if (args.length >= 2 && args[0].equals("address")) {
        out.add("addresses", addresses(Arrays.copyOfRange(args, 1, args.length)));
      } else if (args.length >= 2 && args[0].equals("public")) {
        out.add("keys", publics(Arrays.copyOfRange(args, 1, args.length)));
      } else {
        out.addProperty("usageError", "keygen N | address [--code C] HEX... | public PRIVATE...");
        status = 1;
      }
    } catch (NumberFormatException e) {
      out.addProperty("usageError", e.toString());
      status = 1;
    } catch (Exception e) {
      out.addProperty("exception", e.toString());
      status = 2;
    }
    System.out.println(out);
    System.exit(status);
  }

  private static JsonArray keygen(int n) throws Exception {
    JsonArray keys = new JsonArray();
    for (int i = 0; i < n; i++) {
      KeyPairEntity pair = KeyPairEntity.getBidAndKeyPair();
      JsonObject key = new JsonObject();
      key.addProperty("address", pair.getEncAddress());
      key.addProperty("publicKeyHex", pair.getEncPublicKey());
      key.addProperty("privateKey", pair.getEncPrivateKey());
      key.addProperty("rawPublicKey", HexFormat.of().formatHex(pair.getRawPublicKey()));
      keys.add(key);
    }
    return keys;
  }

  private static JsonArray addresses(String[] args) throws Exception {
    JsonArray out = new JsonArray();
    String code = null;
    for (int i = 0; i < args.length; i++) {
      if (args[i].equals("--code") && i + 1 < args.length) {
        code = args[++i];
      } else if (code == null) {
        out.add(PublicKeyManager.getEncAddress(args[i]));
      } else {
        out.add(PublicKeyManager.getEncAddress(args[i], code));
      }
    }
    return out;
  }

  private static JsonArray publics(String[] privates) throws Exception {
    JsonArray keys = new JsonArray();
    for (String privateKey : privates) {
      String publicHex = PrivateKeyManager.getEncPublicKey(privateKey);
      JsonObject key = new JsonObject();
      key.addProperty("address", PublicKeyManager.getEncAddress(publicHex));
      key.addProperty("publicKeyHex", publicHex);
      keys.add(key);
    }
    return keys;
  }
}
