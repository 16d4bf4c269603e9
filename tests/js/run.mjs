// `npm test`: bundles tests/js/*.test.ts (and what they import from js/) with esbuild into a
// temporary folder and runs them with node's own test runner (`node --test`), no browser.
// LEW_WIRE_FIXTURE (set by tests/js/test_node_units.py): a folder holding a snapshot the Python
// encoder wrote, for the round-trip contract test; without it that test is skipped.
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const tests = readdirSync(here).filter((f) => f.endsWith(".test.ts"));
const out = process.env.LEW_JS_TEST_OUT ?? mkdtempSync(join(tmpdir(), "lew-js-tests-"));
await build({
  entryPoints: tests.map((f) => resolve(here, f)),
  outdir: out,
  outExtension: { ".js": ".mjs" },
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node18",
  logLevel: "warning",
});
const files = tests.map((f) => join(out, f.replace(/\.ts$/, ".mjs")));
const r = spawnSync(process.execPath, ["--test", ...files], { stdio: "inherit" });
if (!process.env.LEW_JS_TEST_OUT) rmSync(out, { recursive: true, force: true });
process.exit(r.status ?? 1);
