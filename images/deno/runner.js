// code-executor-mcp: Deno runner (the sandbox container's entrypoint, PID 1).
//
// Expected command line (NO --allow-* flag of any kind):
//
//   deno run --no-prompt --no-remote --no-npm --no-config --no-lock --no-code-cache /opt/code-executor/runner.js
//
// The --no-* flags grant nothing. --no-remote/--no-npm matter: without them `deno run`
// itself downloads jsr:, npm: and https: imports from jsr.io, deno.land, esm.sh,
// registry.npmjs.org... with no permission asked (through HTTP_PROXY when egress is on).
// --no-config/--no-lock: ignore any deno.json/deno.lock in the working directory.
// --no-code-cache: the V8 code cache is useless in a fresh container (~2 ms CPU saved).
// The runner also works with plain `deno run --no-prompt <runner>`.
//
// Environment: DENO_DIR=/tmp/deno (a tmpfs; Deno writes its caches there),
// DENO_NO_UPDATE_CHECK=1, NO_COLOR=1. The runner is plain JavaScript so that no
// transpile is paid for it on each start (DENO_DIR is empty in every fresh container);
// only the user's TypeScript is transpiled.
//
// Contract: docs/runner-protocol.md.
//   stdin:  <decimal length>\n<JSON request of exactly that length><user's stdin bytes...>EOF
//   stdout: <user output>\x1e\x1eCE-RESULT:<nonce>:<compact JSON result>\n
//   stderr: <user output>\x1e\x1eCE-END:<nonce>\n
//
// How the user's code runs: it is imported as an ES module from a
// `data:application/typescript;base64,...` URL (needs no permission; TypeScript syntax,
// top-level await, source-mapped stack traces). Like `deno run`, the process ends when
// the event loop is empty (pending timers/promises such as an un-awaited `main()` still
// run), or on Deno.exit()/process.exit(), or at the first uncaught error / unhandled
// rejection (exit code 1) unless a listener of the user's calls event.preventDefault().
// Deno.exit is writable but is not wrapped: in every case the markers are written from the "unload" event,
// which Deno dispatches both when the event loop drains and inside Deno.exit(), so
// Deno.exit(n) by the user needs no wrapping and still yields the markers with exitCode n.
// Known gap: a top-level await that can never settle (nothing else pending) makes Deno
// itself print "error: Top-level await promise never resolved" and exit 1 without
// dispatching "unload": no markers, the server falls back to the exit code.

// Captured before the user's code runs (it shares this realm and may rebind globals).
const { stringify } = JSON;
const parseJson = JSON.parse;
const encoder = new TextEncoder();
const stdin = Deno.stdin;
const stdoutWriteSync = Deno.stdout.writeSync.bind(Deno.stdout);
const stderrWriteSync = Deno.stderr.writeSync.bind(Deno.stderr);
const denoExit = Deno.exit;
const inspect = Deno.inspect;
const subtle = crypto.subtle;
const addListener = globalThis.addEventListener.bind(globalThis);
const exitCodeDesc = Object.getOwnPropertyDescriptor(Deno, "exitCode");
const getExitCode = () => exitCodeDesc.get.call(Deno);
const setExitCode = (c) => exitCodeDesc.set.call(Deno, c);

const RUNNER_URL = import.meta.url;
const CODE_URL_PREFIX = "data:application/typescript;base64,";
// Deno shows long data: URLs shortened as "<first chars>......<last chars>".
const CODE_URL_RE = /data:application\/typescript;base64,[A-Za-z0-9+/=]*(?:\.{6}[A-Za-z0-9+/=]*)?/g;
const MAX_HEADER_DIGITS = 20;
// The server accepts a result line of at most 256 KiB; a code point costs at most 12
// bytes in it (escaped lone surrogates), so these caps (in UTF-16 units) keep it under.
const MAX_TYPE = 200;
const MAX_MESSAGE = 4000;
const MAX_TRACEBACK = 16000;
const EXIT_RUNNER_ERROR = 2; // request refused (protocol / integrity error): user code never ran

