// code-executor-mcp: Deno runner (the sandbox container's entrypoint, PID 1).
//
// Expected command line (no --allow-* flag other than these three, which name only the
// tool proxy's socket; Deno 2.x requires all three to connect to a Unix socket):
//
//   deno run --no-prompt --no-remote --no-npm --no-config --no-lock --no-code-cache \
//     --allow-read=/run/mcp/proxy.sock --allow-write=/run/mcp/proxy.sock \
//     --allow-net=unix:/run/mcp/proxy.sock /opt/code-executor/runner.js
//
// The socket is a bind mount of a read-only directory: these flags let the code connect
// to it and nothing else (no other file, no TCP, no other socket, no env). The user's
// code can reach the proxy without the runner's help, but every request needs the token.
// Without them the runner still works; only the tool API fails, with a clear error.
// The --no-* flags grant nothing. --no-remote/--no-npm matter: without them `deno run`
// itself downloads jsr:, npm: and https: imports from jsr.io, deno.land, esm.sh,
// registry.npmjs.org... with no permission asked (through HTTP_PROXY when egress is on).
// --no-config/--no-lock: ignore any deno.json/deno.lock in the working directory.
// --no-code-cache: the V8 code cache is useless in a fresh container (~2 ms CPU saved).
// The runner also works with plain `deno run --no-prompt <runner>`.
// Executions with network egress or path grants get more --allow-* values (the egress
// socket, 127.0.0.1:<port>, the granted hosts and paths, --allow-env=
// CODE_EXECUTOR_EGRESS_PORT): docs/runner-protocol.md "Deno command line" is the contract.
//
// Environment: DENO_DIR=/tmp/deno (a tmpfs; Deno writes its caches there),
// DENO_NO_UPDATE_CHECK=1, NO_COLOR=1. CODE_EXECUTOR_PROXY_SOCKET overrides the tool
// proxy's socket path (default /run/mcp/proxy.sock), read only when the runner is granted
// --allow-env=CODE_EXECUTOR_PROXY_SOCKET (the tests do; the sandbox does not, so the
// default applies there). CODE_EXECUTOR_EGRESS_PORT (read only when granted
// --allow-env=CODE_EXECUTOR_EGRESS_PORT) turns on the egress relay to /run/mcp/egress.sock
// (CODE_EXECUTOR_EGRESS_SOCKET, tests only); see "egress relay" below. The runner is
// plain JavaScript so that no transpile is paid for it on each start (DENO_DIR is empty
// in every fresh container); only the user's TypeScript is transpiled.
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
const EXIT_RUNNER_ERROR = 2; // request refused (protocol / integrity / egress error): user code never ran

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

// ------------------------------------------------------------------------- tool API
//
// The in-sandbox tool API (ARCHITECTURE.md "Inside the container" / "Tool proxy
// protocol"; docs/runner-protocol.md "In-sandbox tool API"): callMCPTool,
// discoverMCPTools, getToolSchema, searchTools and the error classes, on globalThis.
// HTTP/1.1 over the execution's Unix socket, one connection per request (closed after
// it, so the event loop still drains), bearer token from this closure only. Nothing is
// done before the first call. Deno grants the connection with exactly
//   --allow-read=<socket> --allow-write=<socket> --allow-net=unix:<socket>
// (all three are required by Deno 2.x for a Unix socket; they name only the socket).

const PROXY_SOCKET_ENV = "CODE_EXECUTOR_PROXY_SOCKET";
const DEFAULT_PROXY_SOCKET = "/run/mcp/proxy.sock";
const MAX_RESPONSE_HEAD = 64 * 1024;
const denoConnect = Deno.connect.bind(Deno);
const queryPermission = Deno.permissions.querySync.bind(Deno.permissions);
const envGet = Deno.env.get.bind(Deno.env);
const utf8Decoder = new TextDecoder("utf-8");
const defineGlobal = (name, value) =>
  Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });

