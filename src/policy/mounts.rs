//! Filesystem grants: which host paths a call's `permissions.read` / `permissions.write`
//! may bind-mount into its sandbox, the Docker mounts for them, and the checks that the
//! container really got exactly those mounts. Unlike the rest of `policy`, this module
//! touches the filesystem (canonicalisation, `stat`), because a path string alone cannot
//! say where it leads.
//!
//! # Rules
//! - The operator configures roots ([`GrantRoots::new`]); every granted path must, once
//!   every symlink and `..` is resolved, lie inside one of them, compared by path
//!   component (`/home/a/projX` is not inside `/home/a/proj`). No roots: no grants.
//! - Protected paths are never mounted: [`PROTECTED`] (`/proc`, `/sys`, `/dev`, `/etc`,
//!   `/run`, `/var/run`, the Docker socket, Docker's and containerd's state, `/boot`,
//!   `/root`) plus the operator's own (`never`: the server's socket base directory, the
//!   Docker socket named by `DOCKER_HOST`). A grant is refused when it equals a protected
//!   path, lies inside one, contains one (granting `/var` would expose `/var/run`), or is
//!   the very same file as one (same device and inode: a bind mount or hard link of it
//!   placed inside a root). `/` contains everything and is always refused. `/root` is
//!   protected because root's home holds the credentials an escape would want
//!   (`.docker/config.json`, SSH keys) and no project should live there.
//! - A root itself may not be `/`, nor equal, lie inside or alias a protected path; it
//!   may contain one (a home directory holding Docker Desktop's socket), and then grants
//!   inside the root that reach that path are refused one by one.
//! - A granted path must be a regular file or a directory, valid UTF-8 (the Docker API
//!   carries paths as strings), and not `/tmp` or `/workspace` themselves, where the
//!   sandbox has its own tmpfs (paths inside them are fine).
//! - It is mounted at the same path inside the container, read-only unless it came from
//!   `permissions.write`; a path in both lists is one writable grant.
//!
//! # Races
//! [`Grant`] records the device and inode it was approved with. Call [`recheck`] right
//! before creating the container and [`verify_mounts`] after create and after start. The
//! window between [`recheck`] and the daemon's `mount(2)` remains: a process that can
//! write a parent directory of a grant (a concurrent execution with a write grant on it,
//! say) could swap the path for a symlink in that window. Closing it needs a check of the
//! mounted inode from inside the container before user code runs (compare
//! [`Grant::dev`]/[`Grant::ino`] with what the runner sees at [`Grant::path`]).
//!
//! # What a grant does not cover
//! Everything inside a granted directory is reachable, including Unix sockets: a socket
//! below a grant can be connected to even with network `none`. Keep service sockets
//! outside the roots (or under `never`).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, FileType, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use bollard::models::{
    Mount, MountBindOptions, MountBindOptionsPropagationEnum, MountPoint, MountType,
};

use super::shown::escaped_cut;

/// Paths that are never mounted into a sandbox, whatever the roots say (see the module
/// documentation for the rule). `/` is refused separately: it contains all of them.
/// The two Docker sockets lie under `/run` and `/var/run` already; they are listed so
/// they stay protected should those entries ever change.
pub const PROTECTED: [&str; 12] = [
    "/proc",
    "/sys",
    "/dev",
    "/etc",
    "/run",
    "/var/run",
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/boot",
    "/root",
];

/// Paths where the sandbox mounts its own tmpfs: a grant of exactly one of them would
/// collide with it.
pub const RESERVED: [&str; 2] = ["/tmp", "/workspace"];

/// Most paths `permissions.read` and `permissions.write` may name together.
pub const MAX_GRANTS: usize = 32;
/// Longest path accepted, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;

/// How much of a path an error message shows.
const SHOWN_CHARS: usize = 200;

/// One approved host path, mounted at the same path inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Canonical host path (absolute, no symlinks, no `..`, valid UTF-8).
    pub path: PathBuf,
    /// Mounted read-write (it came from `permissions.write`); else read-only.
    pub writable: bool,
    /// Device of `path` when it was approved.
    pub dev: u64,
    /// Inode of `path` when it was approved.
    pub ino: u64,
}

/// Which list of a call's `permissions` a path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `permissions.read`.
    Read,
    /// `permissions.write`.
    Write,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Read => "permissions.read",
            Field::Write => "permissions.write",
        })
    }
}

/// How a refused path relates to the protected path that refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// It is the protected path.
    Equals,
    /// It lies inside the protected path.
    Inside,
    /// The protected path lies inside it.
    Contains,
    /// It is the same file (device and inode) under another name.
    SameFile,
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Relation::Equals => "is",
            Relation::Inside => "lies inside",
            Relation::Contains => "contains",
            Relation::SameFile => "is the same file (a bind mount or hard link) as",
        })
    }
}

/// Why one path (a grant or a root) is refused. The messages continue either
/// `"<path>" ` or `"<path>" resolves to <canonical>, `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("is empty: give an absolute host path such as /home/me/project")]
    Empty,
    #[error("is not absolute: give the full host path, starting with `/`")]
    Relative,
    #[error("contains a NUL byte")]
    Nul,
    #[error("is {len} bytes long, the limit is {MAX_PATH_LEN}")]
    TooLong { len: usize },
    #[error("cannot be granted: no roots are configured, so filesystem grants are off; ask the operator to set grants.allowed_roots (ALLOWED_PROJECTS)")]
    NoRoots,
    #[error("cannot be resolved ({error}): the path must exist on the host and every symlink in it must resolve")]
    Unresolvable { error: String },
    #[error("which cannot be inspected ({error})")]
    Unreadable { error: String },
    #[error("which is not valid UTF-8, and the Docker API carries paths as strings: rename it or grant another path")]
    NotUtf8,
    #[error("the filesystem root, which contains every protected path: use a narrower directory")]
    FilesystemRoot,
    #[error("outside the allowed roots {roots}: ask the operator to add a root (grants.allowed_roots / ALLOWED_PROJECTS) or grant a path inside one")]
    OutsideRoots { roots: String },
    #[error("which {relation} the protected path {protected}, never mounted into a sandbox: use a path that neither contains nor lies inside it")]
    Protected {
        relation: Relation,
        protected: String,
    },
    #[error("which is where the sandbox mounts its own tmpfs: grant a path inside it instead")]
    Reserved,
    #[error("a {kind}: only regular files and directories can be granted")]
    NotFileOrDir { kind: &'static str },
    #[error("a {kind}, not a directory: a root must be a directory")]
    NotDirectory { kind: &'static str },
}

/// A change [`recheck`] found in a granted path since it was approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// It can no longer be resolved.
    Gone { error: String },
    /// It now resolves elsewhere (a component was replaced by a symlink).
    Resolves { now: String },
    /// Same path, different file.
    Replaced { was: (u64, u64), now: (u64, u64) },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Gone { error } => write!(f, "it can no longer be resolved: {error}"),
            Change::Resolves { now } => write!(f, "it now resolves to {now}"),
            Change::Replaced { was, now } => write!(
                f,
                "it is now another file: device:inode {}:{}, approved {}:{}",
                now.0, now.1, was.0, was.1
            ),
        }
    }
}

