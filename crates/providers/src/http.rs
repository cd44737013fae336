//! The HTTP side of a client: protocol choice, timeouts, and spreading calls over HTTP/2
//! connections.
//!
//! Over HTTP/1.1 every call in flight holds a connection of its own (hyper keeps about 25 KiB
//! of buffers and channels per connection), so ten thousand runs waiting on a model hold ten
//! thousand connections. Over HTTP/2 calls are streams multiplexed on one connection; but a
//! reqwest client opens exactly one HTTP/2 connection per host and queues every stream beyond
//! the server's concurrency limit behind it. A client here is therefore a set of *lanes*, each
//! a reqwest client with its own connection: a call takes the first lane with fewer than
//! `max_streams` calls in flight, and a lane is added when every lane is full. Over HTTP/1.1
//! one lane suffices, since its pool opens connections as needed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub use chassis_core::spec::HttpVersion;

use crate::{Error, Timeouts};

/// Calls in flight on one HTTP/2 connection unless configured otherwise: below the limit
/// servers commonly advertise (hyper 200, nginx 128), so no call queues behind another.
pub const DEFAULT_MAX_STREAMS: u32 = 100;

/// `User-Agent` of every request: `chassis/VERSION`.
pub const USER_AGENT: &str = concat!("chassis/", env!("CARGO_PKG_VERSION"));

/// How a client talks HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpOptions {
    /// The protocol.
    pub version: HttpVersion,
    /// Calls in flight on one HTTP/2 connection before another is opened.
    pub max_streams: u32,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            version: HttpVersion::Auto,
            max_streams: DEFAULT_MAX_STREAMS,
        }
    }
}

/// Builds a reqwest client with these settings.
fn build(
    provider: &str,
    timeouts: &Timeouts,
    version: HttpVersion,
) -> Result<reqwest::Client, Error> {
    // HTTPS negotiates HTTP/2 or HTTP/1.1 with the server (ALPN); plain HTTP is HTTP/1.1;
    // HTTP/2 from the first byte needs a server speaking h2c over plain HTTP.
    chassis_http::builder(version)
        // Some hosts (and the firewalls before them) refuse requests that do not say who sends them.
        .user_agent(USER_AGENT)
        .connect_timeout(timeouts.connect)
        .read_timeout(timeouts.idle)
        // Requests are small and latency-bound; Nagle's algorithm would only delay them.
        .tcp_nodelay(true)
        // One attempt per call: retries are the Retry layer's, counted and journaled there.
        // reqwest would otherwise replay a request refused at the HTTP/2 level, keeping a
        // copy of every request in flight for that.
        .retry(reqwest::retry::never().max_retries_per_request(0))
        // A model endpoint answers; it does not redirect, and a redirect must not carry the
        // API key to another address.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::Config {
            provider: provider.to_string(),
            message: format!("cannot build HTTP client: {e}"),
        })
}

/// `url` parsed once, for every call to post to; the error names the provider.
pub(crate) fn endpoint(provider: &str, url: &str) -> Result<reqwest::Url, Error> {
    reqwest::Url::parse(url).map_err(|e| Error::Config {
        provider: provider.to_string(),
        message: format!("base_url is not a valid URL: {e}"),
    })
}

/// A client's lanes (see the module documentation).
pub(crate) struct Lanes {
    provider: String,
    timeouts: Timeouts,
    version: HttpVersion,
    /// Calls per lane before another lane opens; `usize::MAX` where one lane serves all.
    max_streams: usize,
    lanes: Mutex<Vec<Arc<Lane>>>,
}

struct Lane {
    client: reqwest::Client,
    in_flight: AtomicUsize,
}

/// One call's hold on a lane; released when dropped.
pub(crate) struct Checkout {
    lane: Arc<Lane>,
}

