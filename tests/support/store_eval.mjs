// Feeds a captured widget state to the built bundle's RunStore under node (no browser) and
// prints what a JS function body returns, as JSON: `node store_eval.mjs BUNDLE INPUT.json`.
// INPUT: {meta, items: [[kind, header, [base64 buffers]]...], body}; kind "snapshot" sets the
// trait, "msg" is a custom message. The body sees `mod` (the bundle's exports) and `store`.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [bundle, input] = process.argv.slice(2);
const mod = await import(pathToFileURL(bundle).href);
const data = JSON.parse(readFileSync(input, "utf8"));
const buf = (b) => {
  const u = Buffer.from(b, "base64");
  return new DataView(u.buffer, u.byteOffset, u.byteLength);
};
const store = new mod.RunStore();
store.reset(data.meta, data.live === true);
for (const [, header, buffers] of data.items) store.receive(header, buffers.map(buf));
const fn = new Function("mod", "store", data.body);
const out = fn(mod, store);
process.stdout.write(JSON.stringify(out, (_k, v) => (typeof v === "number" && !isFinite(v) ? null : v)));