/// What [`verify_mounts`] found wrong with one mount of the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// A bind mount nobody approved.
    Extra { source: String },
    /// An approved grant (`source` set) or a server mount (`source` None) is not there.
    Missing { source: Option<String> },
    /// Mounted from another host path than approved.
    Source { expected: String, actual: String },
    /// Read-write where read-only was approved, or the reverse; a server mount that is
    /// not read-only.
    Access { expected_rw: bool, actual_rw: bool },
    /// The same destination mounted twice.
    Duplicate,
    /// Propagation other than private: host mounts could appear in the sandbox or leak out.
    Propagation { propagation: String },
    /// A mount type other than bind and tmpfs (a volume from an image `VOLUME`, say).
    Type { typ: String },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Extra { source } => {
                write!(f, "a bind mount of {source} that was never approved")
            }
            Mismatch::Missing { source: Some(source) } => {
                write!(f, "the approved bind mount of {source} is missing")
            }
            Mismatch::Missing { source: None } => {
                f.write_str("the server's own bind mount is missing")
            }
            Mismatch::Source { expected, actual } => {
                write!(f, "mounted from {actual}, approved {expected}")
            }
            Mismatch::Access {
                expected_rw,
                actual_rw,
            } => write!(
                f,
                "mounted {}, expected {}",
                access(*actual_rw),
                access(*expected_rw)
            ),
            Mismatch::Duplicate => f.write_str("mounted more than once"),
            Mismatch::Propagation { propagation } => write!(
                f,
                "propagation \"{propagation}\", expected rprivate so no mount crosses between host and sandbox"
            ),
            Mismatch::Type { typ } => write!(
                f,
                "a mount of type \"{typ}\"; only the server's bind mounts and tmpfs are allowed (does the image declare a VOLUME?)"
            ),
        }
    }
}

fn access(rw: bool) -> &'static str {
    if rw {
        "read-write"
    } else {
        "read-only"
    }
}

/// A grant, a root or a container mount that is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// A configured root cannot be used. Paths are escaped and cut, safe to show.
    #[error("grants.allowed_roots[{index}] \"{root}\" {}", explain(resolved.as_deref(), reason))]
    Root {
        index: usize,
        root: String,
        resolved: Option<String>,
        reason: Reason,
    },
    /// A `never` path from the server is not absolute or holds `..`.
    #[error("protected path [{index}] \"{path}\" must be absolute without `..`: it comes from the server's socket_base or DOCKER_HOST; fix that setting")]
    BadProtectedPath { index: usize, path: String },
    /// More than [`MAX_GRANTS`] paths in `permissions.read` and `permissions.write`.
    #[error("permissions.read and permissions.write name {count} paths together, the limit is {MAX_GRANTS}: grant a common parent directory instead")]
    TooMany { count: usize },
    /// One requested path is refused. Paths are escaped and cut, safe to show.
    #[error("{field}[{index}] \"{given}\" {}", explain(resolved.as_deref(), reason))]
    Path {
        field: Field,
        index: usize,
        given: String,
        resolved: Option<String>,
        reason: Reason,
    },
    /// An approved path changed before it was mounted.
    #[error("granted path {path} changed after it was approved ({change}): it is not mounted; retry the call, and find out what replaces files under the allowed roots")]
    Changed { path: String, change: Change },
    /// The container's mounts differ from the approved ones.
    #[error(
        "sandbox mount check failed at {destination}: {mismatch}; the container must not run code"
    )]
    Mount {
        destination: String,
        mismatch: Mismatch,
    },
}

fn explain(resolved: Option<&str>, reason: &Reason) -> String {
    match resolved {
        Some(resolved) => format!("resolves to {resolved}, {reason}"),
        None => reason.to_string(),
    }
}

/// The operator's grant roots and the protected paths, checked and canonicalised once.
#[derive(Debug, Clone)]
pub struct GrantRoots {
    roots: Vec<PathBuf>,
    protected: Vec<PathBuf>,
    protected_ids: Vec<(u64, u64, PathBuf)>,
}

impl GrantRoots {
    /// `roots`: the operator's allowed roots (`grants.allowed_roots` / `ALLOWED_PROJECTS`);
    /// each must exist, be a directory, and is canonicalised. Empty: grants are off and
    /// every grant is refused. `never`: protected paths beyond [`PROTECTED`] (the socket
    /// base directory, the Docker socket of a `unix://` `DOCKER_HOST`); absolute, need not
    /// exist; a symlink among them is protected under both names.
    pub fn new(roots: &[PathBuf], never: &[PathBuf]) -> Result<Self, GrantError> {
        let mut protected: Vec<PathBuf> = Vec::new();
        let mut protected_ids = Vec::new();
        let literal = PROTECTED.iter().map(PathBuf::from);
        for (index, path) in never.iter().enumerate() {
            if !is_normal_absolute(path) {
                return Err(GrantError::BadProtectedPath {
                    index,
                    path: shown_path(path),
                });
            }
        }
        for path in literal.chain(never.iter().map(|p| normal(p))) {
            let canonical = fs::canonicalize(&path).ok();
            for p in std::iter::once(path).chain(canonical) {
                if !protected.contains(&p) {
                    protected.push(p);
                }
            }
        }
        // `/` is protected by identity only: nothing may alias it, but everything lies in it.
        for path in std::iter::once(PathBuf::from("/")).chain(protected.iter().cloned()) {
            if let Ok(meta) = fs::metadata(&path) {
                protected_ids.push((meta.dev(), meta.ino(), path));
            }
        }
        let mut this = Self {
            roots: Vec::new(),
            protected,
            protected_ids,
        };
        for (index, root) in roots.iter().enumerate() {
            let canonical =
                this.check_root(root)
                    .map_err(|(resolved, reason)| GrantError::Root {
                        index,
                        root: shown_path(root),
                        resolved: resolved.as_deref().map(shown_path),
                        reason,
                    })?;
            if !this.roots.contains(&canonical) {
                this.roots.push(canonical);
            }
        }
        Ok(this)
    }

    /// The canonical roots.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Every protected path, as given and canonicalised (for `doctor` and logs).
    pub fn protected(&self) -> &[PathBuf] {
        &self.protected
    }