class RequestError extends Error {
  constructor(kind, message, nonce = "") {
    super(message);
    this.kind = kind; // "RunnerProtocolError" | "CodeIntegrityError"
    this.nonce = nonce;
  }
}

// ------------------------------------------------------------------------- output

function writeAll(writeSync, bytes) {
  let off = 0;
  while (off < bytes.length) {
    let n;
    try {
      n = writeSync(bytes.subarray(off));
    } catch {
      return; // stream closed/broken: the server falls back to the exit code
    }
    if (!(n > 0)) return;
    off += n;
  }
}

function printStderr(text) {
  writeAll(stderrWriteSync, encoder.encode(text));
}

const state = {
  nonce: "",
  finished: false,
  error: null, // the result's `error` once an uncaught error has been reported
};

/** At most `limit` UTF-16 units; the cut part is named. Tracebacks keep their end. */
function clip(text, limit, keepTail) {
  text = String(text);
  if (text.length <= limit) return text;
  const cut = text.length - limit;
  if (keepTail) {
    const head = Math.floor(limit / 8);
    return `${text.slice(0, head)}\n[... ${cut} characters cut ...]\n${text.slice(text.length - (limit - head))}`;
  }
  return `${text.slice(0, limit)}[... ${cut} characters cut]`;
}

/** Write both markers (once). Does not exit. */
function writeMarkers(exitCode, error) {
  if (state.finished) return;
  state.finished = true;
  if (error !== null) {
    error = {
      type: clip(error.type, MAX_TYPE, false),
      message: clip(error.message, MAX_MESSAGE, false),
      // long lines (a huge message repeated in the stack) first, then the whole text
      traceback: clip(
        String(error.traceback).split("\n").map((l) => clip(l, MAX_MESSAGE, false)).join("\n"),
        MAX_TRACEBACK,
        true,
      ),
    };
  }
  const result = { success: exitCode === 0 && error === null, exitCode, error };
  writeAll(
    stdoutWriteSync,
    encoder.encode(`\x1e\x1eCE-RESULT:${state.nonce}:${stringify(result)}\n`),
  );
  writeAll(stderrWriteSync, encoder.encode(`\x1e\x1eCE-END:${state.nonce}\n`));
}

function finishAndExit(exitCode, error) {
  setExitCode(exitCode);
  writeMarkers(exitCode, error);
  denoExit(exitCode); // dispatches "unload" (a no-op for us now), then exits
}

// Dispatched by Deno.exit() (user's or ours, also node:process exit) and when the event
// loop has drained. Registered before the user's code runs, so it runs before any unload
// listener of the user's.
function onUnload() {
  if (state.finished) return;
  let code = getExitCode();
  if (state.error !== null && code === 0) code = 1;
  setExitCode(code);
  writeMarkers(code, state.error);
}

// ------------------------------------------------------------------------- errors

function cleanText(text) {
  return String(text)
    .replaceAll(CODE_URL_RE, "<code>")
    .split("\n")
    .filter((line) => !line.includes(RUNNER_URL))
    .join("\n");
}

function safeInspect(value) {
  try {
    return inspect(value, { colors: false, depth: 4 });
  } catch {
    try {
      return String(value);
    } catch {
      return "<uninspectable value>";
    }
  }
}

function describe(err) {
  const isErrorLike = err !== null && typeof err === "object" &&
    (err instanceof Error || typeof err.stack === "string");
  if (!isErrorLike) {
    let type = typeof err;
    if (err === null) type = "null";
    else if (type === "object") {
      try {
        type = err.constructor?.name || "Object";
      } catch { /* keep "object" */ }
    }
    const shown = safeInspect(err);
    return { type, message: shown, traceback: shown };
  }
  let type, message;
  try {
    type = String(err.name || err.constructor?.name || "Error");
    message = cleanText(err.message ?? "");
  } catch {
    type = "Error";
    message = "";
  }
  // A module that fails to parse is reported by Deno as TypeError("SyntaxError: ...").
  let code;
  try {
    code = err.code;
  } catch { /* ignore */ }
  if (type === "TypeError" && code === "ERR_MODULE_NOT_FOUND" && message.startsWith("SyntaxError: ")) {
    message = message.slice("SyntaxError: ".length);
    return { type: "SyntaxError", message, traceback: `SyntaxError: ${message}` };
  }
  return { type, message, traceback: cleanText(safeInspect(err)) };
}

