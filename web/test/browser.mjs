// What the browser tests share: their command line and a headless Debian
// chromium in a throw-away profile. It never downloads a browser.
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

// parseOptions reads --url, --token=TOKEN, --out and --chromium, exiting 2
// on a usage error and 1 when the browser is missing. (--token=TOKEN with
// "=": a token may begin with "-", which parseArgs would take for an
// option.)
export function parseOptions(script) {
  const { values: opts } = parseArgs({
    options: {
      url: { type: "string" },
      token: { type: "string" },
      out: { type: "string", default: "." },
      chromium: { type: "string", default: "/usr/bin/chromium" },
    },
  });
  if (!opts.url || !opts.token) {
    console.error(`usage: ${script} --url URL --token=TOKEN [--out DIR] [--chromium PATH]`);
    process.exit(2);
  }
  if (!existsSync(opts.chromium)) {
    console.error(`FAIL: no browser at ${opts.chromium} (apt-get install -y chromium); this test never downloads one`);
    process.exit(1);
  }
  mkdirSync(opts.out, { recursive: true });
  return opts;
}

// callAPI calls the RuntimeService method with {id} from the page, bearing
// token when one is given, and returns the answer's status and JSON body.
export function callAPI(page, method, id, token) {
  return page.evaluate(async ([method, id, token]) => {
    const headers = { "Content-Type": "application/json" };
    if (token !== undefined) headers.Authorization = `Bearer ${token}`;
    const r = await fetch(`/vmre.v1.RuntimeService/${method}`, {
      method: "POST",
      headers,
      body: JSON.stringify({ id }),
    });
    return { status: r.status, body: await r.json() };
  }, [method, id, token]);
}

// launchBrowser starts chromium headless in a fresh profile; close() ends
// it and removes the profile.
export async function launchBrowser(executablePath) {
  const profile = mkdtempSync(join(tmpdir(), "vmre-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}

// loadProtobuf bundles the generated schemas and protobuf-es from the
// TypeScript sources (node does not run TypeScript) and imports them.
export async function loadProtobuf() {
  const { outputFiles } = await build({
    stdin: {
      contents: [
        "export { WatchRuntimesResponseSchema, TailOutputRequestSchema, TailOutputResponseSchema, GetRuntimeResponseSchema,",
        `  RuntimeState, OutputStream, LogLevel } from "./src/gen/vmre/v1/runtime_service_pb.ts";`,
        `export { create, fromBinary, toBinary } from "@bufbuild/protobuf";`,
        `export { timestampFromMs } from "@bufbuild/protobuf/wkt";`,
      ].join("\n"),
      resolveDir: join(import.meta.dirname, ".."),
      loader: "ts",
      sourcefile: "pb.ts",
    },
    bundle: true,
    format: "esm",
    write: false,
    logLevel: "warning",
  });
  return import(`data:text/javascript;base64,${Buffer.from(outputFiles[0].text).toString("base64")}`);
}

// grpcWeb is a whole gRPC-Web response: msgs, each in its own frame, then
// trailers with status 0, which end the stream.
export function grpcWeb(pb, schema, msgs) {
  const frame = (flags, bytes) => {
    const head = Buffer.alloc(5);
    head[0] = flags;
    head.writeUInt32BE(bytes.length, 1);
    return [head, Buffer.from(bytes)];
  };
  const parts = msgs.flatMap((m) => frame(0, pb.toBinary(schema, pb.create(schema, m))));
  parts.push(...frame(0x80, Buffer.from("grpc-status: 0\r\n")));
  return {
    status: 200,
    headers: { "content-type": "application/grpc-web+proto" },
    body: Buffer.concat(parts),
  };
}
