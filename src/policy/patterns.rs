//! Suspicious-pattern scan of submitted code, for the audit log (`warnings` of an
//! execution record) and for operators reading it.
//!
//! This is an audit aid, NOT a security boundary: it matches plain substrings, so it is
//! trivially bypassed by obfuscation (`getattr(__builtins__, "ev" + "al")`, string
//! concatenation, encoded payloads, aliases) and it also fires on harmless mentions in
//! comments or strings. Nothing is refused because of it; the container is the boundary.

/// At most this many warnings per scan.
pub const MAX_WARNINGS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Python,
    TypeScript,
    /// Both languages.
    Any,
}

struct Pattern {
    lang: Lang,
    warning: &'static str,
    hit: fn(&Source<'_>) -> bool,
}

/// The code with what the matchers need precomputed.
struct Source<'a> {
    code: &'a str,
    lower: String,
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

impl Source<'_> {
    fn has(&self, needle: &str) -> bool {
        self.code.contains(needle)
    }

    fn any(&self, needles: &[&str]) -> bool {
        needles.iter().any(|n| self.code.contains(n))
    }

    /// Case-insensitive; `needle` is lowercase.
    fn has_ci(&self, needle: &str) -> bool {
        self.lower.contains(needle)
    }

    /// Positions where `name` starts an identifier (not preceded by an identifier
    /// character or `.`) and ends one (not followed by an identifier character).
    fn words<'s>(&'s self, name: &'s str) -> impl Iterator<Item = usize> + 's {
        self.code.match_indices(name).filter_map(move |(i, _)| {
            let before = self.code[..i].chars().next_back();
            let after = self.code[i + name.len()..].chars().next();
            let free = before.is_none_or(|c| !is_ident(c) && c != '.')
                && after.is_none_or(|c| !is_ident(c));
            free.then_some(i)
        })
    }

    /// `name` as a whole identifier.
    fn word(&self, name: &str) -> bool {
        self.words(name).next().is_some()
    }

    /// A call of the free function `name`: `name(` or `name (`, not `x.name(` or
    /// `other_name(`.
    fn calls(&self, name: &str) -> bool {
        self.words(name)
            .any(|i| self.code[i + name.len()..].trim_start().starts_with('('))
    }
}

const PY_DECODERS: &[&str] = &[
    "b64decode",
    "b32decode",
    "b16decode",
    "a85decode",
    "b85decode",
    "decodebytes",
    "codecs.decode",
    "bytes.fromhex",
    "zlib.decompress",
    "marshal.loads",
];

/// Besides calls of `atob`.
const TS_DECODERS: &[&str] = &[
    "'base64'",
    "\"base64\"",
    "decodeBase64",
    "fromCharCode",
    "decodeHex",
];

fn py_eval(s: &Source<'_>) -> bool {
    s.calls("eval") || s.calls("exec") || s.calls("compile")
}

fn ts_eval(s: &Source<'_>) -> bool {
    s.calls("eval") || s.calls("Function")
}

const PATTERNS: &[Pattern] = &[
    Pattern {
        lang: Lang::Python,
        warning: "eval: dynamic code evaluation (eval/exec)",
        hit: py_eval,
    },
    Pattern {
        lang: Lang::TypeScript,
        warning: "eval: dynamic code evaluation (eval/new Function)",
        hit: ts_eval,
    },
    Pattern {
        lang: Lang::Python,
        warning: "base64-exec: decodes and executes",
        hit: |s| py_eval(s) && s.any(PY_DECODERS),
    },
    Pattern {
        lang: Lang::TypeScript,
        warning: "base64-exec: decodes and executes",
        hit: |s| (ts_eval(s) || s.calls("import")) && (s.calls("atob") || s.any(TS_DECODERS)),
    },
    Pattern {
        lang: Lang::Python,
        warning: "dynamic-import: imports modules by computed name (__import__/importlib)",
        hit: |s| s.calls("__import__") || s.word("importlib"),
    },
    Pattern {
        lang: Lang::TypeScript,
        warning: "dynamic-import: loads modules by computed specifier (import())",
        hit: |s| s.calls("import"),
    },
    Pattern {
        lang: Lang::Python,
        warning: "subprocess: starts processes",
        hit: |s| {
            s.word("subprocess")
                || s.any(&[
                    "os.system",
                    "os.popen",
                    "os.exec",
                    "os.spawn",
                    "os.fork",
                    "os.posix_spawn",
                    "pty.spawn",
                    "create_subprocess_",
                ])
        },
    },
    Pattern {
        lang: Lang::TypeScript,
        warning: "subprocess: starts processes (Deno.run/Deno.Command)",
        hit: |s| s.any(&["Deno.run", "Deno.Command", "child_process"]),
    },
    Pattern {
        lang: Lang::Python,
        warning: "ctypes: raw foreign function / syscall access",
        hit: |s| s.word("ctypes") || s.word("_ctypes") || s.word("cffi"),
    },
    Pattern {
        lang: Lang::TypeScript,
        warning: "ffi: raw foreign function access (Deno.dlopen)",
        hit: |s| s.has("Deno.dlopen"),
    },
    Pattern {
        lang: Lang::Any,
        warning: "proc-environ: reads /proc/*/environ",
        hit: |s| s.has("/proc") && s.has("/environ"),
    },
    Pattern {
        lang: Lang::Any,
        warning: "docker-socket: mentions docker.sock",
        hit: |s| s.has_ci("docker.sock"),
    },
    Pattern {
        lang: Lang::Any,
        warning: "metadata-address: mentions 169.254.169.254 / metadata.google.internal",
        hit: |s| {
            s.any(&["169.254.169.254", "fd00:ec2::254"]) || s.has_ci("metadata.google.internal")
        },
    },
];

