//! Removal of orphaned sandbox containers: those whose owning server process is gone
//! (a crash, a kill -9) or that are older than any execution could be.

use std::collections::HashMap;

use bollard::query_parameters::ListContainersOptionsBuilder;

use crate::sandbox::lifecycle::Removals;
use crate::sandbox::spec::{MANAGED_LABEL, OWNER_LABEL};
use crate::sandbox::{Engine, SandboxError};

/// Identity of a server process: `host:pid:start-time`, unique across PID reuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub host: String,
    pub pid: u32,
    pub start_time: u64,
}

impl Owner {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        Self {
            host: hostname(),
            pid,
            start_time: process_start_time(pid).unwrap_or(0),
        }
    }

    /// The label value.
    pub fn label(&self) -> String {
        format!("{}:{}:{}", self.host, self.pid, self.start_time)
    }

    /// Parses a label value; `None` for anything malformed.
    pub fn parse(label: &str) -> Option<Self> {
        let mut parts = label.rsplitn(3, ':');
        let start_time = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let host = parts.next()?.to_owned();
        Some(Self {
            host,
            pid,
            start_time,
        })
    }
}

/// Decides whether a labelled container is an orphan. `alive` tells whether a process
/// with that pid and start time runs on this host.
pub fn is_orphan(
    labels: &HashMap<String, String>,
    age_secs: u64,
    max_age_secs: u64,
    me: &Owner,
    alive: impl Fn(u32, u64) -> bool,
) -> bool {
    if age_secs > max_age_secs {
        return true;
    }
    let Some(owner) = labels.get(OWNER_LABEL).and_then(|l| Owner::parse(l)) else {
        // Ours by label but with no readable owner: only age can tell.
        return false;
    };
    if owner == *me {
        return false;
    }
    owner.host == me.host && !alive(owner.pid, owner.start_time)
}

/// Removes orphaned containers; returns how many were found.
pub async fn reap_orphans(
    engine: &Engine,
    removals: &Removals,
    me: &Owner,
    max_age_secs: u64,
) -> Result<usize, SandboxError> {
    let docker = engine.docker().await?;
    let filters = HashMap::from([("label", vec![format!("{MANAGED_LABEL}=true")])]);
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let containers =
        docker
            .list_containers(Some(opts))
            .await
            .map_err(|source| SandboxError::Docker {
                action: "list containers",
                target: MANAGED_LABEL.to_owned(),
                source,
            })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut count = 0;
    for c in containers {
        let (Some(id), Some(labels)) = (c.id, c.labels) else {
            continue;
        };
        let age = (now - c.created.unwrap_or(now)).max(0) as u64;
        if is_orphan(&labels, age, max_age_secs, me, |pid, start| {
            process_start_time(pid) == Some(start)
        }) {
            tracing::info!(container = %id, age_secs = age, "removing orphaned sandbox container");
            removals.remove(docker.clone(), id);
            count += 1;
        }
    }
    Ok(count)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Start time (clock ticks since boot) of a process, from `/proc/<pid>/stat`.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')' come fields 3.. ; start time is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Owner {
        Owner {
            host: "box".into(),
            pid: 100,
            start_time: 5,
        }
    }

    fn labels(owner: &str) -> HashMap<String, String> {
        HashMap::from([(OWNER_LABEL.to_owned(), owner.to_owned())])
    }

    #[test]
    fn owner_label_round_trips_even_with_colons_in_host() {
        let o = Owner {
            host: "a:b".into(),
            pid: 7,
            start_time: 99,
        };
        assert_eq!(Owner::parse(&o.label()), Some(o));
        assert_eq!(Owner::parse("garbage"), None);
        assert_eq!(Owner::parse("h:notapid:1"), None);
    }

    #[test]
    fn own_containers_are_never_orphans_while_young() {
        assert!(!is_orphan(&labels("box:100:5"), 10, 900, &me(), |_, _| {
            false
        }));
    }

    #[test]
    fn containers_of_a_dead_process_on_this_host_are_orphans() {
        assert!(is_orphan(&labels("box:200:7"), 10, 900, &me(), |_, _| {
            false
        }));
        assert!(!is_orphan(&labels("box:200:7"), 10, 900, &me(), |_, _| {
            true
        }));
    }

    #[test]
    fn reused_pid_with_another_start_time_counts_as_dead() {
        let alive = |pid: u32, start: u64| pid == 200 && start == 8;
        assert!(is_orphan(&labels("box:200:7"), 10, 900, &me(), alive));
    }

    #[test]
    fn other_hosts_containers_are_left_until_too_old() {
        assert!(!is_orphan(
            &labels("other:200:7"),
            10,
            900,
            &me(),
            |_, _| false
        ));
        assert!(is_orphan(
            &labels("other:200:7"),
            901,
            900,
            &me(),
            |_, _| true
        ));
    }

    #[test]
    fn unreadable_owner_is_left_until_too_old() {
        assert!(!is_orphan(&HashMap::new(), 10, 900, &me(), |_, _| false));
        assert!(is_orphan(&labels("???"), 1000, 900, &me(), |_, _| true));
    }

    #[test]
    fn current_process_start_time_is_readable() {
        let me = Owner::current();
        assert!(me.start_time > 0);
        assert_eq!(process_start_time(me.pid), Some(me.start_time));
    }
}
