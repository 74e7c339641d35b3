// Builds the dashboard into dist/: bundles src/main.ts (and the CSS it
// imports) with esbuild as one minified IIFE and copies public/. The output
// is checked in and embedded in the vmre binary by web.go.
//
//   node build.mjs          build
//   node build.mjs --check  build into a temporary directory and fail if
//                           dist/ differs (CI's drift check)
import { build } from "esbuild";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const here = import.meta.dirname;
const check = process.argv.includes("--check");
const out = check ? mkdtempSync(join(tmpdir(), "vmre-web-")) : join(here, "dist");

if (!check) rmSync(out, { recursive: true, force: true });
await build({
  entryPoints: { app: join(here, "src/main.ts") },
  bundle: true,
  format: "iife",
  minify: true,
  target: ["es2022"],
  outdir: out,
  legalComments: "none",
  logLevel: "warning",
});
cpSync(join(here, "public"), out, { recursive: true });

if (check) {
  const want = join(here, "dist");
  const names = (dir) => readdirSync(dir).sort();
  const a = names(out), b = names(want);
  const diff = [];
  if (a.join() !== b.join()) diff.push(`files: built [${a}] vs checked in [${b}]`);
  for (const n of a) {
    if (b.includes(n) && !readFileSync(join(out, n)).equals(readFileSync(join(want, n)))) diff.push(n);
  }
  rmSync(out, { recursive: true, force: true });
  if (diff.length > 0) {
    console.error(`web/dist is stale (${diff.join(", ")}): run "npm run build --prefix web" and commit web/dist`);
    process.exit(1);
  }
  console.log("web/dist is up to date");
}