/// Scans `code` of `language` (`python` or `typescript`; `py`, `ts`, `javascript`, `js`
/// are accepted too, anything else is scanned with the patterns of both) and returns
/// short warnings like `"subprocess: starts processes"`: deduplicated, in a fixed order,
/// at most [`MAX_WARNINGS`]. Empty for ordinary code.
pub fn scan(language: &str, code: &str) -> Vec<String> {
    let lang = match language.to_ascii_lowercase().as_str() {
        "python" | "py" => Lang::Python,
        "typescript" | "ts" | "javascript" | "js" => Lang::TypeScript,
        _ => Lang::Any,
    };
    let src = Source {
        code,
        lower: code.to_ascii_lowercase(),
    };
    let mut out: Vec<String> = Vec::new();
    for p in PATTERNS {
        if out.len() >= MAX_WARNINGS {
            break;
        }
        let applies = lang == Lang::Any || p.lang == Lang::Any || p.lang == lang;
        if applies && !out.iter().any(|w| w == p.warning) && (p.hit)(&src) {
            out.push(p.warning.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(language: &str, code: &str) -> Vec<String> {
        scan(language, code)
            .into_iter()
            .map(|w| w.split(':').next().unwrap_or_default().to_owned())
            .collect()
    }

    #[track_caller]
    fn only(language: &str, code: &str, id: &str) {
        assert_eq!(
            ids(language, code),
            vec![id.to_owned()],
            "{language}: {code}"
        );
    }

    #[test]
    fn plain_code_has_no_warnings() {
        let py = r#"
import ast, re, os, json
from collections import evaluate_all
x = ast.literal_eval("[1, 2]")
pat = re.compile(r"\d+")
home = os.environ.get("HOME")
def executor(evaluation): return evaluation
result = await call_mcp_tool("mcp__git__status", {"path": "/proc/cpuinfo"})
print(json.dumps(result), executor(1), x, pat, home)
"#;
        assert_eq!(scan("python", py), Vec::<String>::new());
        let ts = r#"
import { join } from "jsr:@std/path";
import * as fs from "node:fs";
const m = /a(b)/.exec("ab");
function myFunction(f: Function): number { return 1; }
const evaluate = (x: number) => x * 2;
const r = await callMCPTool("mcp__time__now", { tz: "UTC" });
console.log(join("a", "b"), m, myFunction(() => 1), evaluate(2), r, Deno.env.get("HOME"));
"#;
        assert_eq!(scan("typescript", ts), Vec::<String>::new());
        assert!(scan("python", "").is_empty());
    }

    #[test]
    fn python_eval_and_exec() {
        only("python", "eval(user_input)", "eval");
        only("python", "exec (code)", "eval");
        only("python", "x = compile(src, 'f', 'exec')", "eval");
        assert!(scan("python", "re.compile('x')").is_empty());
        assert!(scan("python", "obj.exec(x)").is_empty());
    }

    #[test]
    fn typescript_eval_and_new_function() {
        only("typescript", "eval(code)", "eval");
        only(
            "typescript",
            "const f = new Function('return this')",
            "eval",
        );
        only("typescript", "Function(\"x\")()", "eval");
    }

    #[test]
    fn base64_exec_in_both_languages() {
        assert_eq!(
            ids("python", "import base64\nexec(base64.b64decode(p))"),
            ["eval", "base64-exec"]
        );
        assert_eq!(
            ids("python", "eval(bytes.fromhex(h).decode())"),
            ["eval", "base64-exec"]
        );
        assert!(ids("python", "base64.b64decode(p)").is_empty());
        assert_eq!(ids("typescript", "eval(atob(p))"), ["eval", "base64-exec"]);
        assert_eq!(
            ids(
                "typescript",
                "await import(`data:text/javascript;base64,${p}`); atob (x)"
            ),
            ["base64-exec", "dynamic-import"]
        );
        assert!(ids("typescript", "const s = atob(p);").is_empty());
    }

    #[test]
    fn dynamic_imports() {
        only("python", "m = __import__('os')", "dynamic-import");
        only(
            "python",
            "import importlib\nimportlib.import_module(n)",
            "dynamic-import",
        );
        only(
            "typescript",
            "const m = await import(spec);",
            "dynamic-import",
        );
        only(
            "typescript",
            "const m = await import (spec);",
            "dynamic-import",
        );
        assert!(scan("typescript", "import x from \"./x.ts\";").is_empty());
        assert!(scan("python", "import os").is_empty());
    }

    #[test]
    fn processes() {
        for code in [
            "import subprocess",
            "from subprocess import run",
            "os.system('ls')",
            "os.popen('ls')",
            "os.execv('/bin/sh', [])",
            "os.fork()",
            "pty.spawn('/bin/sh')",
            "await asyncio.create_subprocess_exec('ls')",
        ] {
            only("python", code, "subprocess");
        }
        for code in [
            "Deno.run({ cmd: ['ls'] })",
            "new Deno.Command('ls').outputSync()",
            "import { spawn } from 'node:child_process';",
        ] {
            only("typescript", code, "subprocess");
        }
        assert!(scan("python", "mysubprocessor = 1").is_empty());
    }

    #[test]
    fn foreign_functions() {
        only("python", "import ctypes", "ctypes");
        only("python", "from ctypes import CDLL", "ctypes");
        only("python", "import _ctypes", "ctypes");
        only("python", "from cffi import FFI", "ctypes");
        only("typescript", "Deno.dlopen('libc.so.6', {})", "ffi");
        assert!(scan("python", "nctypes = 3").is_empty());
    }

    #[test]
    fn proc_environ_in_both_languages() {
        only(
            "python",
            "open('/proc/self/environ').read()",
            "proc-environ",
        );
        only("python", "open(f'/proc/{pid}/environ')", "proc-environ");
        only(
            "typescript",
            "await Deno.readTextFile('/proc/1/environ')",
            "proc-environ",
        );
        assert!(scan("python", "open('/proc/cpuinfo'); os.environ").is_empty());
    }

    #[test]
    fn docker_socket_in_both_languages() {
        only(
            "python",
            "s.connect('/var/run/docker.sock')",
            "docker-socket",
        );
        only(
            "typescript",
            "Deno.connect({ path: '/run/Docker.SOCK' })",
            "docker-socket",
        );
    }

    #[test]
    fn metadata_addresses_in_both_languages() {
        only(
            "python",
            "urlopen('http://169.254.169.254/latest/')",
            "metadata-address",
        );
        only(
            "python",
            "h = 'Metadata.Google.Internal'",
            "metadata-address",
        );
        only(
            "typescript",
            "fetch('http://[fd00:ec2::254]/')",
            "metadata-address",
        );
        only(
            "typescript",
            "fetch('http://metadata.google.internal/computeMetadata/v1/')",
            "metadata-address",
        );
    }

    #[test]
    fn language_specific_patterns_stay_in_their_language() {
        assert!(scan("python", "Deno.dlopen(x)").is_empty());
        assert!(scan("typescript", "import ctypes").is_empty());
        assert!(scan("typescript", "exec(x)").is_empty());
        only("py", "exec(x)", "eval");
        only("TS", "Deno.dlopen(x)", "ffi");
    }

    #[test]
    fn deduplicated_ordered_and_capped() {
        let w = scan(
            "python",
            "eval(a); eval(b); exec(c); import ctypes; eval(d)",
        );
        assert_eq!(
            w,
            [
                "eval: dynamic code evaluation (eval/exec)",
                "ctypes: raw foreign function / syscall access"
            ]
        );
        // Everything at once, in an unknown language: both languages' patterns, capped.
        let all = "eval(atob(x)); exec(b64decode(y)); __import__('m'); import('n'); \
                   subprocess; Deno.run; ctypes; Deno.dlopen; /proc/self/environ; \
                   docker.sock; 169.254.169.254";
        let w = scan("other", all);
        assert_eq!(w.len(), MAX_WARNINGS, "{w:?}");
        let order: Vec<usize> = w
            .iter()
            .map(|x| PATTERNS.iter().position(|p| p.warning == x).unwrap())
            .collect();
        assert!(order.windows(2).all(|p| p[0] < p[1]), "{order:?}");
        let mut dedup = w.clone();
        dedup.dedup();
        assert_eq!(dedup, w);
        assert_eq!(scan("python", all).len(), 8);
        assert_eq!(scan("typescript", all).len(), 8);
    }

    #[test]
    fn hostile_input_does_not_panic() {
        for code in [
            "(",
            "eval",
            "évål(",
            "eval\u{0}(",
            "\u{10FFFF}import(",
            "import",
        ] {
            let _ = scan("python", code);
            let _ = scan("typescript", code);
        }
        let big = "x = 1\n".repeat(200_000);
        assert!(scan("python", &big).is_empty());
    }
}
