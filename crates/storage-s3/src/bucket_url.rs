//! Bucket URLs a user can type, parsed into a store configuration.
//!
//! | URL | store |
//! |---|---|
//! | `/path/to/dir`, `relative/dir`, `file:///path/to/dir` | [`LocalDirStore`] |
//! | `s3://bucket/optional/prefix?endpoint=URL&region=R&style=path\|virtual&connect_timeout=5s&timeout=30s` | [`S3Store`] |
//! | `memory://` | a fresh, empty [`MemoryStore`] |
//!
//! Credentials never go in the URL (one containing `user:pass@` is rejected):
//! they come from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
//! `AWS_SESSION_TOKEN`. Without `style`, an S3 URL with an `endpoint` uses
//! path style (what self-hosted servers expect) and one without uses virtual
//! host style (AWS).
//!
//! Timeouts of an S3 store (`5s`, `1.5s`, `500ms`; a bare number is
//! seconds): `connect_timeout` bounds setting up a connection (default
//! 5 s), `timeout` a whole request (default 30 s). The URL's value wins;
//! without one, `BAE_SYNC_S3_CONNECT_TIMEOUT` and `BAE_SYNC_S3_TIMEOUT`
//! are read; then the defaults. A request that times out is not retried,
//! so a dead endpoint fails within about one timeout.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::error::{ConfigError, StoreError};
use crate::local::LocalDirStore;
use crate::memory::MemoryStore;
use crate::s3_store::{AddressingStyle, S3Config, S3Store};
use crate::store::ObjectStore;

/// Which store a bucket URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// A local directory.
    Local(PathBuf),
    /// An S3-compatible bucket.
    S3(Box<S3Config>),
    /// An in-memory store (tests, dry runs).
    Memory,
}

impl StoreConfig {
    /// Parses a bucket URL (see the module docs for the accepted forms).
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(invalid(url, "empty"));
        }
        let Some((scheme, _)) = url.split_once("://") else {
            return Ok(StoreConfig::Local(PathBuf::from(url)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => parse_file(url),
            "s3" => parse_s3(url).map(|c| StoreConfig::S3(Box::new(c))),
            "memory" => Ok(StoreConfig::Memory),
            other => Err(ConfigError::UnsupportedScheme(other.to_owned())),
        }
    }

    /// Builds the store. A local directory must exist
    /// ([`StoreError::MissingDirectory`] otherwise).
    pub fn open(self) -> Result<Arc<dyn ObjectStore>, StoreError> {
        Ok(match self {
            StoreConfig::Local(path) => Arc::new(LocalDirStore::new(path)?),
            StoreConfig::S3(config) => Arc::new(S3Store::new(*config)?),
            StoreConfig::Memory => Arc::new(MemoryStore::new()),
        })
    }

    /// Builds the store, creating a local directory that does not exist
    /// yet (for setting up a new library; everything else uses
    /// [`StoreConfig::open`]).
    pub fn create(self) -> Result<Arc<dyn ObjectStore>, StoreError> {
        match self {
            StoreConfig::Local(path) => Ok(Arc::new(LocalDirStore::create(path)?)),
            other => other.open(),
        }
    }
}

/// Parses a bucket URL and opens the store it names (a local directory
/// must exist).
pub fn open_store(url: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    StoreConfig::parse(url)?.open()
}

/// Parses a bucket URL and opens the store it names, creating a local
/// directory that does not exist yet. Only setting up a new library
/// should ask for this.
pub fn create_store(url: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    StoreConfig::parse(url)?.create()
}

/// The bucket URL to save for later commands: a local directory given as a
/// relative path becomes absolute (against the current directory, without
/// resolving symlinks), so a command run from another directory still
/// names the same bucket; other URLs are kept as given (trimmed). A path
/// that is not UTF-8 cannot be saved as text and is refused.
pub fn absolute_bucket_url(url: &str) -> Result<String, ConfigError> {
    let trimmed = url.trim();
    match StoreConfig::parse(trimmed)? {
        StoreConfig::Local(path) if !trimmed.contains("://") => std::path::absolute(&path)
            .map_err(|e| invalid(trimmed, &e.to_string()))?
            .to_str()
            .map(str::to_owned)
            .ok_or_else(|| invalid(trimmed, "the absolute path is not UTF-8")),
        _ => Ok(trimmed.to_owned()),
    }
}

fn parse_file(raw: &str) -> Result<StoreConfig, ConfigError> {
    let url = Url::parse(raw).map_err(|e| invalid(raw, &e.to_string()))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(raw, "file URLs take no query or fragment"));
    }
    url.to_file_path()
        .map(StoreConfig::Local)
        .map_err(|()| invalid(raw, "not an absolute local path (use file:///path)"))
}

