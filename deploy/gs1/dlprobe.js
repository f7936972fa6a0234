// The Digital Link URIs the conformance tests send, made and checked by digital-link.js
// (GS1's SDK), not by idres. Reads a JSON array of jobs on stdin, writes a JSON array
// of results: {"build": {...DigitalLink fields}} -> {uri, valid},
// {"check": uri} -> {valid}, {"compress": uri} -> {uri}, {"decompress": uri} -> {uri}.
const { DigitalLink, Utils } = require('digital-link.js');

const jobs = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const out = jobs.map((job) => {
  try {
    if (job.build) {
      const dl = DigitalLink(job.build);
      return { uri: dl.toWebUriString(), valid: dl.isValid() };
    }
    if (job.check) return { valid: DigitalLink(job.check).isValid() };
    if (job.compress) return { uri: Utils.compressWebUri(job.compress) };
    if (job.decompress) return { uri: Utils.decompressWebUri(job.decompress) };
    return { error: 'unknown job' };
  } catch (e) {
    return { error: String(e.message || e) };
  }
});
process.stdout.write(JSON.stringify(out));