/** A call through the tool proxy failed. `status`: the proxy's HTTP status (0: no answer). */
class McpToolError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.name = "McpToolError";
    this.status = status;
  }
}
/** 403: the tool is not in this execution's allowedTools. */
class ToolNotAllowed extends McpToolError {
  constructor(message, status = 403) {
    super(message, status);
    this.name = "ToolNotAllowed";
  }
}
/** 404: no connected MCP server offers a tool of that name. */
class ToolNotFound extends McpToolError {
  constructor(message, status = 404) {
    super(message, status);
    this.name = "ToolNotFound";
  }
}
/** 422 (the arguments fail the tool's schema), 400/413 (request body refused). */
class InvalidArguments extends McpToolError {
  constructor(message, status = 422) {
    super(message, status);
    this.name = "InvalidArguments";
  }
}
/** 429: too many tool calls. */
class RateLimited extends McpToolError {
  constructor(message, status = 429) {
    super(message, status);
    this.name = "RateLimited";
  }
}
/** 502/504/other status, or a result with isError (status 200, `result` holds it). */
class ToolFailed extends McpToolError {
  constructor(message, status = 502, result = undefined) {
    super(message, status);
    this.name = "ToolFailed";
    if (result !== undefined) this.result = result;
  }
}

const STATUS_ERRORS = new Map([
  [400, InvalidArguments],
  [403, ToolNotAllowed],
  [404, ToolNotFound],
  [413, InvalidArguments],
  [422, InvalidArguments],
  [429, RateLimited],
]);

function statusError(status, body) {
  let message = null;
  try {
    const obj = parseJson(utf8Decoder.decode(body));
    if (obj !== null && typeof obj === "object" && typeof obj.error === "string") message = obj.error;
  } catch { /* not JSON */ }
  if (message === null) {
    const text = utf8Decoder.decode(body).trim();
    message = `tool proxy answered HTTP ${status}` + (text ? `: ${text.slice(0, 2000)}` : "");
  }
  if (status === 401) return new McpToolError(message, 401);
  const Cls = STATUS_ERRORS.get(status) ?? ToolFailed;
  return new Cls(message, status);
}

function indexOfSeq(buf, len, seq, from = 0) {
  outer: for (let i = from; i + seq.length <= len; i++) {
    for (let j = 0; j < seq.length; j++) if (buf[i + j] !== seq[j]) continue outer;
    return i;
  }
  return -1;
}
const CRLF = [13, 10];
const CRLFCRLF = [13, 10, 13, 10];

function latin1(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return s;
}

/** A chunked body decoded, or null while incomplete. */
function dechunk(body) {
  const parts = [];
  let total = 0;
  let pos = 0;
  for (;;) {
    const eol = indexOfSeq(body, body.length, CRLF, pos);
    if (eol < 0) return null;
    const size = parseInt(latin1(body.subarray(pos, eol)).split(";")[0].trim(), 16);
    if (!Number.isSafeInteger(size) || size < 0) throw new Error("malformed chunk size");
    pos = eol + 2;
    if (size === 0) {
      const done = (body[pos] === 13 && body[pos + 1] === 10) || indexOfSeq(body, body.length, CRLFCRLF, pos) >= 0;
      if (!done) return null;
      const out = new Uint8Array(total);
      let off = 0;
      for (const p of parts) {
        out.set(p, off);
        off += p.length;
      }
      return out;
    }
    if (body.length < pos + size + 2) return null;
    parts.push(body.subarray(pos, pos + size));
    total += size;
    pos += size + 2;
  }
}

