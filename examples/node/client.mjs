#!/usr/bin/env node
// A Node.js client for a vmre engine, over plain gRPC (HTTP/2 cleartext),
// built on @grpc/grpc-js and @grpc/proto-loader. It loads the .proto files
// of this repository at run time: no generated code. USAGE below is what
// `node client.mjs --help` prints.
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";

const PROTO_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "proto");
const HANDSHAKE_TOKEN_HEADER = "vmre-handshake-token"; // vmre.HandshakeTokenHeader, lowercased as HTTP/2 sends it
const DEFAULT_PROTOCOL_VERSION = 42; // vmre.ProtocolVersion

const USAGE = `usage: node client.mjs COMMAND [flags]

commands:
  handshake  --vm-addr HOST:PORT [--engine HOST:PORT] [--token=TOKEN] [--protocol-version N]
             call vm.runtime.Runtime/Initialize, as a plugin does
  list       [--api HOST:PORT]
             print the engine's runtimes (vmre.v1.RuntimeService/ListRuntimes)
  watch      [--api HOST:PORT] [--until-addr HOST:PORT] [--timeout SECONDS]
             print the WatchRuntimes stream: a snapshot, then every change;
             with --until-addr, exit 0 once a runtime with that VM address
             is seen (1 after --timeout)
  attach     [--engine HOST:PORT] [--token=TOKEN] [--api HOST:PORT] [--timeout SECONDS]
             play an external plugin: listen on 127.0.0.1:0 as its VM server,
             watch the API port, handshake with the attach endpoint, and exit 0
             once the watch stream shows the new attached runtime (--timeout
             default 30)

flags:
  --engine            the engine's handshake address (default: $VMRE_ENGINE_ADDR)
  --token=TOKEN       the handshake token (default: $VMRE_HANDSHAKE_TOKEN); write
                      the "=", since a token may begin with "-"
  --api               the engine's API port (default: $VMRE_API_ADDR, else 127.0.0.1:9660)
  --protocol-version  the version to announce (default ${DEFAULT_PROTOCOL_VERSION})
  -h, --help          print this help

\`vmre run --attach\` prints the export line that sets $VMRE_ENGINE_ADDR and
$VMRE_HANDSHAKE_TOKEN. Exits 1 on any error, with the engine's message.
`;

const definition = protoLoader.loadSync(["vm/runtime/runtime.proto", "vmre/v1/runtime_service.proto"], {
  includeDirs: [PROTO_DIR],
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const proto = grpc.loadPackageDefinition(definition);
const RuntimeClient = proto.vm.runtime.Runtime;
const RuntimeServiceClient = proto.vmre.v1.RuntimeService;

function fail(message) {
  console.error(`error: ${message}`);
  process.exit(1);
}

function describe(err) {
  if (err && typeof err.code === "number") {
    const name = Object.keys(grpc.status).find((k) => grpc.status[k] === err.code) ?? String(err.code);
    const detail = err.details || err.message;
    const code = name.toLowerCase();
    return detail.startsWith(`${code}:`) ? detail : `${code}: ${detail}`;
  }
  return err instanceof Error ? err.message : String(err);
}

function deadline(seconds) {
  return new Date(Date.now() + seconds * 1000);
}

const STATE_PREFIX = "RUNTIME_STATE_";

function formatRuntime(rt) {
  const state = String(rt.state).replace(STATE_PREFIX, "").toLowerCase();
  const name = /\s/.test(rt.name) ? JSON.stringify(rt.name) : rt.name;
  const parts = [`${rt.id} ${name}`, `state=${state}`];
  if (rt.pid && rt.pid !== "0") parts.push(`pid=${rt.pid}`);
  if (rt.vmAddr) parts.push(`vm=${rt.vmAddr}`);
  if (rt.protocolVersion) parts.push(`proto=${rt.protocolVersion}`);
  if (rt.exitStatus) parts.push(rt.exitStatus.signal ? `signal=${rt.exitStatus.signal}` : `exit=${rt.exitStatus.code}`);
  if (rt.lastError) parts.push(`error=${JSON.stringify(rt.lastError)}`);
  return parts.join(" ");
}

function handshake({ engine, token, vmAddr, protocolVersion }) {
  const client = new RuntimeClient(engine, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  if (token) md.set(HANDSHAKE_TOKEN_HEADER, token);
  return new Promise((resolve, reject) => {
    client.Initialize({ protocolVersion, addr: vmAddr }, md, { deadline: deadline(10) }, (err) => {
      client.close();
      if (err) reject(err);
      else resolve();
    });
  });
}

function list(api) {
  const client = new RuntimeServiceClient(api, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    client.ListRuntimes({}, { deadline: deadline(10) }, (err, resp) => {
      client.close();
      if (err) reject(err);
      else resolve(resp.runtimes);
    });
  });
}

// watch prints the stream and resolves with the first runtime for which
// until(rt) is true (never, if until is null); it rejects on a stream error
// or when timeoutSeconds pass first.
function watch(api, { until = null, timeoutSeconds = 0, onReady = null } = {}) {
  const client = new RuntimeServiceClient(api, grpc.credentials.createInsecure());
  const call = client.WatchRuntimes({});
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (fn, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      call.cancel();
      client.close();
      fn(value);
    };
    const timer =
      timeoutSeconds > 0
        ? setTimeout(() => finish(reject, new Error(`no matching runtime within ${timeoutSeconds}s`)), timeoutSeconds * 1000)
        : undefined;
    let first = true;
    call.on("data", (msg) => {
      let seen = [];
      switch (msg.kind) {
        case "snapshot":
          seen = msg.snapshot.runtimes;
          console.log(`snapshot: ${seen.length} runtime(s)`);
          for (const rt of seen) console.log(`  ${formatRuntime(rt)}`);
          break;
        case "runtime":
          seen = [msg.runtime];
          console.log(`change: ${formatRuntime(msg.runtime)}${msg.event ? ` (${msg.event.message})` : ""}`);
          break;
        case "removedId":
          console.log(`removed: ${msg.removedId}`);
          break;
      }
      if (first) {
        first = false;
        onReady?.();
      }
      const hit = until ? seen.find(until) : undefined;
      if (hit) finish(resolve, hit);
    });
    call.on("error", (err) => {
      if (!done) finish(reject, err);
    });
    call.on("end", () => {
      if (!done) finish(reject, new Error("watch stream ended"));
    });
  });
}

