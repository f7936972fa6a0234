// Resolves DIDs at an idres node with stock DID clients, as their users call them.
//
//   node resolve.mjs '{"base": "http://127.0.0.1:PORT", "cases": [{"did": "...", "accept": "..."}]}'
//
// For each case, three ways in:
//   "did-resolver"   did-resolver's Resolver with a method driver of our own, the few
//                    lines a user writes: GET {base}/1.0/identifiers/{did} with the
//                    case's Accept (the resolution result when none is given), its
//                    answer handed back as the DIDResolutionResult (a bare document is
//                    wrapped in one); status and Content-Type are reported beside it
//   "uni-client"     @sphereon/did-uni-client's UniResolver with its base URL set to the
//                    node (it sends no Accept of its own)
//   "uni-driver"     did-resolver's Resolver with getUniResolver("bid"/"cn") as drivers
// stdout: one JSON array of {"via", "did", "accept", "result"} or {..., "thrown": message},
// with "status" and "contentType" for did-resolver.
import { createRequire } from "node:module";

const require = createRequire(`${process.env.IDRES_DID_CLIENTS}/`);
const { Resolver } = require("did-resolver");
const { UniResolver, getUniResolver } = require("@sphereon/did-uni-client");

const { base, cases } = JSON.parse(process.argv[2]);
const seen = new Map();

async function viaHttp(did, parsed, resolver, options) {
  const headers = options.accept ? { Accept: options.accept } : {};
  const res = await fetch(`${base}/1.0/identifiers/${did}`, { headers });
  const contentType = res.headers.get("content-type");
  seen.set(`${did} ${options.accept ?? ""}`, { status: res.status, contentType });
  const body = await res.json();
  if ("didResolutionMetadata" in body) return body;
  return { didResolutionMetadata: { contentType }, didDocument: body, didDocumentMetadata: {} };
}

// every method goes to the node: it is the node that says which it serves
const own = new Resolver({ bid: viaHttp, cn: viaHttp, example: viaHttp, web: viaHttp });
const uni = new UniResolver().setBaseURL(base);
const drivers = new Resolver({
  ...getUniResolver("bid", { baseUrl: base }),
  ...getUniResolver("cn", { baseUrl: base }),
});

async function attempt(out, run) {
  try {
    out.result = await run();
  } catch (e) {
    out.thrown = String(e.message ?? e);
  }
  return out;
}

const results = [];
for (const { did, accept } of cases) {
  const mine = await attempt({ via: "did-resolver", did, accept }, () =>
    own.resolve(did, accept ? { accept } : {}),
  );
  Object.assign(mine, seen.get(`${did} ${accept ?? ""}`) ?? {});
  results.push(mine);
  if (accept) continue; // the Universal Resolver clients send no Accept of their own
  results.push(await attempt({ via: "uni-client", did }, () => uni.resolve(did)));
  results.push(await attempt({ via: "uni-driver", did }, () => drivers.resolve(did)));
}
process.stdout.write(JSON.stringify(results));