    /// Whether any root is configured; without one every grant is refused.
    pub fn enabled(&self) -> bool {
        !self.roots.is_empty()
    }

    /// Checks a call's `permissions.read` and `permissions.write` and returns the grants
    /// in mount order (parents before children), one per canonical path; a path in both
    /// lists is a single writable grant. The first refused path fails the whole call.
    pub fn approve(&self, read: &[String], write: &[String]) -> Result<Vec<Grant>, GrantError> {
        let count = read.len().saturating_add(write.len());
        if count > MAX_GRANTS {
            return Err(GrantError::TooMany { count });
        }
        // Path's ordering is component-wise, so a parent sorts before its children.
        let mut grants: BTreeMap<PathBuf, Grant> = BTreeMap::new();
        let lists = [(Field::Read, read, false), (Field::Write, write, true)];
        for (field, list, writable) in lists {
            for (index, given) in list.iter().enumerate() {
                let grant = self
                    .check_grant(given, writable)
                    .map_err(|(resolved, reason)| GrantError::Path {
                        field,
                        index,
                        given: shown(given),
                        resolved: resolved.as_deref().map(shown_path),
                        reason,
                    })?;
                grants
                    .entry(grant.path.clone())
                    .and_modify(|g| g.writable |= writable)
                    .or_insert(grant);
            }
        }
        Ok(grants.into_values().collect())
    }

    fn check_root(&self, root: &Path) -> Result<PathBuf, (Option<PathBuf>, Reason)> {
        check_lexical(root.as_os_str()).map_err(|reason| (None, reason))?;
        let (canonical, meta) = resolve(root)?;
        let fail = |reason| Err((Some(canonical.clone()), reason));
        if canonical.to_str().is_none() {
            return fail(Reason::NotUtf8);
        }
        if canonical.parent().is_none() {
            return fail(Reason::FilesystemRoot);
        }
        if let Some((relation, protected)) = self.protection(&canonical, &meta, false) {
            return fail(Reason::Protected {
                relation,
                protected: shown_path(protected),
            });
        }
        if !meta.is_dir() {
            return fail(Reason::NotDirectory {
                kind: kind(meta.file_type()),
            });
        }
        Ok(canonical)
    }