fn parse_s3(raw: &str) -> Result<S3Config, ConfigError> {
    let url = Url::parse(raw).map_err(|e| invalid(raw, &e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        // Do not echo the URL back: it holds a secret.
        return Err(invalid(
            "s3://***",
            "credentials do not belong in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ));
    }
    let bucket = url.host_str().unwrap_or_default();
    if bucket.is_empty() || url.port().is_some() {
        return Err(invalid(raw, "expected s3://bucket/prefix"));
    }
    let mut config = S3Config::new(bucket);
    config.prefix = url.path().trim_matches('/').to_owned();
    let mut style = None;
    config.connect_timeout = env_timeout(CONNECT_TIMEOUT_VAR)?.unwrap_or(config.connect_timeout);
    config.request_timeout = env_timeout(TIMEOUT_VAR)?.unwrap_or(config.request_timeout);
    for (name, value) in url.query_pairs() {
        match name.as_ref() {
            "connect_timeout" => {
                config.connect_timeout = timeout(&value)
                    .map_err(|why| invalid(raw, &format!("connect_timeout: {why}")))?
            }
            "timeout" => {
                config.request_timeout =
                    timeout(&value).map_err(|why| invalid(raw, &format!("timeout: {why}")))?
            }
            "endpoint" => {
                Url::parse(&value).map_err(|e| invalid(raw, &format!("endpoint: {e}")))?;
                config.endpoint = Some(value.into_owned());
            }
            "region" => config.region = Some(value.into_owned()),
            "style" => {
                style = Some(match value.as_ref() {
                    "path" => AddressingStyle::Path,
                    "virtual" => AddressingStyle::VirtualHost,
                    _ => return Err(invalid(raw, "style must be path or virtual")),
                })
            }
            other => return Err(invalid(raw, &format!("unknown option {other:?}"))),
        }
    }
    config.style = style.unwrap_or(if config.endpoint.is_some() {
        AddressingStyle::Path
    } else {
        AddressingStyle::VirtualHost
    });
    Ok(config)
}

/// The environment variable giving the connect timeout of S3 stores whose
/// URL gives none.
pub const CONNECT_TIMEOUT_VAR: &str = "BAE_SYNC_S3_CONNECT_TIMEOUT";
/// The environment variable giving the request timeout of S3 stores whose
/// URL gives none.
pub const TIMEOUT_VAR: &str = "BAE_SYNC_S3_TIMEOUT";

fn env_timeout(var: &str) -> Result<Option<Duration>, ConfigError> {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => {
            timeout(&value)
                .map(Some)
                .map_err(|why| ConfigError::InvalidTimeout {
                    setting: var.to_owned(),
                    value,
                    reason: why,
                })
        }
        _ => Ok(None),
    }
}

/// `5s`, `1.5s`, `500ms` or `5` (seconds): at least 1 ms, at most a day.
fn timeout(text: &str) -> Result<Duration, &'static str> {
    let text = text.trim();
    let (number, unit) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 0.001)
    } else {
        (text.strip_suffix('s').unwrap_or(text), 1.0)
    };
    let seconds = number
        .trim()
        .parse::<f64>()
        .map_err(|_| "expected a duration such as 5s, 1.5s or 500ms")?
        * unit;
    // Checked in milliseconds: a tiny positive number (`1e-12s`) rounds
    // to a zero Duration, which would time every request out at once.
    if !(0.001..=86_400.0).contains(&seconds) {
        return Err("must be at least 1ms and at most a day");
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn invalid(url: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(url: &str) -> S3Config {
        match StoreConfig::parse(url).unwrap() {
            StoreConfig::S3(config) => *config,
            other => panic!("{url} parsed as {other:?}"),
        }
    }

    #[test]
    fn paths_and_file_urls_name_a_local_directory() {
        assert_eq!(
            StoreConfig::parse("/srv/bae-bucket").unwrap(),
            StoreConfig::Local("/srv/bae-bucket".into())
        );
        assert_eq!(
            StoreConfig::parse("rel/dir").unwrap(),
            StoreConfig::Local("rel/dir".into())
        );
        assert_eq!(
            StoreConfig::parse("file:///srv/bae%20bucket").unwrap(),
            StoreConfig::Local("/srv/bae bucket".into())
        );
        assert!(StoreConfig::parse("file://host/x").is_err());
    }

    #[test]
    fn s3_url_carries_bucket_prefix_endpoint_region_and_style() {
        let c =
            s3("s3://music/libs/alice/?endpoint=http://127.0.0.1:9000&region=garage&style=virtual");
        assert_eq!(c.bucket, "music");
        assert_eq!(c.prefix, "libs/alice");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.region.as_deref(), Some("garage"));
        assert_eq!(c.style, AddressingStyle::VirtualHost);
        assert_eq!(c.credentials, None);
    }

    #[test]
    fn s3_style_defaults_to_path_with_endpoint_and_virtual_on_aws() {
        assert_eq!(
            s3("s3://b?endpoint=http://localhost:9000").style,
            AddressingStyle::Path
        );
        let aws = s3("s3://b");
        assert_eq!(aws.style, AddressingStyle::VirtualHost);
        assert_eq!((aws.prefix.as_str(), aws.endpoint), ("", None));
    }

    #[test]
    fn credentials_in_the_url_are_rejected_without_echoing_them() {
        let err = StoreConfig::parse("s3://AKID:hunter2@bucket/p").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn bad_urls_are_rejected() {
        for url in [
            "",
            "s3://",
            "s3://b?style=diagonal",
            "s3://b?colour=red",
            "s3://b?endpoint=not a url",
            "s3://b:9000/x",
        ] {
            assert!(StoreConfig::parse(url).is_err(), "{url:?} accepted");
        }
        assert_eq!(
            StoreConfig::parse("ftp://x").unwrap_err(),
            ConfigError::UnsupportedScheme("ftp".into())
        );
    }

    #[test]
    fn s3_timeouts_come_from_the_url() {
        let c = s3("s3://b?endpoint=http://localhost:9000&connect_timeout=1.5s&timeout=500ms");
        assert_eq!(c.connect_timeout, Duration::from_millis(1500));
        assert_eq!(c.request_timeout, Duration::from_millis(500));
        let c = s3("s3://b?timeout=7");
        assert_eq!(c.request_timeout, Duration::from_secs(7));
        for bad in ["0s", "-1s", "soon", "2d", "100000s", "NaNs"] {
            let url = format!("s3://b?timeout={bad}");
            let err = StoreConfig::parse(&url).unwrap_err().to_string();
            assert!(err.contains("timeout"), "{url}: {err}");
        }
    }

    #[test]
    fn a_relative_directory_is_saved_as_an_absolute_path() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            absolute_bucket_url(" rel/dir ").unwrap(),
            cwd.join("rel/dir").to_str().unwrap()
        );
        assert_eq!(absolute_bucket_url("/srv/b").unwrap(), "/srv/b");
        assert_eq!(
            absolute_bucket_url("file:///srv/b").unwrap(),
            "file:///srv/b"
        );
        assert_eq!(absolute_bucket_url("s3://b/p").unwrap(), "s3://b/p");
        assert!(absolute_bucket_url("ftp://x").is_err());
    }

    #[test]
    fn a_missing_directory_is_opened_only_by_create() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = dir.path().join("bucket");
        let url = bucket.to_str().unwrap();
        assert!(matches!(
            open_store(url).unwrap_err(),
            StoreError::MissingDirectory { .. }
        ));
        assert!(!bucket.exists());
        create_store(url).unwrap();
        assert!(bucket.is_dir());
        open_store(url).unwrap();
    }

    #[test]
    fn memory_url_opens_an_empty_memory_store() {
        assert_eq!(
            StoreConfig::parse("memory://").unwrap(),
            StoreConfig::Memory
        );
        assert!(open_store("memory://").is_ok());
    }

    /// Review finding 6: a timeout "more than 0" seconds that rounds to
    /// zero nanoseconds (`1e-12s`) passed the check and made every request
    /// time out at once.
    #[test]
    fn a_timeout_that_rounds_to_zero_is_refused() {
        for tiny in ["1e-12s", "0.0000000001", "1e-7ms"] {
            for option in ["timeout", "connect_timeout"] {
                let url = format!("s3://b?{option}={tiny}");
                match StoreConfig::parse(&url) {
                    Err(e) => assert!(e.to_string().contains(option), "{url}: {e}"),
                    Ok(StoreConfig::S3(c)) => panic!(
                        "{url} accepted: connect {:?}, request {:?}",
                        c.connect_timeout, c.request_timeout
                    ),
                    Ok(other) => panic!("{url} parsed as {other:?}"),
                }
            }
        }
    }

    proptest::proptest! {
        /// Any text, or an S3 URL with any query, is a store config or a
        /// typed error.
        #[test]
        fn any_url_is_a_config_or_a_typed_error(
            text in "\\PC{0,100}",
            query in "[a-z_=&%:/.0-9]{0,60}",
        ) {
            let _ = StoreConfig::parse(&text);
            let _ = StoreConfig::parse(&format!("s3://bucket/p?{query}"));
        }
    }
}
