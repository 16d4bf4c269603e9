// Bundles js/widget.ts (+ widget.css) into llm_energy_widget/static/ as one minified ES module.
import { build } from "esbuild";
import { statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const outdir = resolve(root, "llm_energy_widget/static");
const MAX_BUNDLE_BYTES = 60 * 1024; // the bundle is inlined in every report and notebook

await build({
  entryPoints: { widget: resolve(root, "js/widget.ts") },
  outdir,
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2020",
  legalComments: "none",
  logLevel: "warning",
});
await build({
  entryPoints: { widget: resolve(root, "js/widget.css") },
  outdir,
  bundle: true,
  minify: true,
  logLevel: "warning",
});

const size = statSync(resolve(outdir, "widget.js")).size;
if (size > MAX_BUNDLE_BYTES) {
  console.error(`widget.js is ${size} bytes, over the ${MAX_BUNDLE_BYTES}-byte budget`);
  process.exit(1);
}
console.log(`llm_energy_widget/static/widget.js ${(size / 1024).toFixed(1)} KB`);
