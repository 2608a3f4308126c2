//! Forwards a running execution's output to the MCP client as progress notifications
//! (when the client sent a progress token) and log notifications, with a heartbeat while
//! the code is quiet so clients that reset their timeout on progress keep waiting.

// MCP logging is deprecated by SEP-2577 but still what today's clients show; keep it
// until they move on.
#![allow(deprecated)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{
    LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken,
};
use rmcp::{Peer, RoleServer};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::Mutex;

use crate::sandbox::lifecycle::{OutputChunk, StreamKind};

/// Quiet time after which a heartbeat progress notification is sent.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// Largest piece of output carried by one notification.
const MAX_NOTIFICATION_TEXT: usize = 16 * 1024;

/// Where notifications go.
pub struct Forwarder {
    pub peer: Peer<RoleServer>,
    pub progress_token: Option<ProgressToken>,
    /// The level the client asked for with `logging/setLevel`; `None` means all.
    pub log_level: Arc<Mutex<Option<LoggingLevel>>>,
    pub execution_label: String,
}

impl Forwarder {
    /// Runs until the sender side closes (the execution ended).
    pub async fn run(self, mut rx: UnboundedReceiver<OutputChunk>) {
        let started = Instant::now();
        let mut progress = 0.0_f64;
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
        loop {
            tokio::select! {
                chunk = rx.recv() => {
                    let Some(chunk) = chunk else { break };
                    let text = String::from_utf8_lossy(&chunk.bytes).into_owned();
                    for piece in split_text(&text, MAX_NOTIFICATION_TEXT) {
                        progress += 1.0;
                        self.send_progress(progress, format!("{}: {piece}", stream_name(chunk.stream))).await;
                        self.send_log(chunk.stream, piece).await;
                    }
                    ticker.reset();
                }
                _ = ticker.tick() => {
                    progress += 1.0;
                    let secs = started.elapsed().as_secs();
                    self.send_progress(progress, format!("{} still running ({secs} s)", self.execution_label)).await;
                }
            }
        }
    }

    async fn send_progress(&self, progress: f64, message: String) {
        if let Some(token) = &self.progress_token {
            let param =
                ProgressNotificationParam::new(token.clone(), progress).with_message(message);
            if let Err(e) = self.peer.notify_progress(param).await {
                tracing::debug!(error = %e, "progress notification not sent");
            }
        }
    }

    async fn send_log(&self, stream: StreamKind, text: &str) {
        let level = match stream {
            StreamKind::Stdout => LoggingLevel::Info,
            StreamKind::Stderr => LoggingLevel::Warning,
        };
        if let Some(min) = *self.log_level.lock().await {
            if severity(level) < severity(min) {
                return;
            }
        }
        let data = serde_json::json!({ "stream": stream_name(stream), "text": text });
        let param = LoggingMessageNotificationParam::new(level, data).with_logger("sandbox");
        if let Err(e) = self.peer.notify_logging_message(param).await {
            tracing::debug!(error = %e, "log notification not sent");
        }
    }
}

/// Rank of a level: higher is more severe (RFC 5424 order).
fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

fn stream_name(s: StreamKind) -> &'static str {
    match s {
        StreamKind::Stdout => "stdout",
        StreamKind::Stderr => "stderr",
    }
}

/// Splits text into pieces of at most `max` bytes, on character boundaries.
fn split_text(text: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_respects_char_boundaries() {
        let text = "é".repeat(10); // 20 bytes
        let pieces = split_text(&text, 5);
        assert!(pieces.iter().all(|p| p.len() <= 5));
        assert_eq!(pieces.concat(), text);
        assert!(split_text("", 5).is_empty());
        assert_eq!(split_text("abc", 5), vec!["abc"]);
    }
}
