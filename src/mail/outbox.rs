use std::sync::Mutex;

use async_trait::async_trait;

use super::{MailTransport, Message};
use crate::error::MailError;

/// A transport that keeps every message in memory, for development and
/// tests: a test reads the link and the passcode back from it.
///
/// ```
/// use guestpass::mail::Outbox;
/// let outbox = Outbox::new();
/// assert!(outbox.messages().is_empty());
/// ```
#[derive(Debug, Default)]
pub struct Outbox {
    messages: Mutex<Vec<Message>>,
    fail_next: Mutex<u32>,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every message so far, oldest first.
    pub fn messages(&self) -> Vec<Message> {
        self.messages.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The newest message sent to the address with comparison key `key`.
    pub fn last_to(&self, key: &str) -> Option<Message> {
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .rev()
            .find(|m| m.to.address.comparison_key() == key)
            .cloned()
    }

    /// Forgets every message.
    pub fn clear(&self) {
        self.messages.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Makes the next `n` sends fail, to exercise delivery failures.
    pub fn fail_next(&self, n: u32) {
        *self.fail_next.lock().unwrap_or_else(|e| e.into_inner()) = n;
    }
}

#[async_trait]
impl MailTransport for Outbox {
    async fn send(&self, message: &Message) -> Result<(), MailError> {
        {
            let mut fail = self.fail_next.lock().unwrap_or_else(|e| e.into_inner());
            if *fail > 0 {
                *fail -= 1;
                return Err(MailError::Transport {
                    message: "outbox set to fail".to_owned(),
                });
            }
        }
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message.clone());
        Ok(())
    }
}
