//! Filesystem grants against the real engine: an approved path is mounted and verified,
//! and a path swapped for a symlink between approval and mount stops the execution
//! before any code runs, with no container left behind.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use code_executor_mcp::config::Settings;
use code_executor_mcp::request::{ExecuteArgs, Language, Permissions, RequestPolicy};
use code_executor_mcp::sandbox::{Sandbox, SandboxError};
use tokio_util::sync::CancellationToken;

/// A fresh allowed root with `data/f.txt`, readable by the sandbox user.
fn root(name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let root = std::env::temp_dir().join(format!(
        "ce-grants-{name}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::write(root.join("data/f.txt"), "granted\n").unwrap();
    for p in [root.clone(), root.join("data")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(
        root.join("data/f.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    root
}

async fn sandbox_with_root(root: &Path) -> Option<Sandbox> {
    common::sandbox().await?;
    let mut settings = Settings::default();
    settings.grants.allowed_roots = vec![root.to_owned()];
    settings.pool_size = 0;
    Some(Sandbox::new(settings, common::no_tools()))
}

fn read_request(sandbox: &Sandbox, path: &Path) -> code_executor_mcp::request::ExecutionRequest {
    let mut args = ExecuteArgs::with_code(format!(
        "print(open({:?}).read().strip())",
        path.join("f.txt")
    ));
    args.permissions = Some(Permissions {
        read: vec![path.display().to_string()],
        ..Permissions::default()
    });
    let policy: RequestPolicy<'_> = sandbox.request_policy();
    args.validate(Language::Python, &policy, "test").unwrap()
}

#[tokio::test]
async fn an_approved_read_grant_is_mounted_and_readable() {
    let root = root("ok");
    let Some(sandbox) = sandbox_with_root(&root).await else {
        return;
    };
    let request = read_request(&sandbox, &root.join("data"));
    let result = sandbox
        .execute(&request, None, CancellationToken::new())
        .await
        .unwrap();
    assert!(result.success, "{result:?}");
    assert_eq!(result.output, "granted\n");
    sandbox.shutdown(Duration::from_secs(10)).await;
    common::assert_all_removed(&common::docker().await, Duration::from_secs(10)).await;
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn a_path_swapped_for_a_symlink_after_approval_never_reaches_the_code() {
    let root = root("swap");
    let Some(sandbox) = sandbox_with_root(&root).await else {
        return;
    };
    let data = root.join("data");
    let request = read_request(&sandbox, &data);
    // Between the check and the mount: the approved directory becomes a symlink to /etc.
    std::fs::rename(&data, root.join("data.orig")).unwrap();
    std::os::unix::fs::symlink("/etc", &data).unwrap();
    let err = sandbox
        .execute(&request, None, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::Grant(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains(&data.display().to_string()), "{text}");
    assert!(text.contains("before the code ran"), "{text}");
    sandbox.shutdown(Duration::from_secs(10)).await;
    common::assert_all_removed(&common::docker().await, Duration::from_secs(10)).await;
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn a_directory_replaced_by_another_after_approval_is_caught_by_its_inode() {
    let root = root("replace");
    let Some(sandbox) = sandbox_with_root(&root).await else {
        return;
    };
    let data = root.join("data");
    let request = read_request(&sandbox, &data);
    std::fs::rename(&data, root.join("data.orig")).unwrap();
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f.txt"), "planted\n").unwrap();
    let err = sandbox
        .execute(&request, None, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::Grant(_)), "{err}");
    sandbox.shutdown(Duration::from_secs(10)).await;
    common::assert_all_removed(&common::docker().await, Duration::from_secs(10)).await;
    std::fs::remove_dir_all(&root).unwrap();
}