impl Checkout {
    /// The lane's client.
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.lane.client
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        self.lane.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Lanes {
    /// Lanes for calls to `url`; the first lane is built now, so bad settings fail here.
    pub(crate) fn new(
        provider: &str,
        url: &reqwest::Url,
        timeouts: Timeouts,
        options: HttpOptions,
    ) -> Result<Lanes, Error> {
        if options.max_streams == 0 {
            return Err(Error::Config {
                provider: provider.to_string(),
                message: "http2_max_streams must be at least 1".to_string(),
            });
        }
        // Only HTTP/2 multiplexes; HTTPS may negotiate it, plain HTTP only when told to.
        let may_multiplex = match options.version {
            HttpVersion::Http2 => true,
            HttpVersion::Auto => url.scheme() == "https",
            HttpVersion::Http1 => false,
        };
        let max_streams = if may_multiplex {
            options.max_streams as usize
        } else {
            usize::MAX
        };
        let first = build(provider, &timeouts, options.version)?;
        Ok(Lanes {
            provider: provider.to_string(),
            timeouts,
            version: options.version,
            max_streams,
            lanes: Mutex::new(vec![Arc::new(Lane {
                client: first,
                in_flight: AtomicUsize::new(0),
            })]),
        })
    }

    /// A lane for one call: the first with room, or a new one when all are full.
    pub(crate) fn checkout(&self) -> Checkout {
        let mut lanes = self
            .lanes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let free = lanes
            .iter()
            .find(|lane| lane.in_flight.load(Ordering::Relaxed) < self.max_streams)
            .cloned();
        let lane = match free {
            Some(lane) => lane,
            None => match build(&self.provider, &self.timeouts, self.version) {
                Ok(client) => {
                    let lane = Arc::new(Lane {
                        client,
                        in_flight: AtomicUsize::new(0),
                    });
                    lanes.push(Arc::clone(&lane));
                    tracing::debug!(
                        provider = %self.provider,
                        lanes = lanes.len(),
                        "every HTTP/2 connection is full; opening another"
                    );
                    lane
                }
                // The settings built the first lane, so this is resource exhaustion: crowd
                // the least busy lane rather than fail the call.
                Err(error) => {
                    tracing::warn!(provider = %self.provider, %error, "cannot open another HTTP/2 connection");
                    lanes
                        .iter()
                        .min_by_key(|lane| lane.in_flight.load(Ordering::Relaxed))
                        .cloned()
                        .unwrap_or_else(|| Arc::clone(&lanes[0]))
                }
            },
        };
        lane.in_flight.fetch_add(1, Ordering::Relaxed);
        Checkout { lane }
    }

    /// How many lanes are open.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lanes.lock().map(|lanes| lanes.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes(url: &str, version: HttpVersion, max_streams: u32) -> Lanes {
        Lanes::new(
            "p",
            &reqwest::Url::parse(url).unwrap(),
            Timeouts::total(std::time::Duration::from_secs(5)),
            HttpOptions {
                version,
                max_streams,
            },
        )
        .unwrap()
    }

    #[test]
    fn http2_opens_a_lane_when_every_lane_is_full_and_reuses_freed_ones() {
        let lanes = lanes("http://127.0.0.1:1/v1", HttpVersion::Http2, 2);
        let a = lanes.checkout();
        let b = lanes.checkout();
        assert_eq!(lanes.len(), 1);
        let c = lanes.checkout();
        assert_eq!(lanes.len(), 2);
        drop(a);
        let d = lanes.checkout();
        // The freed slot on the first lane is taken before the second lane's.
        assert!(Arc::ptr_eq(&d.lane, &b.lane));
        assert_eq!(lanes.len(), 2);
        drop((b, c, d));
        assert_eq!(lanes.checkout().lane.in_flight.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn http1_and_plain_auto_use_one_lane() {
        for (url, version) in [
            ("http://127.0.0.1:1/v1", HttpVersion::Auto),
            ("https://example.invalid/v1", HttpVersion::Http1),
        ] {
            let lanes = lanes(url, version, 1);
            let held: Vec<_> = (0..10).map(|_| lanes.checkout()).collect();
            assert_eq!(lanes.len(), 1, "{url} {version:?}");
            drop(held);
        }
        let lanes = lanes("https://example.invalid/v1", HttpVersion::Auto, 1);
        let _held: Vec<_> = (0..3).map(|_| lanes.checkout()).collect();
        assert_eq!(lanes.len(), 3, "HTTPS may negotiate HTTP/2");
    }

    #[test]
    fn zero_streams_is_a_config_error() {
        let e = Lanes::new(
            "p",
            &reqwest::Url::parse("http://x/").unwrap(),
            Timeouts::total(std::time::Duration::from_secs(1)),
            HttpOptions {
                version: HttpVersion::Http2,
                max_streams: 0,
            },
        )
        .err()
        .unwrap();
        assert_eq!(
            e.to_string(),
            Error::Config {
                provider: "p".into(),
                message: "http2_max_streams must be at least 1".into()
            }
            .to_string()
        );
    }
}