/** {status, body} once buf[0:len] holds one whole response, else null. Throws if malformed. */
function parseResponse(buf, len, eof) {
  const end = indexOfSeq(buf, len, CRLFCRLF);
  if (end < 0) {
    if (eof) throw new Error("connection closed before a complete response");
    if (len > MAX_RESPONSE_HEAD) throw new Error("response head too long");
    return null;
  }
  const lines = latin1(buf.subarray(0, end)).split("\r\n");
  const m = /^HTTP\/1\.\d (\d{3})(?: |$)/.exec(lines[0]);
  if (!m) throw new Error(`malformed status line ${stringify(lines[0].slice(0, 100))}`);
  const status = Number(m[1]);
  const headers = new Map();
  for (const line of lines.slice(1)) {
    const i = line.indexOf(":");
    if (i > 0) headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
  }
  const body = buf.subarray(end + 4, len);
  if ((headers.get("transfer-encoding") ?? "").toLowerCase().includes("chunked")) {
    const decoded = dechunk(body);
    if (decoded === null) {
      if (eof) throw new Error("connection closed inside a chunked body");
      return null;
    }
    return { status, body: decoded };
  }
  if (headers.has("content-length")) {
    const n = Number(headers.get("content-length"));
    if (!Number.isSafeInteger(n) || n < 0) throw new Error("malformed Content-Length");
    if (body.length < n) {
      if (eof) throw new Error(`connection closed after ${body.length} of ${n} body bytes`);
      return null;
    }
    return { status, body: body.slice(0, n) };
  }
  if (status === 204 || status === 304) return { status, body: new Uint8Array(0) };
  return eof ? { status, body: body.slice() } : null;
}

/** The value of a CallToolResult, as in the original code-executor-mcp. */
function toolValue(result) {
  if (result === null || typeof result !== "object" || Array.isArray(result)) return result;
  const blocks = Array.isArray(result.content) ? result.content : [];
  const texts = blocks
    .filter((b) => b !== null && typeof b === "object" && b.type === "text" && typeof b.text === "string")
    .map((b) => b.text);
  const text = texts.join("\n");
  if (result.isError === true) {
    throw new ToolFailed(text || "the tool reported an error (isError) without a message", 200, result);
  }
  if (result.structuredContent !== undefined && result.structuredContent !== null) return result.structuredContent;
  if (texts.length === 0 && blocks.length > 0) return blocks; // images, resources...: as they are
  try {
    return parseJson(text);
  } catch {
    return text;
  }
}

function pct(text) {
  return encodeURIComponent(String(text)).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
}

function mergeOr(lists, limit) {
  const seen = new Map();
  for (const tools of lists) {
    for (const t of tools) {
      const key = t !== null && typeof t === "object" ? t.name : String(t);
      const e = seen.get(key);
      if (e) e.hits += 1;
      else seen.set(key, { hits: 1, order: seen.size, tool: t });
    }
  }
  const merged = [...seen.values()].sort((a, b) => b.hits - a.hits || a.order - b.order).map((e) => e.tool);
  return limit === undefined ? merged : merged.slice(0, limit);
}

/** [query, orTerms] from a string, an array of strings, or nothing. */
function searchWords(search) {
  if (search === undefined || search === null) return [undefined, undefined];
  if (typeof search === "string") return [search.trim() || undefined, undefined];
  if (Array.isArray(search)) {
    const terms = search.map((t) => String(t).trim()).filter((t) => t !== "");
    return [undefined, terms.length ? terms : undefined];
  }
  return [String(search).trim() || undefined, undefined];
}

