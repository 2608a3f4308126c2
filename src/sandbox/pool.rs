//! The warm pool: per language, a few containers prepared ahead with the default spec
//! (created, attached, started, runner waiting on stdin). A pooled container has never
//! run anything and runs exactly one execution; one that died or grew old is discarded
//! (and removed), never handed to user code.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use crate::proxy::socket_dir::SocketDir;
use crate::request::Language;
use crate::sandbox::lifecycle::PreparedContainer;

/// A container prepared for one execution, with its socket directory and id.
#[derive(Debug)]
pub struct Fresh {
    pub container: PreparedContainer,
    pub socket_dir: SocketDir,
    pub execution_id: String,
}

/// Warm containers of both languages.
#[derive(Debug, Default)]
pub struct WarmPool {
    python: Mutex<VecDeque<Fresh>>,
    typescript: Mutex<VecDeque<Fresh>>,
}

impl WarmPool {
    fn slot(&self, language: Language) -> &Mutex<VecDeque<Fresh>> {
        match language {
            Language::Python => &self.python,
            Language::TypeScript => &self.typescript,
        }
    }

    /// Takes the oldest warm container that is still waiting and younger than `max_age`.
    /// Those that fail the check are dropped, which removes them.
    pub fn take(&self, language: Language, max_age: Duration) -> Option<Fresh> {
        let mut slot = self
            .slot(language)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        while let Some(mut fresh) = slot.pop_front() {
            if fresh.container.age() < max_age && fresh.container.is_waiting() {
                return Some(fresh);
            }
            tracing::info!(container = %fresh.container.id(), "discarding a pooled container that died or aged");
        }
        None
    }

    /// Adds a prepared container.
    pub fn put(&self, language: Language, fresh: Fresh) {
        self.slot(language)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(fresh);
    }

    /// Drops pooled containers that died or aged; returns how many are left.
    pub fn prune(&self, language: Language, max_age: Duration) -> usize {
        let mut slot = self
            .slot(language)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        slot.retain_mut(|f| f.container.age() < max_age && f.container.is_waiting());
        slot.len()
    }

    /// Number of warm containers of a language.
    pub fn len(&self, language: Language) -> usize {
        self.slot(language)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Empties the pool (its containers are removed).
    pub fn drain(&self) {
        for language in [Language::Python, Language::TypeScript] {
            self.slot(language)
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
    }
}
