// Runs the dashboard's unit tests (test/unit/*.test.ts) with node's own test
// runner, without a browser: esbuild bundles each test file with the
// modules it imports into a temporary directory, then `node --test` runs
// the bundles. Arguments after the script go to `node --test`.
//
//   node test/unit.mjs
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = join(import.meta.dirname, "unit");
const tests = readdirSync(dir).filter((n) => n.endsWith(".test.ts")).sort();
const out = mkdtempSync(join(tmpdir(), "vmre-web-unit-"));
let status = 1;
try {
  await build({
    entryPoints: tests.map((n) => join(dir, n)),
    bundle: true,
    platform: "node",
    format: "esm",
    target: ["node20"],
    outdir: out,
    outExtension: { ".js": ".mjs" },
    packages: "bundle",
    logLevel: "warning",
  });
  const files = readdirSync(out).filter((n) => n.endsWith(".mjs")).map((n) => join(out, n));
  const run = spawnSync(process.execPath, ["--test", ...process.argv.slice(2), ...files], { stdio: "inherit" });
  status = run.status ?? 1;
} finally {
  rmSync(out, { recursive: true, force: true });
}
process.exit(status);