/** Report an uncaught error like Deno would, then write the markers and exit 1. */
function uncaught(err, inPromise) {
  if (state.finished) return;
  let error;
  try {
    error = describe(err);
  } catch {
    error = { type: "Error", message: "<error could not be described>", traceback: "" };
  }
  state.error = error;
  printStderr(`error: Uncaught ${inPromise ? "(in promise) " : ""}${error.traceback}\n`);
  finishAndExit(1, error);
}

// Our "error"/"unhandledrejection" listeners are registered before the user's code, so
// they run first. As under `deno run`, a listener of the user's that calls
// event.preventDefault() keeps the program alive; otherwise the error is fatal. We stop
// Deno's own default action (print, exit 1 without "unload") in any case, note whether
// the user's listeners prevented it, and decide once the dispatch is over.
function onUncaughtEvent(event, getError, inPromise) {
  let userPrevented = false;
  const prevent = event.preventDefault;
  try {
    Object.defineProperty(event, "preventDefault", {
      configurable: true,
      value: function preventDefault() {
        userPrevented = true;
        return prevent.call(event);
      },
    });
  } catch { /* cannot observe user listeners: treat as not prevented */ }
  prevent.call(event);
  queueMicrotask(() => {
    if (!userPrevented) uncaught(getError(), inPromise);
  });
}

// ------------------------------------------------------------------------- request

async function readExact(buf) {
  let off = 0;
  while (off < buf.length) {
    const n = await stdin.read(buf.subarray(off));
    if (n === null) return off;
    off += n;
  }
  return off;
}

async function readHeader() {
  const one = new Uint8Array(1);
  let digits = "";
  for (;;) {
    const n = await stdin.read(one);
    if (n === null) {
      throw new RequestError("RunnerProtocolError", "unexpected end of input in the length header");
    }
    if (n === 0) continue;
    const b = one[0];
    if (b === 0x0a) break;
    if (b < 0x30 || b > 0x39) {
      throw new RequestError(
        "RunnerProtocolError",
        `malformed length header: byte 0x${b.toString(16).padStart(2, "0")} is not an ASCII digit`,
      );
    }
    digits += String.fromCharCode(b);
    if (digits.length > MAX_HEADER_DIGITS) {
      throw new RequestError(
        "RunnerProtocolError",
        `malformed length header: more than ${MAX_HEADER_DIGITS} digits`,
      );
    }
  }
  if (digits === "") throw new RequestError("RunnerProtocolError", "malformed length header: no digits");
  const length = Number(digits);
  if (!Number.isSafeInteger(length) || length > 0x7fffffff) {
    throw new RequestError("RunnerProtocolError", `request length ${digits} is too large`);
  }
  return length;
}

const isHex = (s, len) => typeof s === "string" && s.length === len && /^[0-9a-fA-F]*$/.test(s);