async function main() {
  const [command, ...rest] = process.argv.slice(2);
  if (command === undefined) {
    process.stderr.write(USAGE);
    process.exit(1);
  }
  if (command === "help" || command === "--help" || command === "-h") {
    process.stdout.write(USAGE);
    return;
  }
  const { values } = parseArgs({
    args: rest,
    options: {
      help: { type: "boolean", short: "h", default: false },
      engine: { type: "string", default: process.env.VMRE_ENGINE_ADDR ?? "" },
      token: { type: "string", default: process.env.VMRE_HANDSHAKE_TOKEN ?? "" },
      api: { type: "string", default: process.env.VMRE_API_ADDR ?? "127.0.0.1:9660" },
      "vm-addr": { type: "string", default: "" },
      "protocol-version": { type: "string", default: String(DEFAULT_PROTOCOL_VERSION) },
      "until-addr": { type: "string", default: "" },
      timeout: { type: "string", default: "0" },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const protocolVersion = Number(values["protocol-version"]);
  const timeoutSeconds = Number(values.timeout);
  // uint32 on the wire: protobufjs would silently wrap a larger value.
  if (!Number.isInteger(protocolVersion) || protocolVersion <= 0 || protocolVersion > 0xffffffff) {
    fail("--protocol-version must be an integer from 1 to 4294967295");
  }
  // setTimeout fires at once for delays above 2^31-1 ms (about 24.8 days).
  if (!Number.isFinite(timeoutSeconds) || timeoutSeconds < 0 || timeoutSeconds * 1000 > 0x7fffffff) {
    fail("--timeout must be a number of seconds from 0 to 2147483");
  }

  switch (command) {
    case "handshake": {
      if (!values.engine) fail("--engine (or $VMRE_ENGINE_ADDR) is required");
      if (!values["vm-addr"]) fail("--vm-addr is required");
      await handshake({ engine: values.engine, token: values.token, vmAddr: values["vm-addr"], protocolVersion });
      console.log(`handshake ok: engine ${values.engine} accepted ${values["vm-addr"]} (protocol ${protocolVersion})`);
      return;
    }
    case "list": {
      const runtimes = await list(values.api);
      console.log(`${runtimes.length} runtime(s)`);
      for (const rt of runtimes) console.log(`  ${formatRuntime(rt)}`);
      return;
    }
    case "watch": {
      const addr = values["until-addr"];
      const rt = await watch(values.api, { until: addr ? (r) => r.vmAddr === addr : null, timeoutSeconds });
      console.log(`seen: ${formatRuntime(rt)}`);
      return;
    }
    case "attach": {
      if (!values.engine) fail("--engine (or $VMRE_ENGINE_ADDR) is required");
      if (!values.token) fail("--token (or $VMRE_HANDSHAKE_TOKEN) is required: attach endpoints refuse handshakes without it");
      // A stand-in for the plugin's own VM server, so the address it
      // announces is real.
      const server = createServer((sock) => sock.destroy());
      await new Promise((resolve, reject) => server.listen(0, "127.0.0.1", resolve).on("error", reject));
      const vmAddr = `127.0.0.1:${server.address().port}`;
      try {
        let ready;
        const watching = new Promise((resolve) => (ready = resolve));
        const seen = watch(values.api, {
          until: (r) => r.vmAddr === vmAddr && r.attached,
          timeoutSeconds: timeoutSeconds || 30,
          onReady: ready,
        });
        await Promise.race([watching, seen]); // the watch is up (or already failed)
        await handshake({ engine: values.engine, token: values.token, vmAddr, protocolVersion });
        console.log(`handshake ok: engine ${values.engine} accepted ${vmAddr} (protocol ${protocolVersion})`);
        const rt = await seen;
        console.log(`attached: ${formatRuntime(rt)}`);
      } finally {
        server.close();
      }
      return;
    }
    default:
      fail(`unknown command ${JSON.stringify(command)}; want handshake, list, watch or attach (--help lists them)`);
  }
}

main().catch((err) => fail(describe(err)));
