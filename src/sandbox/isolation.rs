//! The isolation a sandbox gets beyond its container spec: which container runtime runs it
//! (runc, or gVisor's runsc when the engine has it) and whether our AppArmor profile is
//! applied. Decided once, from the operator's settings and what the engine and kernel
//! offer; a runtime or profile the operator asks for but the host lacks is an error, never
//! a quiet fallback to weaker isolation.

use std::path::Path;

use serde::Serialize;

use crate::config::{AppArmorMode, SandboxSettings};

/// The runtime `auto` prefers when the engine has it registered.
pub const GVISOR_RUNTIME: &str = "runsc";
/// The engine's default runtime.
pub const DEFAULT_RUNTIME: &str = "runc";

/// Why the isolation the operator asked for cannot be had.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IsolationError {
    #[error("sandbox.runtime = {wanted:?} is not registered with the Docker engine (it has: {registered}); install and register it (`make gvisor-setup` for runsc), or set sandbox.runtime = \"auto\"")]
    RuntimeMissing { wanted: String, registered: String },
    #[error("sandbox.apparmor = \"required\" but {reason}; load the profile with `make apparmor-load` on a host whose kernel has AppArmor, or set sandbox.apparmor = \"auto\"")]
    AppArmorMissing { reason: String },
}

/// The isolation every sandbox container of this server gets.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Isolation {
    /// Container runtime passed to the engine.
    pub runtime: String,
    /// AppArmor profile applied to every container, if any.
    pub apparmor_profile: Option<String>,
    /// Why AppArmor is not applied, when it is not.
    pub apparmor_note: Option<String>,
}

impl Isolation {
    /// True when the runtime is gVisor (`runsc`, or a variant registered as `runsc-*`).
    pub fn is_gvisor(&self) -> bool {
        self.runtime == GVISOR_RUNTIME || self.runtime.starts_with("runsc-")
    }
}

/// Picks the runtime: `auto` takes runsc when registered, else runc; a named runtime must
/// be registered (runc always is).
pub fn resolve_runtime(setting: &str, registered: &[String]) -> Result<String, IsolationError> {
    let has = |name: &str| registered.iter().any(|r| r == name);
    match setting {
        "auto" if has(GVISOR_RUNTIME) => Ok(GVISOR_RUNTIME.to_owned()),
        "auto" | DEFAULT_RUNTIME => Ok(DEFAULT_RUNTIME.to_owned()),
        wanted if has(wanted) => Ok(wanted.to_owned()),
        wanted => {
            let mut names = registered.to_vec();
            names.sort();
            Err(IsolationError::RuntimeMissing {
                wanted: wanted.to_owned(),
                registered: if names.is_empty() {
                    "none listed".to_owned()
                } else {
                    names.join(", ")
                },
            })
        }
    }
}

/// What the host offers for AppArmor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppArmorHost {
    /// The engine reports AppArmor among its security options.
    pub engine_has_apparmor: bool,
    /// The profile is listed as loaded by the kernel.
    pub profile_loaded: bool,
}

impl AppArmorHost {
    /// Reads the kernel's view under `sys` (normally `/sys`).
    pub fn probe(sys: &Path, engine_has_apparmor: bool, profile: &str) -> Self {
        let listed = std::fs::read_to_string(sys.join("kernel/security/apparmor/profiles"))
            .map(|text| profile_listed(&text, profile))
            .unwrap_or(false);
        Self {
            engine_has_apparmor,
            profile_loaded: listed,
        }
    }
}

/// True when `profiles` (the kernel's list, `name (mode)` per line) holds `profile`.
pub fn profile_listed(profiles: &str, profile: &str) -> bool {
    profiles
        .lines()
        .filter_map(|line| line.rsplit_once(" ("))
        .any(|(name, _mode)| name == profile)
}

/// Decides whether the profile is applied: `Ok((Some(profile), None))` when it is,
/// `Ok((None, Some(note)))` when it cannot be and that is allowed.
pub fn resolve_apparmor(
    mode: AppArmorMode,
    profile: &str,
    host: &AppArmorHost,
) -> Result<(Option<String>, Option<String>), IsolationError> {
    let missing = if mode == AppArmorMode::Off {
        return Ok((
            None,
            Some("AppArmor turned off (sandbox.apparmor = \"off\")".to_owned()),
        ));
    } else if !host.engine_has_apparmor {
        "AppArmor is not available: the kernel or the engine has no AppArmor support".to_owned()
    } else if !host.profile_loaded {
        format!("AppArmor profile {profile} is not loaded (run `make apparmor-load`)")
    } else {
        return Ok((Some(profile.to_owned()), None));
    };
    match mode {
        AppArmorMode::Required => Err(IsolationError::AppArmorMissing { reason: missing }),
        _ => Ok((None, Some(missing))),
    }
}