function toHex(bytes) {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

function toBase64(bytes) {
  if (typeof bytes.toBase64 === "function") return bytes.toBase64();
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

async function readRequest() {
  const length = await readHeader();
  const raw = new Uint8Array(length);
  const got = await readExact(raw);
  if (got !== length) {
    throw new RequestError(
      "RunnerProtocolError",
      `unexpected end of input: request is ${length} bytes, got ${got}`,
    );
  }
  let req;
  try {
    req = parseJson(new TextDecoder("utf-8", { fatal: true }).decode(raw));
  } catch (e) {
    // Never echo the request: it carries the token.
    throw new RequestError("RunnerProtocolError", `request is not valid JSON (${e?.name})`);
  }
  if (req === null || typeof req !== "object" || Array.isArray(req)) {
    throw new RequestError("RunnerProtocolError", "request is not a JSON object");
  }
  if (!isHex(req.nonce, 32)) {
    throw new RequestError("RunnerProtocolError", "request.nonce must be 32 hex chars");
  }
  const nonce = req.nonce.toLowerCase();
  if (typeof req.code !== "string") {
    throw new RequestError("RunnerProtocolError", "request.code must be a string", nonce);
  }
  if (typeof req.token !== "string") {
    throw new RequestError("RunnerProtocolError", "request.token must be a string", nonce);
  }
  if (!Number.isSafeInteger(req.timeoutMs) || req.timeoutMs < 0) {
    throw new RequestError("RunnerProtocolError", "request.timeoutMs must be a non-negative integer", nonce);
  }
  if (!isHex(req.sha256, 64)) {
    throw new RequestError("RunnerProtocolError", "request.sha256 must be 64 hex chars", nonce);
  }
  // JSON strings may hold lone surrogates; TextEncoder would silently replace them.
  if (typeof req.code.isWellFormed === "function" && !req.code.isWellFormed()) {
    throw new RequestError("CodeIntegrityError", "code is not valid Unicode (lone surrogate)", nonce);
  }
  const codeBytes = encoder.encode(req.code);
  const digest = toHex(new Uint8Array(await subtle.digest("SHA-256", codeBytes)));
  if (digest !== req.sha256.toLowerCase()) {
    throw new RequestError(
      "CodeIntegrityError",
      "SHA-256 of the code does not match request.sha256; refusing to run it",
      nonce,
    );
  }
  return { nonce, codeBytes, token: req.token };
}

// ------------------------------------------------------------------------- user code

/**
 * >>> IN-SANDBOX TOOL API INJECTION POINT <<<
 * callMCPTool, discoverMCPTools, getToolSchema, searchTools will be installed on
 * globalThis here once the tool proxy lands (ARCHITECTURE.md "Inside the container").
 * Keep the token in this closure only; never print it. Frames from this file are
 * stripped from user stack traces automatically. Anything it opens must be closed
 * (or unref'd) after each call, or the event loop never drains.
 */
function injectSandboxApi(_token) {
  // not yet
}

async function main() {
  let request;
  try {
    request = await readRequest();
  } catch (e) {
    const kind = e instanceof RequestError ? e.kind : "RunnerProtocolError";
    const message = e instanceof RequestError
      ? e.message
      : `cannot read the request: ${e?.name}: ${e?.message}`;
    state.nonce = e instanceof RequestError ? e.nonce : "";
    printStderr(`code-executor runner: ${kind}: ${message}\n`);
    finishAndExit(EXIT_RUNNER_ERROR, { type: kind, message, traceback: "" });
    return;
  }
  state.nonce = request.nonce;
  const url = CODE_URL_PREFIX + toBase64(request.codeBytes);
  injectSandboxApi(request.token);
  request = null;

  addListener("error", (event) => onUncaughtEvent(event, () => event.error, false));
  addListener("unhandledrejection", (event) => onUncaughtEvent(event, () => event.reason, true));

  try {
    await import(url);
  } catch (e) {
    uncaught(e, true);
    return;
  }
  // Nothing more to do: pending timers/promises of the code run to completion, then the
  // event loop drains and "unload" writes the markers with Deno.exitCode.
}

addListener("unload", onUnload);
// Not awaited: the runner module itself has no top-level await, so its own evaluation
// never blocks on the user's code.
main().catch((e) => {
  try {
    printStderr(`code-executor runner: internal error: ${e?.stack ?? e}\n`);
  } finally {
    finishAndExit(1, { type: "RunnerInternalError", message: String(e?.message ?? e), traceback: "" });
  }
});