function injectSandboxApi(token) {
  // Only printable ASCII may go into a header line (the token is hex in practice).
  const authOk = typeof token === "string" && /^[\x21-\x7e]+$/.test(token);
  const auth = authOk ? `Bearer ${token}` : "";
  token = null;
  let socketPath = null; // resolved at the first call: nothing to do for code that makes none

  function proxySocket() {
    if (socketPath === null) {
      socketPath = DEFAULT_PROXY_SOCKET;
      try {
        // Tests point the runner at their own socket (--allow-env=CODE_EXECUTOR_PROXY_SOCKET);
        // in the sandbox there is no env permission and the default applies.
        if (queryPermission({ name: "env", variable: PROXY_SOCKET_ENV }).state === "granted") {
          socketPath = envGet(PROXY_SOCKET_ENV) || DEFAULT_PROXY_SOCKET;
        }
      } catch { /* keep the default */ }
    }
    return socketPath;
  }

  function unreachable(path, e) {
    let why;
    if (e?.name === "NotFound") why = "the socket does not exist: this execution has no tool proxy";
    else if (e?.name === "NotCapable" || e?.name === "PermissionDenied") {
      why = `no permission to connect: deno needs --allow-read=${path} --allow-write=${path} --allow-net=unix:${path}`;
    } else why = `${e?.name}: ${e?.message}`;
    return new McpToolError(`cannot reach the MCP tool proxy at ${path} (${why})`);
  }

  async function send(method, target, body) {
    if (!authOk) throw new McpToolError("the runner has no usable tool proxy token");
    const path = proxySocket();
    let head = `${method} ${target} HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${auth}\r\n` +
      "Accept: application/json\r\nConnection: close\r\n";
    if (body !== undefined) head += `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n`;
    const headBytes = encoder.encode(head + "\r\n");
    const request = new Uint8Array(headBytes.length + (body?.length ?? 0));
    request.set(headBytes, 0);
    if (body !== undefined) request.set(body, headBytes.length);
    let conn;
    try {
      conn = await denoConnect({ transport: "unix", path });
    } catch (e) {
      throw unreachable(path, e);
    }
    try {
      for (let off = 0; off < request.length;) off += await conn.write(request.subarray(off));
      let buf = new Uint8Array(16 * 1024);
      let len = 0;
      for (;;) {
        if (len === buf.length) {
          const bigger = new Uint8Array(buf.length * 2);
          bigger.set(buf);
          buf = bigger;
        }
        const n = await conn.read(buf.subarray(len));
        if (n !== null) len += n;
        const parsed = parseResponse(buf, len, n === null);
        if (parsed !== null) return parsed;
      }
    } catch (e) {
      if (e instanceof McpToolError) throw e;
      throw new McpToolError(`tool proxy connection failed: ${e?.name}: ${e?.message}`);
    } finally {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  }

  function jsonBody({ status, body }) {
    if (status !== 200) throw statusError(status, body);
    try {
      return parseJson(utf8Decoder.decode(body));
    } catch {
      throw new McpToolError("tool proxy answered 200 with a body that is not JSON", 200);
    }
  }

  async function listTools(query, limit) {
    const params = [];
    if (query) params.push(`q=${pct(query)}`);
    if (limit !== undefined) params.push(`limit=${limit}`);
    const obj = jsonBody(await send("GET", "/v1/tools" + (params.length ? "?" + params.join("&") : "")));
    if (obj === null || typeof obj !== "object" || !Array.isArray(obj.tools)) {
      throw new McpToolError("tool proxy answered without a `tools` list", 200);
    }
    return obj.tools;
  }

  async function findTools(query, terms, limit) {
    if (terms === undefined) {
      const tools = await listTools(query, limit);
      const words = query ? query.split(/\s+/).filter((w) => w !== "") : [];
      if (tools.length > 0 || words.length < 2) return tools;
      terms = words; // no tool matches every word: rank by how many words match
    }
    return mergeOr(await Promise.all(terms.map((t) => listTools(t, undefined))), limit);
  }

  /** Call an MCP tool: structuredContent, else its text (JSON-parsed when it is JSON). */
  async function callMCPTool(name, args) {
    if (typeof name !== "string") throw new TypeError(`tool name must be a string, got ${typeof name}`);
    if (args !== undefined && args !== null && (typeof args !== "object" || Array.isArray(args))) {
      throw new InvalidArguments(`arguments must be an object, got ${Array.isArray(args) ? "array" : typeof args}`, 0);
    }
    let body;
    try {
      body = encoder.encode(stringify({ name, arguments: args ?? {} }));
    } catch (e) {
      throw new InvalidArguments(`arguments are not JSON-serializable: ${e?.message}`, 0);
    }
    const { status, body: raw } = await send("POST", "/v1/tools/call", body);
    if (status !== 200) throw statusError(status, raw);
    let result;
    try {
      result = parseJson(utf8Decoder.decode(raw));
    } catch {
      throw new ToolFailed("tool proxy answered 200 with a body that is not JSON", 200);
    }
    return toolValue(result);
  }

  /** Tools of the connected servers; `search`: a query (all words match) or keywords (any). */
  async function discoverMCPTools(options) {
    const search = options !== null && typeof options === "object" && !Array.isArray(options)
      ? options.search
      : options;
    const [query, terms] = searchWords(search);
    return await findTools(query, terms, undefined);
  }

  /** One tool (with inputSchema), or null when no tool has that name. */
  async function getToolSchema(name) {
    const res = await send("GET", "/v1/tools/" + pct(name));
    if (res.status === 404) return null;
    return jsonBody(res);
  }

  /** The best `limit` tools for a keyword query. */
  async function searchTools(query, limit = 10) {
    if (!Number.isSafeInteger(limit) || limit < 0) {
      throw new RangeError(`limit must be a non-negative integer, got ${limit}`);
    }
    const [q, terms] = searchWords(query);
    return await findTools(q, terms, limit);
  }

  for (const f of [callMCPTool, discoverMCPTools, getToolSchema, searchTools]) defineGlobal(f.name, f);
  for (const c of [McpToolError, ToolNotAllowed, ToolNotFound, InvalidArguments, RateLimited, ToolFailed]) {
    defineGlobal(c.name, c);
  }
}

// ------------------------------------------------------------------------- egress relay
//
// Network egress (docs/runner-protocol.md "Network egress"). The container has no network
// interface but loopback, also when the execution is granted egress. Then the server sets
// CODE_EXECUTOR_EGRESS_PORT (and HTTP_PROXY/HTTPS_PROXY=http://127.0.0.1:<port>, which
// Deno's fetch honours by itself) and mounts its egress proxy's Unix socket at
// /run/mcp/egress.sock. Before the user's code is imported, the runner listens on
// 127.0.0.1:<port> and relays every accepted connection, byte for byte in both
// directions, to a new connection to that socket: no parsing, the host proxy enforces all
// policy. Permissions (granted by the server's command line, see the protocol doc):
//   --allow-env=CODE_EXECUTOR_EGRESS_PORT (without it the runner cannot see the variable:
//   egress stays off), --allow-net=127.0.0.1:<port>,unix:<socket> and
//   --allow-read=<socket> --allow-write=<socket>.
// Everything the relay holds is unref'd: it never keeps the event loop alive, so the
// process still ends when the user's code is done. It runs on the JS thread: code that
// blocks that thread synchronously stalls its own connections too (fetch is async).

const EGRESS_PORT_ENV = "CODE_EXECUTOR_EGRESS_PORT";
const EGRESS_SOCKET_ENV = "CODE_EXECUTOR_EGRESS_SOCKET";
const DEFAULT_EGRESS_SOCKET = "/run/mcp/egress.sock";
const EGRESS_ERROR = "EgressRelayError";
const RELAY_CHUNK = 256 * 1024;
const RELAY_CONNECT_WAIT_MS = 10_000;
const denoListen = Deno.listen.bind(Deno);
const monotonicNow = performance.now.bind(performance);
const denoStatSync = Deno.statSync.bind(Deno);
const denoUnrefTimer = Deno.unrefTimer.bind(Deno);
const setTimer = setTimeout;

/** The variable's value when the runner may read it (--allow-env=<name>), else undefined. */
function grantedEnv(name) {
  try {
    if (queryPermission({ name: "env", variable: name }).state === "granted") return envGet(name);
  } catch { /* not granted */ }
  return undefined;
}

function closeQuietly(conn) {
  try {
    conn.close();
  } catch { /* already closed */ }
}

/** Copy from -> to until EOF, then pass the EOF on (half-close). On error: close both. */
async function relayPump(from, to, closeBoth) {
  const buf = new Uint8Array(RELAY_CHUNK);
  try {
    for (;;) {
      const n = await from.read(buf);
      if (n === null) break;
      for (let off = 0; off < n;) off += await to.write(buf.subarray(off, n));
    }
    await to.closeWrite();
  } catch {
    closeBoth();
  }
}

/** A promise resolved after `ms`, whose timer does not keep the event loop alive. */
function unrefSleep(ms) {
  return new Promise((resolve) => denoUnrefTimer(setTimer(resolve, ms)));
}

/** A new connection to the egress socket. A full accept backlog makes Deno's (non-blocking)
 * Unix connect fail at once with WouldBlock, where a blocking connect would wait: retry
 * for a while then, with a growing pause. */
async function connectEgress(path) {
  const deadline = monotonicNow() + RELAY_CONNECT_WAIT_MS;
  for (let pause = 2; ; pause = Math.min(pause * 2, 100)) {
    try {
      return await denoConnect({ transport: "unix", path });
    } catch (e) {
      if (e?.name !== "WouldBlock" || monotonicNow() >= deadline) throw e;
    }
    await unrefSleep(pause);
  }
}

async function relayConnection(client, path) {
  client.unref();
  let upstream;
  try {
    upstream = await connectEgress(path);
  } catch {
    closeQuietly(client); // the host proxy is gone: the client sees its connection closed
    return;
  }
  upstream.unref();
  try {
    client.setNoDelay(true);
  } catch { /* not fatal */ }
  const closeBoth = () => {
    closeQuietly(client);
    closeQuietly(upstream);
  };
  await Promise.all([relayPump(client, upstream, closeBoth), relayPump(upstream, client, closeBoth)]);
  closeBoth();
}

async function relayAcceptLoop(listener, path) {
  for (;;) {
    let conn;
    try {
      conn = await listener.accept();
    } catch (e) {
      if (e?.name === "BadResource" || e?.name === "Interrupted") return; // listener closed
      await unrefSleep(50); // EMFILE and the like: let the backlog wait a little
      continue;
    }
    relayConnection(conn, path).catch(() => {});
  }
}

/** Start the relay when CODE_EXECUTOR_EGRESS_PORT is set; returns null or why it cannot run. */
function startEgressRelay() {
  const portText = grantedEnv(EGRESS_PORT_ENV);
  if (!portText) return null;
  const what = "egress relay unavailable";
  const port = Number(portText);
  if (!/^[0-9]{1,5}$/.test(portText) || port < 1 || port > 65535) {
    return `${what}: ${EGRESS_PORT_ENV}=${stringify(portText)} is not a TCP port number (1-65535)`;
  }
  const path = grantedEnv(EGRESS_SOCKET_ENV) || DEFAULT_EGRESS_SOCKET;
  const socketPerms = `--allow-read=${path} --allow-write=${path} --allow-net=unix:${path}`;
  const missing = [
    { name: "read", path },
    { name: "write", path },
    { name: "net", host: `unix:${path}` },
    { name: "net", host: `127.0.0.1:${port}` },
  ].filter((d) => {
    try {
      return queryPermission(d).state !== "granted";
    } catch {
      return true;
    }
  });
  if (missing.length > 0) {
    return `${what}: deno lacks permissions: it needs ${socketPerms} --allow-net=127.0.0.1:${port}`;
  }
  let info;
  try {
    info = denoStatSync(path);
  } catch (e) {
    if (e?.name === "NotFound") return `${what}: the egress proxy socket ${path} does not exist (is it mounted?)`;
    return `${what}: cannot stat the egress proxy socket ${path}: ${e?.name}: ${e?.message}`;
  }
  if (info.isSocket === false) return `${what}: ${path} is not a Unix socket`;
  let listener;
  try {
    listener = denoListen({ hostname: "127.0.0.1", port, transport: "tcp" });
  } catch (e) {
    return `${what}: cannot listen on 127.0.0.1:${port}: ${e?.name}: ${e?.message}`;
  }
  listener.unref();
  relayAcceptLoop(listener, path).catch(() => {});
  return null;
}

// ------------------------------------------------------------------------- user code

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
  // Network egress: listening before the user's code is imported (no race with its first
  // connection). The caller asked for network: without the relay the code would only
  // meet confusing connection errors, so the execution fails here instead.
  const why = startEgressRelay();
  if (why !== null) {
    request = null;
    printStderr(`code-executor runner: ${EGRESS_ERROR}: ${why}\n`);
    finishAndExit(EXIT_RUNNER_ERROR, { type: EGRESS_ERROR, message: why, traceback: "" });
    return;
  }
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