/// Decides the isolation from the settings and the engine's `docker info`.
pub fn decide(
    settings: &SandboxSettings,
    info: &bollard::models::SystemInfo,
    sys: &Path,
) -> Result<Isolation, IsolationError> {
    let registered: Vec<String> = info
        .runtimes
        .as_ref()
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default();
    let runtime = resolve_runtime(&settings.runtime, &registered)?;
    let engine_has_apparmor = info
        .security_options
        .as_ref()
        .is_some_and(|opts| opts.iter().any(|o| o.contains("name=apparmor")));
    let host = AppArmorHost::probe(sys, engine_has_apparmor, &settings.apparmor_profile);
    let (apparmor_profile, apparmor_note) =
        resolve_apparmor(settings.apparmor, &settings.apparmor_profile, &host)?;
    Ok(Isolation {
        runtime,
        apparmor_profile,
        apparmor_note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn auto_prefers_gvisor_only_when_registered() {
        assert_eq!(
            resolve_runtime("auto", &names(&["runc", "runsc"])).unwrap(),
            "runsc"
        );
        assert_eq!(resolve_runtime("auto", &names(&["runc"])).unwrap(), "runc");
        assert_eq!(resolve_runtime("auto", &[]).unwrap(), "runc");
    }

    #[test]
    fn a_named_runtime_the_engine_lacks_is_an_error_not_a_fallback() {
        let err = resolve_runtime("runsc", &names(&["runc", "io.containerd.runc.v2"])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("\"runsc\""), "{text}");
        assert!(text.contains("io.containerd.runc.v2, runc"), "{text}");
        assert!(text.contains("make gvisor-setup"), "{text}");
        assert!(resolve_runtime("kata", &names(&["runc"])).is_err());
        assert_eq!(
            resolve_runtime("kata", &names(&["runc", "kata"])).unwrap(),
            "kata"
        );
        assert_eq!(resolve_runtime("runc", &[]).unwrap(), "runc");
    }

    #[test]
    fn profile_list_matches_whole_names_only() {
        let list = "docker-default (enforce)\ncode-executor-sandbox-old (enforce)\n";
        assert!(!profile_listed(list, "code-executor-sandbox"));
        assert!(profile_listed(
            "code-executor-sandbox (enforce)\n",
            "code-executor-sandbox"
        ));
        assert!(!profile_listed("", "code-executor-sandbox"));
    }

    #[test]
    fn apparmor_applies_only_when_loaded_and_required_makes_absence_fatal() {
        let p = "code-executor-sandbox";
        let none = AppArmorHost {
            engine_has_apparmor: false,
            profile_loaded: false,
        };
        let unloaded = AppArmorHost {
            engine_has_apparmor: true,
            profile_loaded: false,
        };
        let ready = AppArmorHost {
            engine_has_apparmor: true,
            profile_loaded: true,
        };
        let (applied, note) = resolve_apparmor(AppArmorMode::Auto, p, &none).unwrap();
        assert_eq!(applied, None);
        assert!(note.unwrap().contains("not available"));
        let (applied, note) = resolve_apparmor(AppArmorMode::Auto, p, &unloaded).unwrap();
        assert_eq!(applied, None);
        assert!(note.unwrap().contains("make apparmor-load"));
        assert_eq!(
            resolve_apparmor(AppArmorMode::Auto, p, &ready).unwrap(),
            (Some(p.to_owned()), None)
        );
        assert!(resolve_apparmor(AppArmorMode::Required, p, &none).is_err());
        assert!(resolve_apparmor(AppArmorMode::Required, p, &unloaded).is_err());
        assert!(resolve_apparmor(AppArmorMode::Required, p, &ready).is_ok());
        let (applied, _) = resolve_apparmor(AppArmorMode::Off, p, &ready).unwrap();
        assert_eq!(applied, None);
    }

    #[test]
    fn decide_reads_runtimes_and_security_options_from_docker_info() {
        let info = bollard::models::SystemInfo {
            runtimes: Some(
                [
                    ("runc".to_owned(), Default::default()),
                    ("runsc".to_owned(), Default::default()),
                ]
                .into(),
            ),
            security_options: Some(vec!["name=seccomp,profile=default".to_owned()]),
            ..Default::default()
        };
        let iso = decide(
            &SandboxSettings::default(),
            &info,
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(iso.runtime, "runsc");
        assert_eq!(iso.apparmor_profile, None);
        let required = SandboxSettings {
            apparmor: AppArmorMode::Required,
            ..SandboxSettings::default()
        };
        assert!(decide(&required, &info, Path::new("/nonexistent")).is_err());
    }
}
