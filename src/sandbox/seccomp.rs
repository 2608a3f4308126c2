//! The sandbox's seccomp profile. `seccomp/sandbox.json` is embedded at build time and
//! handed to Docker inline (`SecurityOpt: ["seccomp=<json>"]`) for every container: the
//! engine's API takes the profile's content, not a path. The profile is policy as data with
//! a `comment` on every rule; `seccomp/README.md` explains its design and `tests/seccomp.rs`
//! runs it against the real engine.

use std::sync::LazyLock;

/// The profile as committed: pretty-printed, a `comment` on every rule.
pub const PROFILE: &str = include_str!("../../seccomp/sandbox.json");

/// The profile without insignificant whitespace (comments kept: `docker inspect` shows why
/// each rule is there), computed once.
static COMPACT: LazyLock<String> = LazyLock::new(|| {
    let profile: serde_json::Value = serde_json::from_str(PROFILE)
        .expect("seccomp/sandbox.json is valid JSON: the unit tests of this module check it");
    profile.to_string()
});

/// The `SecurityOpt` entry that loads the profile into a container: `seccomp=<compact JSON>`.
pub fn security_opt() -> String {
    format!("seccomp={}", COMPACT.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeSet;

    /// Every namespace flag `clone` can carry: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
    /// NEWUSER, NEWPID, NEWNET (CLONE_NEWTIME shares its bit with the exit signal in
    /// `clone`, and only `clone3`/`unshare` read it; both are refused).
    const CLONE_NEW_FLAGS: [u64; 7] = [
        0x0002_0000,
        0x0200_0000,
        0x0400_0000,
        0x0800_0000,
        0x1000_0000,
        0x2000_0000,
        0x4000_0000,
    ];

    /// Syscalls that must each have their own EPERM rule (issue 4, part 1).
    const REFUSED: [&str; 40] = [
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "pidfd_getfd",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "keyctl",
        "add_key",
        "request_key",
        "mount",
        "umount2",
        "pivot_root",
        "chroot",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "move_mount",
        "open_tree",
        "mount_setattr",
        "unshare",
        "setns",
        "open_by_handle_at",
        "name_to_handle_at",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "clock_settime",
        "clock_adjtime",
        "settimeofday",
        "adjtimex",
        "swapon",
        "swapoff",
        "reboot",
    ];

    /// Syscalls that Docker 20.10's default profile refuses to a container without
    /// capabilities (never listed, or listed only for a capability we drop, or, for the
    /// last three, measured on this engine: its filter answers EPERM). Allowing any of
    /// them would make our profile wider than Docker's somewhere.
    const DOCKER_DEFAULT_REFUSES: [&str; 52] = [
        "acct",
        "add_key",
        "bpf",
        "chroot",
        "clock_settime",
        "create_module",
        "delete_module",
        "fanotify_init",
        "finit_module",
        "fsconfig",
        "fsmount",
        "fsopen",
        "fspick",
        "get_kernel_syms",
        "get_mempolicy",
        "init_module",
        "ioperm",
        "iopl",
        "kcmp",
        "kexec_file_load",
        "kexec_load",
        "keyctl",
        "lookup_dcookie",
        "mbind",
        "mount",
        "move_mount",
        "nfsservctl",
        "open_by_handle_at",
        "open_tree",
        "perf_event_open",
        "pidfd_getfd",
        "pivot_root",
        "process_madvise",
        "query_module",
        "quotactl",
        "reboot",
        "request_key",
        "set_mempolicy",
        "setdomainname",
        "sethostname",
        "setns",
        "settimeofday",
        "swapoff",
        "swapon",
        "syslog",
        "umount2",
        "unshare",
        "uselib",
        "userfaultfd",
        "pkey_alloc",
        "pkey_free",
        "pkey_mprotect",
    ];

    fn profile() -> Value {
        serde_json::from_str(PROFILE).expect("seccomp/sandbox.json parses as JSON")
    }

    fn rules() -> Vec<Value> {
        profile()["syscalls"].as_array().expect("syscalls").clone()
    }

    fn names(rule: &Value) -> Vec<&str> {
        rule["names"]
            .as_array()
            .expect("names")
            .iter()
            .map(|n| n.as_str().expect("name is a string"))
            .collect()
    }

    fn allowed() -> BTreeSet<String> {
        rules()
            .iter()
            .filter(|r| r["action"] == "SCMP_ACT_ALLOW")
            .flat_map(|r| names(r).into_iter().map(str::to_owned).collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn refuses_by_default_with_eperm_on_x86_abis() {
        let p = profile();
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(p["defaultErrnoRet"], 1);
        let arches: Vec<&str> = p["architectures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            arches,
            ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        );
    }

    #[test]
    fn every_rule_says_why_and_uses_known_actions_and_operators() {
        for rule in rules() {
            let comment = rule["comment"].as_str().unwrap_or_default();
            assert!(comment.len() >= 10, "rule without a reason: {rule}");
            assert!(!names(&rule).is_empty(), "rule without names: {rule}");
            let action = rule["action"].as_str().unwrap();
            assert!(
                ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"].contains(&action),
                "{rule}"
            );
            if action == "SCMP_ACT_ERRNO" {
                assert_eq!(rule["errnoRet"], 1, "refusals answer EPERM: {rule}");
            }
            let mut indexes = BTreeSet::new();
            for arg in rule["args"].as_array().into_iter().flatten() {
                let op = arg["op"].as_str().unwrap();
                assert!(
                    ["SCMP_CMP_EQ", "SCMP_CMP_MASKED_EQ"].contains(&op),
                    "{rule}"
                );
                // runc (and gVisor) OR together comparisons on the same argument: two
                // conditions on one index would silently widen the rule.
                assert!(
                    indexes.insert(arg["index"].as_u64().unwrap()),
                    "two comparisons on one argument: {rule}"
                );
            }
        }
    }

    #[test]
    fn each_refused_syscall_has_its_own_eperm_rule_and_is_never_allowed() {
        let allowed = allowed();
        for name in REFUSED {
            let own: Vec<Value> = rules().into_iter().filter(|r| names(r) == [name]).collect();
            assert_eq!(own.len(), 1, "{name}: expected exactly one rule of its own");
            assert_eq!(own[0]["action"], "SCMP_ACT_ERRNO", "{name}");
            assert_eq!(own[0]["errnoRet"], 1, "{name}");
            assert!(
                own[0]["args"].is_null(),
                "{name}: refused whatever its arguments"
            );
            assert!(!allowed.contains(name), "{name} is also allowed");
        }
    }

    #[test]
    fn clone3_gets_enosys_and_clone_never_creates_namespaces() {
        let rules = rules();
        let clone3: Vec<&Value> = rules
            .iter()
            .filter(|r| names(r).contains(&"clone3"))
            .collect();
        assert_eq!(clone3.len(), 1);
        // With no tracer, SECCOMP_RET_TRACE makes the kernel (and gVisor) answer ENOSYS.
        assert_eq!(clone3[0]["action"], "SCMP_ACT_TRACE");

        let mask: u64 = CLONE_NEW_FLAGS.iter().sum();
        let clone: Vec<&Value> = rules
            .iter()
            .filter(|r| names(r).contains(&"clone"))
            .collect();
        let allows: Vec<&&Value> = clone
            .iter()
            .filter(|r| r["action"] == "SCMP_ACT_ALLOW")
            .collect();
        assert_eq!(allows.len(), 1, "clone is allowed by exactly one rule");
        let args = allows[0]["args"]
            .as_array()
            .expect("clone is allowed only with a flags filter");
        assert_eq!(args.len(), 1);
        assert_eq!(args[0]["index"], 0);
        assert_eq!(args[0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(args[0]["value"].as_u64(), Some(mask));
        assert_eq!(args[0]["valueTwo"].as_u64().unwrap_or(0), 0);
        for flag in CLONE_NEW_FLAGS {
            let refused = clone.iter().any(|r| {
                r["action"] == "SCMP_ACT_ERRNO"
                    && r["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"
                    && r["args"][0]["value"].as_u64() == Some(flag)
                    && r["args"][0]["valueTwo"].as_u64() == Some(flag)
            });
            assert!(refused, "no explicit refusal of clone with flag {flag:#x}");
        }
        for name in ["fork", "vfork"] {
            assert!(
                allowed().contains(name),
                "{name}: processes without namespaces"
            );
        }
    }

    #[test]
    fn narrower_than_dockers_default_profile() {
        let allowed = allowed();
        for name in DOCKER_DEFAULT_REFUSES {
            assert!(
                !allowed.contains(name),
                "{name}: Docker's default refuses it"
            );
        }
    }

    #[test]
    fn unconditional_allow_rules_do_not_repeat_a_syscall() {
        let mut seen = BTreeSet::new();
        for rule in rules() {
            if rule["action"] == "SCMP_ACT_ALLOW" && rule["args"].is_null() {
                for name in names(&rule) {
                    assert!(seen.insert(name.to_owned()), "{name} listed twice");
                }
            }
        }
    }

    #[test]
    fn security_opt_carries_the_whole_profile_on_one_line() {
        let opt = security_opt();
        let json = opt.strip_prefix("seccomp=").expect("seccomp= prefix");
        assert!(!json.contains('\n'));
        assert!(json.len() < PROFILE.len());
        let parsed: Value = serde_json::from_str(json).unwrap();
        assert_eq!(parsed, profile());
    }
}
