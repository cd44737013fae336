//! The fallback chain: models tried in order until one answers.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{CallEvent, ChatRequest, ChatResponse, Error, ModelClient};

/// One model of a chain.
pub struct Link {
    /// `provider:model`, for reports.
    pub label: String,
    /// Model id sent to the provider.
    pub model: String,
    /// The (already layered) client.
    pub client: Arc<dyn ModelClient>,
}

/// Tries each model in order; the first answer wins.
pub struct Fallback {
    links: Vec<Link>,
}

impl Fallback {
    /// A chain of `links`, primary first.
    pub fn new(links: Vec<Link>) -> Fallback {
        Fallback { links }
    }

    /// Labels of the chain, primary first.
    pub fn labels(&self) -> Vec<String> {
        self.links.iter().map(|l| l.label.clone()).collect()
    }

    /// The chain's links, primary first.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// Replaces each link's client with `wrap(link)`, keeping labels and order: how a chain
    /// is recorded or replayed (see [`crate::cassette`]) without rebuilding its agent.
    pub fn wrap_clients(&mut self, mut wrap: impl FnMut(&Link) -> Arc<dyn ModelClient>) {
        for link in &mut self.links {
            link.client = wrap(link);
        }
    }

    /// Tries the chain starting at link `start` (a run that gave up on earlier models).
    pub async fn complete_from(
        &self,
        start: usize,
        request: &ChatRequest<'_>,
    ) -> Result<ChatResponse, Error> {
        let mut failures: Vec<(String, Error)> = Vec::new();
        let links = self.links.iter().skip(start).collect::<Vec<_>>();
        for (i, link) in links.iter().enumerate() {
            let attempt = if request.model == link.model {
                link.client.complete(request).await
            } else {
                let mut request = request.clone();
                request.model = link.model.as_str().into();
                link.client.complete(&request).await
            };
            match attempt {
                Ok(response) => return Ok(response),
                Err(error) => {
                    if let Some(next) = links.get(i + 1) {
                        tracing::warn!(from = %link.label, to = %next.label, %error, "falling back");
                        request.report.report(CallEvent::Fallback {
                            from: link.label.clone(),
                            to: next.label.clone(),
                            reason: error.to_string(),
                        });
                    }
                    failures.push((link.label.clone(), error));
                }
            }
        }
        let unavailable = failures.iter().any(|(_, e)| e.is_unavailable());
        let summary = failures
            .iter()
            .map(|(label, e)| format!("{label}: {e}"))
            .collect::<Vec<_>>()
            .join("; ");
        Err(Error::Exhausted {
            summary: if summary.is_empty() {
                "no model left in the chain".to_string()
            } else {
                summary
            },
            unavailable,
        })
    }
}

#[async_trait]
impl ModelClient for Fallback {
    async fn complete(&self, request: &ChatRequest<'_>) -> Result<ChatResponse, Error> {
        self.complete_from(0, request).await
    }
}
