//! The connection to the Docker Engine: made on first use, with the API version
//! negotiated, and errors that say which endpoint was tried.

use bollard::Docker;
use tokio::sync::OnceCell;

use crate::sandbox::SandboxError;

/// A lazily connected Docker client.
#[derive(Debug, Default)]
pub struct Engine {
    docker: OnceCell<Docker>,
}

impl Engine {
    pub fn new() -> Self {
        Self::default()
    }

    /// Where the engine is looked for, for messages.
    pub fn endpoint() -> String {
        match std::env::var("DOCKER_HOST") {
            Ok(host) if !host.is_empty() => format!("{host} (from DOCKER_HOST)"),
            _ => "unix:///var/run/docker.sock (DOCKER_HOST unset)".to_owned(),
        }
    }

    /// The connected client; connects and negotiates the API version on first use.
    /// A failure is not cached, so the next call tries again.
    pub async fn docker(&self) -> Result<&Docker, SandboxError> {
        self.docker
            .get_or_try_init(|| async {
                let unreachable = |source| SandboxError::EngineUnreachable {
                    endpoint: Self::endpoint(),
                    source,
                };
                let docker = Docker::connect_with_defaults().map_err(unreachable)?;
                docker.negotiate_version().await.map_err(unreachable)
            })
            .await
    }

    /// Checks that an image is present locally.
    pub async fn require_image(&self, image: &str) -> Result<(), SandboxError> {
        match self.docker().await?.inspect_image(image).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Err(SandboxError::ImageMissing {
                image: image.to_owned(),
            }),
            Err(source) => Err(SandboxError::Docker {
                action: "inspect image",
                target: image.to_owned(),
                source,
            }),
        }
    }
}

/// True for a 404 answer from the engine.
pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