    fn check_grant(&self, given: &str, writable: bool) -> Result<Grant, (Option<PathBuf>, Reason)> {
        check_lexical(OsStr::new(given)).map_err(|reason| (None, reason))?;
        if self.roots.is_empty() {
            return Err((None, Reason::NoRoots));
        }
        let (canonical, meta) = resolve(Path::new(given))?;
        let fail = |reason| Err((Some(canonical.clone()), reason));
        if canonical.to_str().is_none() {
            return fail(Reason::NotUtf8);
        }
        if !self.roots.iter().any(|root| canonical.starts_with(root)) {
            return fail(Reason::OutsideRoots {
                roots: self
                    .roots
                    .iter()
                    .map(|r| shown_path(r))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if let Some((relation, protected)) = self.protection(&canonical, &meta, true) {
            return fail(Reason::Protected {
                relation,
                protected: shown_path(protected),
            });
        }
        if RESERVED.iter().any(|r| canonical == Path::new(r)) {
            return fail(Reason::Reserved);
        }
        let file_type = meta.file_type();
        if !(file_type.is_dir() || file_type.is_file()) {
            return fail(Reason::NotFileOrDir {
                kind: kind(file_type),
            });
        }
        Ok(Grant {
            path: canonical,
            writable,
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// The first protected path `path` equals, lies in, aliases, or (if `contains`)
    /// contains.
    fn protection(
        &self,
        path: &Path,
        meta: &Metadata,
        contains: bool,
    ) -> Option<(Relation, &Path)> {
        for protected in &self.protected {
            if path == protected {
                return Some((Relation::Equals, protected));
            }
            if path.starts_with(protected) {
                return Some((Relation::Inside, protected));
            }
            if contains && protected.starts_with(path) {
                return Some((Relation::Contains, protected));
            }
        }
        self.protected_ids
            .iter()
            .find(|(dev, ino, _)| (*dev, *ino) == (meta.dev(), meta.ino()))
            .map(|(_, _, protected)| (Relation::SameFile, protected.as_path()))
    }
}

/// The Docker mounts for `grants`, in order: bind, source = target = the canonical path,
/// read-only unless writable, propagation `rprivate`.
///
/// Non-recursive (`non_recursive: true`): a granted directory may have other file
/// systems mounted below it (sshfs, NFS, a loop image, a bind of `/etc` someone set up
/// inside a project). A recursive bind would expose them without the root and protected
/// checks, which only saw the granted path; and a read-only recursive bind leaves
/// submounts writable on daemons or kernels without recursive read-only. With a
/// non-recursive bind the sandbox sees only the file system that holds the path; a
/// submount's directory appears as it is underneath (usually empty). To reach a
/// submount, grant it: it gets its own checks and its own mount.
///
/// Docker's bind API has no `nosuid` or `nodev`; the sandbox gets the same guarantee
/// from `no-new-privileges` (setuid and file capabilities are ignored on exec), the
/// device cgroup (device nodes cannot be opened) and the dropped `CAP_MKNOD`.
pub fn grant_mounts(grants: &[Grant]) -> Vec<Mount> {
    grants
        .iter()
        .map(|grant| {
            let path = grant.path.to_string_lossy().into_owned();
            Mount {
                target: Some(path.clone()),
                source: Some(path),
                typ: Some(MountType::BIND),
                read_only: Some(!grant.writable),
                bind_options: Some(MountBindOptions {
                    propagation: Some(MountBindOptionsPropagationEnum::RPRIVATE),
                    non_recursive: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect()
}

/// Checks a created (or started) container's mounts against what the server asked for:
/// every bind mount is either an approved grant (same source, destination and access)
/// or one of the server's `fixed_destinations` (which must be read-only), each exactly
/// once, none missing, all with private propagation. tmpfs mounts are accepted; any other
/// type (volume, image, ...) is refused.
pub fn verify_mounts(
    approved: &[Grant],
    inspected: &[MountPoint],
    fixed_destinations: &[&str],
) -> Result<(), GrantError> {
    // Destination -> (approved source, or None for a server mount; writable; seen).
    let mut expected: BTreeMap<PathBuf, (Option<&Grant>, bool)> = BTreeMap::new();
    for grant in approved {
        expected.insert(grant.path.clone(), (Some(grant), false));
    }
    for dest in fixed_destinations {
        if expected
            .insert(PathBuf::from(dest), (None, false))
            .is_some()
        {
            // A grant at a server mount's destination: neither can be told apart.
            return Err(GrantError::Mount {
                destination: shown(dest),
                mismatch: Mismatch::Duplicate,
            });
        }
    }
    let mismatch = |destination: &str, mismatch| GrantError::Mount {
        destination: shown(destination),
        mismatch,
    };
    for mount in inspected {
        let destination = mount.destination.as_deref().unwrap_or("");
        match mount.typ.as_deref() {
            Some("bind") => {}
            Some("tmpfs") => continue,
            other => {
                return Err(mismatch(
                    destination,
                    Mismatch::Type {
                        typ: shown(other.unwrap_or("unknown")),
                    },
                ))
            }
        }
        let source = mount.source.as_deref().unwrap_or("");
        let Some((grant, seen)) = expected.get_mut(Path::new(destination)) else {
            return Err(mismatch(
                destination,
                Mismatch::Extra {
                    source: shown(source),
                },
            ));
        };
        if std::mem::replace(seen, true) {
            return Err(mismatch(destination, Mismatch::Duplicate));
        }
        // A daemon that does not say is taken to have mounted read-write.
        let actual_rw = mount.rw.unwrap_or(true);
        let expected_rw = grant.is_some_and(|g| g.writable);
        if let Some(grant) = grant {
            if Path::new(source) != grant.path {
                return Err(mismatch(
                    destination,
                    Mismatch::Source {
                        expected: shown_path(&grant.path),
                        actual: shown(source),
                    },
                ));
            }
        }
        if actual_rw != expected_rw {
            return Err(mismatch(
                destination,
                Mismatch::Access {
                    expected_rw,
                    actual_rw,
                },
            ));
        }
        let propagation = mount.propagation.as_deref().unwrap_or("");
        if !matches!(propagation, "" | "rprivate" | "private") {
            return Err(mismatch(
                destination,
                Mismatch::Propagation {
                    propagation: shown(propagation),
                },
            ));
        }
    }
    match expected.iter().find(|(_, (_, seen))| !seen) {
        Some((destination, (grant, _))) => Err(GrantError::Mount {
            destination: shown_path(destination),
            mismatch: Mismatch::Missing {
                source: grant.map(|g| shown_path(&g.path)),
            },
        }),
        None => Ok(()),
    }
}

/// Checks that every grant's path still canonicalises to itself and is still the same
/// file (device and inode) it was approved as: catches a path or one of its parents
/// swapped for a symlink, or the file replaced, since [`GrantRoots::approve`].
pub fn recheck(grants: &[Grant]) -> Result<(), GrantError> {
    for grant in grants {
        let changed = |change| GrantError::Changed {
            path: shown_path(&grant.path),
            change,
        };
        let now = fs::canonicalize(&grant.path).map_err(|e| {
            changed(Change::Gone {
                error: io_error(&e),
            })
        })?;
        if now != grant.path {
            return Err(changed(Change::Resolves {
                now: shown_path(&now),
            }));
        }
        let meta = fs::symlink_metadata(&now).map_err(|e| {
            changed(Change::Gone {
                error: io_error(&e),
            })
        })?;
        if (meta.dev(), meta.ino()) != (grant.dev, grant.ino) {
            return Err(changed(Change::Replaced {
                was: (grant.dev, grant.ino),
                now: (meta.dev(), meta.ino()),
            }));
        }
    }
    Ok(())
}

/// Checks that need no filesystem access: empty, relative, NUL, length.
fn check_lexical(path: &OsStr) -> Result<(), Reason> {
    let bytes = path.as_bytes();
    if bytes.is_empty() {
        return Err(Reason::Empty);
    }
    if bytes.len() > MAX_PATH_LEN {
        return Err(Reason::TooLong { len: bytes.len() });
    }
    if bytes.contains(&0) {
        return Err(Reason::Nul);
    }
    if bytes[0] != b'/' {
        return Err(Reason::Relative);
    }
    Ok(())
}

/// Canonicalises `path` and reads the metadata of the result without following a final
/// symlink (there is none unless the path changed in between; then the type check
/// refuses it).
fn resolve(path: &Path) -> Result<(PathBuf, Metadata), (Option<PathBuf>, Reason)> {
    let canonical = fs::canonicalize(path).map_err(|e| {
        (
            None,
            Reason::Unresolvable {
                error: io_error(&e),
            },
        )
    })?;
    match fs::symlink_metadata(&canonical) {
        Ok(meta) => Ok((canonical, meta)),
        Err(e) => Err((
            Some(canonical),
            Reason::Unreadable {
                error: io_error(&e),
            },
        )),
    }
}

/// Absolute and without `..` (`Path::components` already drops inner `.`).
fn is_normal_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && !path.as_os_str().as_bytes().contains(&0)
}

/// `path` rebuilt from its components (drops a trailing `/` and doubled `//`).
fn normal(path: &Path) -> PathBuf {
    path.components().collect()
}

fn kind(file_type: FileType) -> &'static str {
    if file_type.is_dir() {
        "directory"
    } else if file_type.is_file() {
        "regular file"
    } else if file_type.is_symlink() {
        "symbolic link (the path changed while it was checked)"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_fifo() {
        "named pipe"
    } else if file_type.is_block_device() {
        "block device"
    } else if file_type.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

/// An I/O error's message without the `(os error N)` noise.
fn io_error(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => error.to_string(),
    }
}

fn shown_path(path: &Path) -> String {
    shown(&path.to_string_lossy())
}

/// `text` escaped (`\n`, `\u{430}`, `\"`) and cut to [`SHOWN_CHARS`] characters.
fn shown(text: &str) -> String {
    escaped_cut(text, SHOWN_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicUsize, Ordering};

    type ReasonCheck = fn(&Reason) -> bool;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let name = format!(
                "cem-mounts-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let dir = std::env::temp_dir().join(name);
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("create temp dir");
            Self(fs::canonicalize(&dir).expect("canonical temp dir"))
        }

        fn path(&self) -> &Path {
            &self.0
        }

        fn mkdir(&self, rel: &str) -> PathBuf {
            let p = self.0.join(rel);
            fs::create_dir_all(&p).expect("mkdir");
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn s(path: &Path) -> String {
        path.to_str().expect("utf-8 test path").to_owned()
    }

    fn strings(paths: &[&str]) -> Vec<String> {
        paths.iter().map(|p| p.to_string()).collect()
    }

    /// A temp dir with `root/` as the only root.
    fn setup() -> (TempDir, PathBuf, GrantRoots) {
        let tmp = TempDir::new();
        let root = tmp.mkdir("root");
        let roots = GrantRoots::new(std::slice::from_ref(&root), &[]).expect("valid root");
        (tmp, root, roots)
    }

    fn refused(roots: &GrantRoots, read: &[String], write: &[String]) -> GrantError {
        roots
            .approve(read, write)
            .expect_err("the grant must be refused")
    }

    fn reason(err: &GrantError) -> &Reason {
        match err {
            GrantError::Path { reason, .. } | GrantError::Root { reason, .. } => reason,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn bind(source: &str, destination: &str, rw: bool) -> MountPoint {
        MountPoint {
            typ: Some("bind".to_owned()),
            source: Some(source.to_owned()),
            destination: Some(destination.to_owned()),
            rw: Some(rw),
            propagation: Some("rprivate".to_owned()),
            mode: Some(String::new()),
            ..Default::default()
        }
    }

    fn grant(path: &str, writable: bool) -> Grant {
        Grant {
            path: PathBuf::from(path),
            writable,
            dev: 1,
            ino: 2,
        }
    }

    fn mount_error(approved: &[Grant], inspected: &[MountPoint]) -> (String, Mismatch) {
        match verify_mounts(approved, inspected, &["/run/mcp"]) {
            Err(GrantError::Mount {
                destination,
                mismatch,
            }) => (destination, mismatch),
            other => panic!("unexpected {other:?}"),
        }
    }

    // ---- roots ----

    #[test]
    fn filesystem_root_is_refused_as_a_root() {
        let err = GrantRoots::new(&[PathBuf::from("/")], &[]).unwrap_err();
        assert_eq!(reason(&err), &Reason::FilesystemRoot);
        let msg = err.to_string();
        assert!(
            msg.starts_with("grants.allowed_roots[0] \"/\" resolves to /, the filesystem root"),
            "{msg}"
        );
    }

    #[test]
    fn protected_directories_are_refused_as_roots() {
        for root in [
            "/etc",
            "/proc",
            "/proc/self",
            "/sys",
            "/dev",
            "/run",
            "/boot",
        ] {
            if !Path::new(root).exists() {
                continue;
            }
            let err = GrantRoots::new(&[PathBuf::from(root)], &[]).unwrap_err();
            assert!(
                matches!(reason(&err), Reason::Protected { .. }),
                "{root}: {err}"
            );
        }
        let msg = GrantRoots::new(&[PathBuf::from("/etc")], &[])
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "grants.allowed_roots[0] \"/etc\" resolves to /etc, which is the protected path /etc, \
             never mounted into a sandbox: use a path that neither contains nor lies inside it"
        );
    }

    #[test]
    fn root_through_symlink_into_protected_is_refused() {
        let tmp = TempDir::new();
        let link = tmp.path().join("etc-link");
        symlink("/etc", &link).unwrap();
        let err = GrantRoots::new(&[link], &[]).unwrap_err();
        assert_eq!(
            reason(&err),
            &Reason::Protected {
                relation: Relation::Equals,
                protected: "/etc".into()
            }
        );
    }

    #[test]
    fn bad_roots_are_refused_with_index() {
        let tmp = TempDir::new();
        let ok = tmp.mkdir("ok");
        let file = tmp.path().join("file");
        fs::write(&file, b"x").unwrap();
        let cases: [(PathBuf, ReasonCheck); 4] = [
            (PathBuf::new(), |r| *r == Reason::Empty),
            (PathBuf::from("relative/dir"), |r| *r == Reason::Relative),
            (tmp.path().join("missing"), |r| {
                matches!(r, Reason::Unresolvable { .. })
            }),
            (file, |r| matches!(r, Reason::NotDirectory { .. })),
        ];
        for (bad, check) in cases {
            let err = GrantRoots::new(&[ok.clone(), bad.clone()], &[]).unwrap_err();
            assert!(
                matches!(err, GrantError::Root { index: 1, .. }),
                "{bad:?}: {err}"
            );
            assert!(check(reason(&err)), "{bad:?}: {err}");
            assert!(err.to_string().starts_with("grants.allowed_roots[1] "));
        }
    }

    #[test]
    fn root_may_contain_a_protected_path_but_grants_reaching_it_are_refused() {
        let tmp = TempDir::new();
        let home = tmp.mkdir("home");
        let socket_dir = tmp.mkdir("home/.docker/run");
        let project = tmp.mkdir("home/project");
        let roots = GrantRoots::new(
            std::slice::from_ref(&home),
            &[socket_dir.join("docker.sock")],
        )
        .expect("a root may contain a protected path");
        assert_eq!(roots.roots(), std::slice::from_ref(&home));
        assert!(roots.approve(&[s(&project)], &[]).is_ok());
        for path in [&home, &tmp.path().join("home/.docker"), &socket_dir] {
            let err = refused(&roots, &[s(path)], &[]);
            assert!(
                matches!(
                    reason(&err),
                    Reason::Protected {
                        relation: Relation::Contains,
                        ..
                    }
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn never_paths_must_be_absolute_and_normal() {
        for bad in ["relative", "/run/../etc", "/a/b/..", "./x", ""] {
            let err = GrantRoots::new(&[], &[PathBuf::from(bad)]).unwrap_err();
            assert!(
                matches!(err, GrantError::BadProtectedPath { index: 0, .. }),
                "{bad}: {err}"
            );
        }
        let roots = GrantRoots::new(&[], &[PathBuf::from("/srv//./sock/")]).unwrap();
        assert!(roots.protected().contains(&PathBuf::from("/srv/sock")));
        assert!(!roots.enabled());
    }

    #[test]
    fn duplicate_roots_collapse() {
        let tmp = TempDir::new();
        let root = tmp.mkdir("root");
        let again = tmp.path().join("root/../root/");
        let roots = GrantRoots::new(&[root.clone(), again], &[]).unwrap();
        assert_eq!(roots.roots(), [root]);
        assert!(roots.enabled());
    }

    // ---- approve: where a path leads ----

    #[test]
    fn plain_grants_inside_the_root() {
        let (_tmp, root, roots) = setup();
        let a = root.join("a");
        fs::create_dir(&a).unwrap();
        let file = root.join("f.txt");
        fs::write(&file, b"x").unwrap();
        let grants = roots.approve(&[s(&a), s(&file)], &[]).unwrap();
        assert_eq!(grants.len(), 2);
        assert_eq!(grants[0].path, a);
        assert!(!grants[0].writable);
        let meta = fs::metadata(&a).unwrap();
        assert_eq!((grants[0].dev, grants[0].ino), (meta.dev(), meta.ino()));
        assert_eq!(grants[1].path, file);
        // The root itself may be granted.
        let grants = roots.approve(&[], &[s(&root)]).unwrap();
        assert_eq!(
            grants,
            vec![Grant {
                writable: true,
                ..grants[0].clone()
            }]
        );
    }

    #[test]
    fn symlink_inside_root_pointing_at_etc_is_refused() {
        let (_tmp, root, roots) = setup();
        let link = root.join("etc");
        symlink("/etc", &link).unwrap();
        let err = refused(&roots, &[], &[s(&link)]);
        assert!(matches!(reason(&err), Reason::OutsideRoots { .. }), "{err}");
        let msg = err.to_string();
        assert_eq!(
            msg,
            format!(
                "permissions.write[0] \"{}\" resolves to /etc, outside the allowed roots {}: ask \
                 the operator to add a root (grants.allowed_roots / ALLOWED_PROJECTS) or grant a \
                 path inside one",
                link.display(),
                root.display()
            )
        );
        // Also through a path below the link.
        let err = refused(&roots, &[format!("{}/passwd", link.display())], &[]);
        assert!(matches!(reason(&err), Reason::OutsideRoots { .. }), "{err}");
    }

    #[test]
    fn symlink_to_a_sibling_outside_the_root_is_refused() {
        let (tmp, root, roots) = setup();
        let sibling = tmp.mkdir("sibling");
        let link = root.join("to-sibling");
        symlink(&sibling, &link).unwrap();
        let err = refused(&roots, &[s(&link)], &[]);
        match &err {
            GrantError::Path {
                field: Field::Read,
                index: 0,
                resolved: Some(resolved),
                reason: Reason::OutsideRoots { .. },
                ..
            } => assert_eq!(resolved, &s(&sibling)),
            other => panic!("unexpected {other:?}"),
        }
        // A relative symlink climbing out is the same.
        let rel = root.join("rel");
        symlink("../sibling", &rel).unwrap();
        let err = refused(&roots, &[s(&rel)], &[]);
        assert!(matches!(reason(&err), Reason::OutsideRoots { .. }), "{err}");
    }

    #[test]
    fn dot_dot_out_of_the_root_is_refused() {
        let (tmp, root, roots) = setup();
        let depth = root.components().count();
        let climb = format!("{}/{}etc", root.display(), "../".repeat(depth));
        let err = refused(&roots, &[climb], &[]);
        match &err {
            GrantError::Path {
                resolved: Some(resolved),
                reason: Reason::OutsideRoots { .. },
                ..
            } => assert_eq!(resolved, "/etc"),
            other => panic!("unexpected {other:?}"),
        }
        // Whether or not the climb ends somewhere that exists, it is refused.
        assert!(roots
            .approve(&[format!("{}/../../etc", root.display())], &[])
            .is_err());
        let outside = tmp.mkdir("outside");
        let err = refused(&roots, &[format!("{}/../outside", root.display())], &[]);
        match &err {
            GrantError::Path {
                resolved: Some(resolved),
                reason: Reason::OutsideRoots { .. },
                ..
            } => assert_eq!(resolved, &s(&outside)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn dot_dot_inside_the_root_is_canonicalised() {
        let (_tmp, root, roots) = setup();
        fs::create_dir(root.join("a")).unwrap();
        fs::create_dir(root.join("b")).unwrap();
        let grants = roots
            .approve(&[format!("{}/a/../b", root.display())], &[])
            .unwrap();
        assert_eq!(grants.len(), 1);
        assert_eq!(grants[0].path, root.join("b"));
        let grants = roots
            .approve(&[format!("{}//./b/", root.display())], &[])
            .unwrap();
        assert_eq!(grants[0].path, root.join("b"));
    }

    #[test]
    fn prefix_trick_is_refused() {
        let (tmp, root, roots) = setup();
        let sneaky = tmp.mkdir("rootX");
        assert!(s(&sneaky).starts_with(&s(&root)));
        let err = refused(&roots, &[s(&sneaky)], &[]);
        assert!(matches!(reason(&err), Reason::OutsideRoots { .. }), "{err}");
    }

    #[test]
    fn nonexistent_path_is_refused() {
        let (_tmp, root, roots) = setup();
        let err = refused(&roots, &[], &[s(&root.join("missing"))]);
        assert!(matches!(reason(&err), Reason::Unresolvable { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.starts_with("permissions.write[0] \""), "{msg}");
        assert!(
            msg.contains("cannot be resolved (no such file or directory)"),
            "{msg}"
        );
        // A dangling symlink too.
        let dangling = root.join("dangling");
        symlink(root.join("nowhere"), &dangling).unwrap();
        let err = refused(&roots, &[s(&dangling)], &[]);
        assert!(matches!(reason(&err), Reason::Unresolvable { .. }), "{err}");
    }

    #[test]
    fn malformed_entries_are_refused_with_their_index() {
        let (_tmp, root, roots) = setup();
        let good = s(&root);
        let too_long = format!("/{}", "a".repeat(MAX_PATH_LEN));
        let cases = [
            (String::new(), Reason::Empty),
            ("relative/path".to_owned(), Reason::Relative),
            ("./x".to_owned(), Reason::Relative),
            (format!("{good}\0/etc"), Reason::Nul),
            (too_long, Reason::TooLong { len: 4097 }),
        ];
        for (bad, expected) in cases {
            let err = refused(&roots, &[good.clone(), good.clone(), bad.clone()], &[]);
            assert!(
                matches!(
                    &err,
                    GrantError::Path {
                        field: Field::Read,
                        index: 2,
                        resolved: None,
                        ..
                    }
                ),
                "{err:?}"
            );
            assert_eq!(reason(&err), &expected);
            let msg = err.to_string();
            assert!(msg.starts_with("permissions.read[2] \""), "{msg}");
            assert!(!msg.contains('\0') && msg.len() < 600, "{msg}");
            let err = refused(&roots, std::slice::from_ref(&good), &[bad]);
            assert!(err.to_string().starts_with("permissions.write[0] \""));
        }
    }

    #[test]
    fn too_many_entries_are_refused() {
        let (_tmp, root, roots) = setup();
        let read = vec![s(&root); 20];
        let write = vec![s(&root); 12];
        assert_eq!(roots.approve(&read, &write).unwrap().len(), 1);
        let write = vec![s(&root); 13];
        let err = refused(&roots, &read, &write);
        assert_eq!(err, GrantError::TooMany { count: 33 });
        assert!(err
            .to_string()
            .contains("33 paths together, the limit is 32"));
    }

    #[test]
    fn hostile_path_is_escaped_and_cut_in_messages() {
        let (_tmp, _root, roots) = setup();
        let hostile = format!("rel\n\u{202E}\"{}", "x".repeat(3000));
        let msg = refused(&roots, &[hostile], &[]).to_string();
        assert!(!msg.contains('\n') && !msg.contains('\u{202E}'), "{msg}");
        assert!(msg.contains(r#""rel\n\u{202e}\"xxx"#), "{msg}");
        assert!(msg.len() < 600, "{}", msg.len());
    }

    #[test]
    fn no_roots_refuses_every_grant() {
        let roots = GrantRoots::new(&[], &[]).unwrap();
        assert!(roots.approve(&[], &[]).unwrap().is_empty());
        let err = refused(&roots, &strings(&["/tmp"]), &[]);
        assert_eq!(reason(&err), &Reason::NoRoots);
        assert!(err.to_string().contains("ALLOWED_PROJECTS"));
    }

    #[test]
    fn ancestor_of_the_socket_base_is_refused() {
        let tmp = TempDir::new();
        let root = tmp.mkdir("root");
        let base = tmp.mkdir("root/srv/code-executor");
        let roots =
            GrantRoots::new(std::slice::from_ref(&root), std::slice::from_ref(&base)).unwrap();
        for path in [root.clone(), root.join("srv")] {
            let err = refused(&roots, &[], &[s(&path)]);
            assert_eq!(
                reason(&err),
                &Reason::Protected {
                    relation: Relation::Contains,
                    protected: s(&base)
                },
                "{err}"
            );
        }
        let err = refused(&roots, &[s(&base)], &[]);
        assert!(matches!(
            reason(&err),
            Reason::Protected {
                relation: Relation::Equals,
                ..
            }
        ));
        let inside = tmp.mkdir("root/srv/code-executor/exec-1");
        let err = refused(&roots, &[s(&inside)], &[]);
        assert!(matches!(
            reason(&err),
            Reason::Protected {
                relation: Relation::Inside,
                ..
            }
        ));
        // A sibling of the socket base is fine.
        let sibling = tmp.mkdir("root/srv/other");
        assert!(roots.approve(&[s(&sibling)], &[]).is_ok());
    }

    #[test]
    fn protected_symlink_target_is_protected_too() {
        let tmp = TempDir::new();
        let root = tmp.mkdir("root");
        let real = tmp.mkdir("root/real-base");
        let link = tmp.path().join("base-link");
        symlink(&real, &link).unwrap();
        let roots = GrantRoots::new(std::slice::from_ref(&root), &[link]).unwrap();
        let err = refused(&roots, &[s(&real)], &[]);
        assert!(matches!(
            reason(&err),
            Reason::Protected {
                relation: Relation::Equals,
                ..
            }
        ));
    }

    #[test]
    fn hard_link_of_a_protected_file_is_refused() {
        let tmp = TempDir::new();
        let root = tmp.mkdir("root");
        let secret = tmp.path().join("secret");
        fs::write(&secret, b"token").unwrap();
        let alias = root.join("alias");
        fs::hard_link(&secret, &alias).unwrap();
        let roots =
            GrantRoots::new(std::slice::from_ref(&root), std::slice::from_ref(&secret)).unwrap();
        let err = refused(&roots, &[s(&alias)], &[]);
        assert_eq!(
            reason(&err),
            &Reason::Protected {
                relation: Relation::SameFile,
                protected: s(&secret)
            }
        );
    }

    #[test]
    fn only_files_and_directories_can_be_granted() {
        let (_tmp, root, roots) = setup();
        let socket_path = root.join("svc.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket_path).unwrap();
        let err = refused(&roots, &[s(&socket_path)], &[]);
        assert_eq!(reason(&err), &Reason::NotFileOrDir { kind: "socket" });
        assert!(err.to_string().contains("resolves to"), "{err}");
    }

    // ---- approve: dedupe and order ----

    #[test]
    fn read_and_write_of_the_same_path_is_one_writable_grant() {
        let (_tmp, root, roots) = setup();
        let a = root.join("a");
        fs::create_dir(&a).unwrap();
        let via_dots = format!("{}/a/../a", root.display());
        let grants = roots
            .approve(&[s(&a), via_dots.clone()], &[via_dots])
            .unwrap();
        assert_eq!(grants.len(), 1);
        assert_eq!(grants[0].path, a);
        assert!(grants[0].writable);
        // Write first, read second: still writable.
        let grants = roots.approve(&[s(&a)], &[s(&a)]).unwrap();
        assert!(grants[0].writable);
    }

    #[test]
    fn nested_grants_are_kept_parents_first() {
        let (_tmp, root, roots) = setup();
        let deep = root.join("p/q");
        fs::create_dir_all(&deep).unwrap();
        let other = root.join("p-other");
        fs::create_dir(&other).unwrap();
        let grants = roots
            .approve(&[s(&deep), s(&other)], &[s(&root.join("p"))])
            .unwrap();
        let paths: Vec<_> = grants
            .iter()
            .map(|g| (g.path.clone(), g.writable))
            .collect();
        assert_eq!(
            paths,
            vec![
                (root.join("p"), true),
                (deep.clone(), false),
                (other.clone(), false)
            ]
        );
    }

    // ---- mounts ----

    #[test]
    fn grant_mounts_are_private_non_recursive_binds_at_the_same_path() {
        let mounts = grant_mounts(&[grant("/srv/p", true), grant("/srv/p/ro", false)]);
        assert_eq!(mounts.len(), 2);
        for (mount, (path, ro)) in mounts.iter().zip([("/srv/p", false), ("/srv/p/ro", true)]) {
            assert_eq!(mount.typ, Some(MountType::BIND));
            assert_eq!(mount.source.as_deref(), Some(path));
            assert_eq!(mount.target.as_deref(), Some(path));
            assert_eq!(mount.read_only, Some(ro));
            let opts = mount.bind_options.as_ref().expect("bind options");
            assert_eq!(
                opts.propagation,
                Some(MountBindOptionsPropagationEnum::RPRIVATE)
            );
            assert_eq!(opts.non_recursive, Some(true));
            assert!(mount.volume_options.is_none() && mount.tmpfs_options.is_none());
        }
    }

    #[test]
    fn verify_accepts_exactly_the_expected_mounts() {
        let approved = [grant("/srv/p", true), grant("/srv/p/ro", false)];
        let mut tmpfs = MountPoint {
            typ: Some("tmpfs".to_owned()),
            destination: Some("/tmp".to_owned()),
            rw: Some(true),
            ..Default::default()
        };
        let inspected = vec![
            bind("/run/code-executor/e1", "/run/mcp", false),
            bind("/srv/p/ro", "/srv/p/ro", false),
            tmpfs.clone(),
            bind("/srv/p", "/srv/p/", true),
        ];
        verify_mounts(&approved, &inspected, &["/run/mcp"]).unwrap();
        tmpfs.propagation = None;
        verify_mounts(&[], &[tmpfs], &[]).unwrap();
        verify_mounts(&[], &[], &[]).unwrap();
    }

    #[test]
    fn verify_catches_an_extra_bind() {
        let approved = [grant("/srv/p", false)];
        let inspected = [
            bind("/srv/p", "/srv/p", false),
            bind("/run/x", "/run/mcp", false),
            bind("/var/run/docker.sock", "/var/run/docker.sock", true),
        ];
        let (destination, mismatch) = mount_error(&approved, &inspected);
        assert_eq!(destination, "/var/run/docker.sock");
        assert_eq!(
            mismatch,
            Mismatch::Extra {
                source: "/var/run/docker.sock".into()
            }
        );
        let msg = verify_mounts(&approved, &inspected, &["/run/mcp"])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("never approved"), "{msg}");
    }

    #[test]
    fn verify_catches_a_missing_bind() {
        let approved = [grant("/srv/p", false), grant("/srv/q", true)];
        let inspected = [
            bind("/srv/p", "/srv/p", false),
            bind("/run/x", "/run/mcp", false),
        ];
        let (destination, mismatch) = mount_error(&approved, &inspected);
        assert_eq!(destination, "/srv/q");
        assert_eq!(
            mismatch,
            Mismatch::Missing {
                source: Some("/srv/q".into())
            }
        );
        // The server's own mount missing.
        let (destination, mismatch) =
            mount_error(&approved[..1], &[bind("/srv/p", "/srv/p", false)]);
        assert_eq!(destination, "/run/mcp");
        assert_eq!(mismatch, Mismatch::Missing { source: None });
    }

    #[test]
    fn verify_catches_read_write_where_read_only_was_approved() {
        let approved = [grant("/srv/p", false)];
        let inspected = [
            bind("/srv/p", "/srv/p", true),
            bind("/run/x", "/run/mcp", false),
        ];
        assert_eq!(
            mount_error(&approved, &inspected).1,
            Mismatch::Access {
                expected_rw: false,
                actual_rw: true
            }
        );
        // Unknown access counts as read-write.
        let mut unknown = bind("/srv/p", "/srv/p", false);
        unknown.rw = None;
        let inspected = [unknown, bind("/run/x", "/run/mcp", false)];
        assert!(matches!(
            mount_error(&approved, &inspected).1,
            Mismatch::Access { .. }
        ));
        // The server's own mount must be read-only.
        let inspected = [
            bind("/srv/p", "/srv/p", false),
            bind("/run/x", "/run/mcp", true),
        ];
        let (destination, mismatch) = mount_error(&approved, &inspected);
        assert_eq!(destination, "/run/mcp");
        assert!(matches!(mismatch, Mismatch::Access { .. }));
    }

    #[test]
    fn verify_catches_a_different_source() {
        let approved = [grant("/srv/p", false)];
        let inspected = [
            bind("/etc", "/srv/p", false),
            bind("/run/x", "/run/mcp", false),
        ];
        assert_eq!(
            mount_error(&approved, &inspected).1,
            Mismatch::Source {
                expected: "/srv/p".into(),
                actual: "/etc".into()
            }
        );
    }

    #[test]
    fn verify_catches_duplicates_volumes_and_shared_propagation() {
        let approved = [grant("/srv/p", false)];
        let fixed = bind("/run/x", "/run/mcp", false);
        let ok = bind("/srv/p", "/srv/p", false);
        let (_, mismatch) = mount_error(&approved, &[ok.clone(), ok.clone(), fixed.clone()]);
        assert_eq!(mismatch, Mismatch::Duplicate);

        let volume = MountPoint {
            typ: Some("volume".to_owned()),
            name: Some("anon".to_owned()),
            source: Some("/var/lib/docker/volumes/anon/_data".to_owned()),
            destination: Some("/data".to_owned()),
            rw: Some(true),
            ..Default::default()
        };
        let (destination, mismatch) = mount_error(&approved, &[ok.clone(), fixed.clone(), volume]);
        assert_eq!(destination, "/data");
        assert_eq!(
            mismatch,
            Mismatch::Type {
                typ: "volume".into()
            }
        );
        let untyped = MountPoint {
            typ: None,
            ..ok.clone()
        };
        assert!(matches!(
            mount_error(&approved, &[untyped, fixed.clone()]).1,
            Mismatch::Type { .. }
        ));

        let mut shared = ok;
        shared.propagation = Some("rshared".to_owned());
        assert_eq!(
            mount_error(&approved, &[shared, fixed]).1,
            Mismatch::Propagation {
                propagation: "rshared".into()
            }
        );
    }

    // ---- recheck ----

    #[test]
    fn recheck_accepts_unchanged_grants() {
        let (_tmp, root, roots) = setup();
        let a = root.join("a");
        fs::create_dir(&a).unwrap();
        let grants = roots.approve(&[s(&a)], &[s(&root)]).unwrap();
        recheck(&grants).unwrap();
    }

    #[test]
    fn recheck_catches_a_path_swapped_for_a_symlink() {
        let (tmp, root, roots) = setup();
        let a = root.join("a");
        fs::create_dir(&a).unwrap();
        let grants = roots.approve(&[], &[s(&a)]).unwrap();
        fs::remove_dir(&a).unwrap();
        symlink("/etc", &a).unwrap();
        let err = recheck(&grants).unwrap_err();
        assert_eq!(
            err,
            GrantError::Changed {
                path: s(&a),
                change: Change::Resolves { now: "/etc".into() }
            }
        );
        assert!(err.to_string().contains("it now resolves to /etc"), "{err}");

        // A parent swapped for a symlink to a look-alike tree.
        let p = root.join("p/q");
        fs::create_dir_all(&p).unwrap();
        let grants = roots.approve(&[s(&p)], &[]).unwrap();
        let elsewhere = tmp.mkdir("elsewhere/q");
        fs::remove_dir_all(root.join("p")).unwrap();
        symlink(elsewhere.parent().unwrap(), root.join("p")).unwrap();
        assert!(matches!(
            recheck(&grants),
            Err(GrantError::Changed {
                change: Change::Resolves { .. },
                ..
            })
        ));
    }

    #[test]
    fn recheck_catches_a_replaced_or_removed_path() {
        let (_tmp, root, roots) = setup();
        let a = root.join("a");
        fs::create_dir(&a).unwrap();
        let grants = roots.approve(&[s(&a)], &[]).unwrap();
        // Keep the old inode alive so the new directory cannot reuse its number.
        let kept = root.join("kept");
        fs::rename(&a, &kept).unwrap();
        fs::create_dir(&a).unwrap();
        assert!(matches!(
            recheck(&grants),
            Err(GrantError::Changed {
                change: Change::Replaced { .. },
                ..
            })
        ));
        fs::remove_dir(&a).unwrap();
        let err = recheck(&grants).unwrap_err();
        assert!(matches!(
            err,
            GrantError::Changed {
                change: Change::Gone { .. },
                ..
            }
        ));
        assert!(err.to_string().contains("no longer be resolved"), "{err}");
    }
}
