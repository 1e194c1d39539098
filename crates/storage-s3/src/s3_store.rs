//! The S3 store over rust-s3: AWS, Garage, MinIO, Ceph RGW, s3s.
//!
//! Every request goes through the store's [`RetryPolicy`]: transient
//! failures (5xx, 429, 408, timeouts, connection errors) are retried with
//! bounded, jittered backoff; 403, 404, 400 and the like are not.
//!
//! That policy is the only retry layer, and no process-wide setting is
//! changed for it (the host app may use rust-s3 for its own buckets).
//! rust-s3 0.38 wraps the requests `Bucket`'s methods make
//! (`Request::response_data`, `response_header`, ...) in a retry loop of its
//! own (`request::retry_request`: up to [`s3::get_retries`] more tries, 1 by
//! default, after 1 s, 4 s, ...), which replays the commands it deems safe
//! (`Command::is_retry_safe`): GET, ranged GET, HEAD, LIST and multipart
//! parts. So the store makes its requests with `send_once`, through
//! `Request::response`, rust-s3's single attempt. Only multipart initiate,
//! complete and abort use `Bucket`'s methods, for the answers rust-s3 parses
//! and validates; its loop never replays those. `tests/s3_attempts.rs`
//! counts every operation's requests with rust-s3's retries on.
//!
//! Files move in parts of [`S3Store::PART_SIZE`]: `put_file` uploads a
//! larger file as a multipart upload, one part in memory at a time, and
//! `get_to_file` downloads with ranged GETs of one part each. Each part is
//! retried on its own, so a transient failure costs one part, not the whole
//! object.
//!
//! Whole-object reads are bounded by the caller's `max_bytes` without
//! trusting the server to be honest: `get` is one ranged GET of the first
//! `max_bytes + 1` bytes (an object that fills it is too large), and
//! `get_to_file` refuses an object as soon as the first part's
//! `Content-Range` (or the bytes received) shows it is larger. Every ranged
//! GET reads at most the bytes it asked for, even from a server that
//! ignores the `Range` header and sends the whole object.

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use s3::command::{Command, HttpMethod, Multipart};
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::request::tokio_backend::ReqwestRequest;
use s3::request::{Request, ResponseData};
use s3::serde_types::{ListBucketResult, Part};
use s3::{Bucket, Region};

use crate::error::{ConfigError, StoreError, Unreachable};
use crate::key::{validate_key, validate_prefix};
use crate::retry::RetryPolicy;
use crate::store::{clamp_range, ObjectMeta, ObjectStore};

/// S3 numbers parts from 1 to 10 000; larger files get larger parts.
const MAX_PARTS: u64 = 10_000;

/// The content type of every object: bytes are opaque here.
const CONTENT_TYPE: &str = "application/octet-stream";

/// How much of an error answer's body a ranged GET reads: enough for the
/// error document [`status_error`] shows (its first 512 bytes).
const ERROR_BODY_LIMIT: u64 = 4096;

/// How the bucket name goes into request URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressingStyle {
    /// `https://endpoint/bucket/key`: MinIO, Garage, s3s and most self-hosted
    /// servers.
    Path,
    /// `https://bucket.endpoint/key`: AWS's default.
    VirtualHost,
}

/// S3 access credentials. `Debug` never shows the secret parts.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    access_key: String,
    secret_key: String,
    session_token: Option<String>,
}

impl S3Credentials {
    /// Long-term credentials.
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Self {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            session_token: None,
        }
    }

    /// Adds the session token of temporary credentials.
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(token.into());
        self
    }

    /// Reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and the optional
    /// `AWS_SESSION_TOKEN`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(access), Some(secret)) => Ok(Self {
                access_key: access,
                secret_key: secret,
                session_token: var("AWS_SESSION_TOKEN"),
            }),
            _ => Err(ConfigError::MissingCredentials),
        }
    }

    /// The access key id (not secret).
    pub fn access_key(&self) -> &str {
        &self.access_key
    }
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Everything needed to reach a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Where this library lives inside the bucket (`""` for the whole
    /// bucket); callers' keys are relative to it.
    pub prefix: String,
    /// Endpoint URL for non-AWS services (`http://127.0.0.1:9000`); `None`
    /// means AWS.
    pub endpoint: Option<String>,
    /// Region; `None` reads `AWS_REGION`, then `AWS_DEFAULT_REGION`, then
    /// uses `us-east-1`.
    pub region: Option<String>,
    /// Path or virtual-host addressing.
    pub style: AddressingStyle,
    /// Credentials; `None` reads them from the standard `AWS_*` variables.
    pub credentials: Option<S3Credentials>,
    /// Longest a connection (DNS, TCP and TLS) may take to set up before
    /// the request fails with [`Unreachable::ConnectTimedOut`].
    pub connect_timeout: Duration,
    /// Longest any single HTTP request may take, connection and body
    /// included, before it fails with [`Unreachable::TimedOut`].
    pub request_timeout: Duration,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// Keys asked per LIST page (`None`: the server's default, 1000 on AWS).
    pub list_page_size: Option<usize>,
}

impl S3Config {
    /// A configuration for `bucket` on AWS with defaults: no prefix,
    /// virtual-host style, 5 s connect timeout, 30 s request timeout,
    /// [`RetryPolicy::default`].
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: None,
            region: None,
            style: AddressingStyle::VirtualHost,
            credentials: None,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            retry: RetryPolicy::default(),
            list_page_size: None,
        }
    }
}

impl S3Config {
    /// The connect timeout unless configured.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// The request timeout unless configured.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
}

/// An S3-compatible bucket (or a prefix of one).
pub struct S3Store {
    bucket: Box<Bucket>,
    /// The client requests go through: rust-s3's builds no connect timeout.
    http: reqwest::Client,
    connect_timeout: Duration,
    request_timeout: Duration,
    /// `""` or `"some/prefix/"`.
    prefix: String,
    retry: RetryPolicy,
    list_page_size: Option<usize>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket.name())
            .field("endpoint", &self.bucket.url())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl S3Store {
    /// Bytes per part of a multipart upload and per ranged GET of a
    /// download: about what `put_file` and `get_to_file` hold in memory at a
    /// time. Above S3's 5 MiB minimum for every part but the last.
    pub const PART_SIZE: u64 = 8 * 1024 * 1024;

    /// Builds the client; no request is made until the first operation.
    pub fn new(config: S3Config) -> Result<Self, StoreError> {
        let credentials = match config.credentials {
            Some(c) => c,
            None => S3Credentials::from_env()?,
        };
        let region_name = config
            .region
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "us-east-1".to_owned());
        let region = match config.endpoint {
            Some(endpoint) => Region::Custom {
                region: region_name,
                endpoint: endpoint.trim_end_matches('/').to_owned(),
            },
            None => region_name.parse().map_err(config_error)?,
        };
        let creds = Credentials::new(
            Some(&credentials.access_key),
            Some(&credentials.secret_key),
            None,
            credentials.session_token.as_deref(),
            None,
        )
        .map_err(config_error)?;
        let mut bucket = Bucket::new(&config.bucket, region, creds).map_err(config_error)?;
        if config.style == AddressingStyle::Path {
            bucket = bucket.with_path_style();
        }
        // Multipart initiate, complete and abort go through rust-s3's own
        // client: bounded by this timeout (connecting included), though
        // without a connect timeout of their own.
        bucket.set_request_timeout(Some(config.request_timeout));
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| config_error(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            bucket,
            http,
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            prefix: normalize_prefix(&config.prefix)?,
            retry: config.retry,
            list_page_size: config.list_page_size,
        })
    }

    /// Maps a rust-s3 error: HTTP statuses by [`status_error`], transport
    /// failures by [`Self::transport_error`].
    fn s3_error(&self, key: &str, e: S3Error) -> StoreError {
        match e {
            // An error document in a 2xx answer: AWS sends one when a
            // CompleteMultipartUpload fails after the 200 began, and says to
            // retry.
            S3Error::HttpFailWithBody(status @ 200..=299, body) => {
                let body: String = body.chars().take(512).collect();
                StoreError::transient(format!("HTTP {status} with an error for {key}: {body}"))
            }
            S3Error::HttpFailWithBody(status, body) => status_error(status, key, body.as_bytes())
                .unwrap_or_else(|| StoreError::backend(format!("HTTP {status} for {key}"))),
            S3Error::Reqwest(e) if e.is_builder() => {
                StoreError::Config(ConfigError::S3(format!("cannot build request: {e}")))
            }
            S3Error::Reqwest(e) => self.transport_error(key, &e),
            S3Error::Io(e) => StoreError::transient(format!("{key}: {e}")),
            S3Error::Credentials(e) => config_error(e).into(),
            S3Error::Region(e) => config_error(e).into(),
            S3Error::UrlParse(e) => config_error(e).into(),
            other => StoreError::backend(format!("{key}: {other}")),
        }
    }

    /// A request that got no answer: which of refused, DNS, TLS or timed
    /// out ([`Unreachable`]), or else a dropped connection (transient).
    fn transport_error(&self, key: &str, e: &reqwest::Error) -> StoreError {
        let cause = if e.is_timeout() && e.is_connect() {
            Some(Unreachable::ConnectTimedOut {
                after: self.connect_timeout,
            })
        } else if e.is_timeout() {
            Some(Unreachable::TimedOut {
                after: self.request_timeout,
            })
        } else if e.is_connect() {
            connect_failure(e)
        } else {
            None
        };
        match cause {
            Some(cause) => StoreError::Unreachable {
                endpoint: e.url().map_or_else(|| self.bucket.url(), endpoint_of),
                key: key.to_owned(),
                cause,
            },
            None => StoreError::transient(format!("{key}: {}", error_chain(e))),
        }
    }

    fn path_of(&self, key: &str) -> Result<String, StoreError> {
        validate_key(key)?;
        Ok(format!("/{}{key}", self.prefix))
    }

    /// One request, one attempt: `Request::response` is rust-s3's request
    /// without its retry loop (see the module doc), so a failure comes back
    /// at once for our [`RetryPolicy`] to judge.
    async fn send_once(&self, path: &str, command: Command<'_>) -> Result<ResponseData, S3Error> {
        self.send_once_limited(path, command, |_| u64::MAX).await
    }

    /// [`Self::send_once`], reading at most `body_limit(status)` bytes of
    /// the answer's body: the rest is never read (the connection is
    /// dropped), so a server cannot make the store hold more than that.
    async fn send_once_limited(
        &self,
        path: &str,
        command: Command<'_>,
        body_limit: impl FnOnce(u16) -> u64 + Send,
    ) -> Result<ResponseData, S3Error> {
        // Signed by rust-s3, sent by our client (as `Request::response`
        // would with rust-s3's).
        let request = ReqwestRequest::new(&self.bucket, path, command).await?;
        let method = match request.command.http_verb() {
            HttpMethod::Delete => reqwest::Method::DELETE,
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Head => reqwest::Method::HEAD,
        };
        let sent = self
            .http
            .request(method, request.url()?.as_str())
            .headers(request.headers().await?)
            .body(request.request_body()?)
            .build()?;
        let mut response = self.http.execute(sent).await?;
        let status = response.status().as_u16();
        // Names come lowercase, as `Bucket`'s methods give them.
        let headers = response
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect();
        let limit = body_limit(status);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            let room = limit.saturating_sub(body.len() as u64);
            if chunk.len() as u64 > room {
                // More than allowed: keep what fits and stop reading.
                body.extend_from_slice(&chunk[..room as usize]);
                break;
            }
            // Up to the limit, the body is read to its end, so an honest
            // answer leaves the connection reusable.
            body.extend_from_slice(&chunk);
        }
        Ok(ResponseData::new(body.into(), status, headers))
    }

    async fn list_page(
        &self,
        prefix: &str,
        token: Option<String>,
    ) -> Result<ListBucketResult, StoreError> {
        let command = Command::ListObjectsV2 {
            prefix: prefix.to_owned(),
            delimiter: None,
            continuation_token: token,
            start_after: None,
            max_keys: self.list_page_size,
        };
        let response = self
            .send_once("/", command)
            .await
            .map_err(|e| self.s3_error(prefix, e))?;
        check_status(response.status_code(), prefix, response.as_slice())?;
        quick_xml::de::from_reader(response.as_slice()).map_err(|e| StoreError::Corrupt {
            key: prefix.to_owned(),
            detail: format!("unreadable LIST response: {e}"),
        })
    }

    async fn list_once(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let full_prefix = format!("{}{prefix}", self.prefix);
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self.list_page(&full_prefix, token.clone()).await?;
            for object in page.contents {
                match object.key.strip_prefix(&self.prefix) {
                    Some(key) if validate_key(key).is_ok() => keys.push(key.to_owned()),
                    _ => tracing::debug!(key = object.key, "skipping foreign key in listing"),
                }
            }
            if !page.is_truncated {
                break;
            }
            match page.next_continuation_token {
                Some(next) if Some(&next) != token.as_ref() => token = Some(next),
                _ => {
                    return Err(StoreError::Corrupt {
                        key: prefix.to_owned(),
                        detail: "truncated LIST without a new continuation token".into(),
                    })
                }
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    async fn get_range_once(&self, key: &str, range: &Range<u64>) -> Result<Vec<u8>, StoreError> {
        Ok(self.get_range_tagged(key, range).await?.bytes)
    }

    /// One ranged GET (`range` not empty), with the object's ETag and size
    /// when the answer gives them. Reads no more of the body than the range
    /// needs, whatever the server sends.
    async fn get_range_tagged(&self, key: &str, range: &Range<u64>) -> Result<Tagged, StoreError> {
        let path = self.path_of(key)?;
        let command = Command::GetObjectRange {
            start: range.start,
            end: Some(range.end - 1),
        };
        let body_limit = |status| match status {
            206 => range.end - range.start,
            // The whole object from its start: the range is cut out below.
            200 => range.end,
            _ => ERROR_BODY_LIMIT,
        };
        let response = self
            .send_once_limited(&path, command, body_limit)
            .await
            .map_err(|e| self.s3_error(key, e))?;
        let mut headers = response.headers();
        let etag = headers.remove("etag");
        let size = match response.status_code() {
            206 => headers
                .get("content-range")
                .and_then(|range| range.rsplit_once('/'))
                .and_then(|(_, size)| size.parse().ok()),
            // The whole object, so its length is the object's.
            200 => headers
                .get("content-length")
                .and_then(|len| len.parse().ok()),
            _ => None,
        };
        let bytes = match response.status_code() {
            // The range starts at or past the end of the object.
            416 => Vec::new(),
            // The server ignored the Range header: cut the range out ourselves.
            200 => {
                let body = response.as_slice();
                let r = clamp_range(range, body.len() as u64)?;
                body[r.start as usize..r.end as usize].to_vec()
            }
            status => {
                check_status(status, key, response.as_slice())?;
                response.to_vec()
            }
        };
        Ok(Tagged { bytes, etag, size })
    }

    /// Uploads `size` bytes of `file` as a multipart upload, aborting it
    /// (best effort) when any step fails so no parts linger, billed, in the
    /// bucket.
    async fn put_multipart(
        &self,
        key: &str,
        source: &Path,
        file: &mut tokio::fs::File,
        size: u64,
    ) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        let upload_id = self
            .retry
            .run("initiate multipart upload", || async {
                let upload = self
                    .bucket
                    .initiate_multipart_upload(&path, CONTENT_TYPE)
                    .await
                    .map_err(|e| self.s3_error(key, e))?;
                Ok(upload.upload_id)
            })
            .await?;
        let uploaded = self
            .upload_parts(key, &path, &upload_id, source, file, size)
            .await;
        if uploaded.is_err() {
            if let Err(e) = self.bucket.abort_upload(&path, &upload_id).await {
                tracing::warn!(key, %e, "cannot abort a failed multipart upload; its parts remain until a lifecycle rule removes them");
            }
        }
        uploaded
    }

    async fn upload_parts(
        &self,
        key: &str,
        path: &str,
        upload_id: &str,
        source: &Path,
        file: &mut tokio::fs::File,
        size: u64,
    ) -> Result<(), StoreError> {
        use tokio::io::AsyncReadExt;

        let part_size = Self::PART_SIZE.max(size.div_ceil(MAX_PARTS));
        let mut parts = Vec::new();
        let mut buf = Vec::new();
        let mut offset = 0;
        while offset < size {
            let part_number = parts.len() as u32 + 1;
            let len = part_size.min(size - offset);
            buf.resize(len as usize, 0);
            file.read_exact(&mut buf)
                .await
                .map_err(|e| StoreError::local_file(source, &e))?;
            let part = self
                .retry
                .run("upload part", || {
                    self.upload_part_once(key, path, upload_id, part_number, &buf)
                })
                .await?;
            parts.push(part);
            offset += len;
        }
        let failed_transiently = AtomicBool::new(false);
        let completed = self
            .retry
            .run("complete multipart upload", || async {
                let response = self
                    .bucket
                    .complete_multipart_upload(path, upload_id, parts.clone())
                    .await
                    .map_err(|e| self.s3_error(key, e));
                let result = response.and_then(|response| {
                    check_status(response.status_code(), key, response.as_slice())
                });
                if result.as_ref().is_err_and(StoreError::is_retryable) {
                    failed_transiently.store(true, Ordering::Relaxed);
                }
                result
            })
            .await;
        match completed {
            // A retried completion that finds the upload gone: the first may
            // have succeeded with its answer lost, or (s3s-fs) failed after
            // consuming the upload. Only a new put can tell, so say "retry"
            // rather than a misleading NotFound or PermissionDenied.
            Err(e @ (StoreError::NotFound { .. } | StoreError::PermissionDenied { .. }))
                if failed_transiently.load(Ordering::Relaxed) =>
            {
                Err(StoreError::transient(format!(
                    "{key}: multipart upload gone after a failed completion ({e})"
                )))
            }
            other => other,
        }
    }

    /// One attempt at one part. Not rust-s3's `put_multipart_chunk`: that
    /// aborts the whole upload on any error status, so a 503 on one part
    /// could not be retried.
    async fn upload_part_once(
        &self,
        key: &str,
        path: &str,
        upload_id: &str,
        part_number: u32,
        bytes: &[u8],
    ) -> Result<Part, StoreError> {
        let command = Command::PutObject {
            content: bytes,
            content_type: CONTENT_TYPE,
            custom_headers: None,
            multipart: Some(Multipart::new(part_number, upload_id)),
        };
        let response = self
            .send_once(path, command)
            .await
            .map_err(|e| self.s3_error(key, e))?;
        check_status(response.status_code(), key, response.as_slice())?;
        let etag = response
            .headers()
            .remove("etag")
            .ok_or_else(|| StoreError::Corrupt {
                key: key.to_owned(),
                detail: format!("multipart part {part_number} answered without an ETag"),
            })?;
        Ok(Part { part_number, etag })
    }

    /// One download from the start: ranged GETs of [`S3Store::PART_SIZE`]
    /// (fewer bytes when `max_bytes` is closer), each retried on its own,
    /// until the object's size (from the first answer's `Content-Range`) or
    /// a short range shows the end. An object larger than `max_bytes` is
    /// [`StoreError::TooLarge`] as soon as the first answer's size or the
    /// bytes received show it, before its part is written: the file never
    /// holds more than `max_bytes` bytes.
    ///
    /// Why ranges rather than one streamed GET: a transient failure late in
    /// a multi-hundred-MB body costs one part, not the whole download, and
    /// each part's status is checked before its bytes reach the file
    /// (rust-s3's `get_object_to_writer` would write an error body into the
    /// file). The cost is that an object replaced between two ranges would
    /// be read as a mix of old and new, so every range must carry the ETag
    /// of the first and the end must come at the first's size;
    /// [`Download::Changed`] otherwise.
    async fn download_once(
        &self,
        key: &str,
        dest: &Path,
        max_bytes: u64,
    ) -> Result<Download, StoreError> {
        use tokio::io::AsyncWriteExt;

        let local = |e: std::io::Error| StoreError::local_file(dest, &e);
        // One byte past the limit is enough to tell an object too large.
        let wanted = max_bytes.saturating_add(1);
        let part_len = |offset: u64| Self::PART_SIZE.min(wanted - offset);
        let mut part = self.get_part(key, 0, part_len(0)).await?;
        let (etag, size) = (part.etag.clone(), part.size);
        if size.is_some_and(|size| size > max_bytes) {
            return Err(StoreError::too_large(key, max_bytes, size));
        }
        // Created only now that the object is known to exist (and not to be
        // too large), so a missing object leaves no file behind.
        let mut file = tokio::fs::File::create(dest).await.map_err(local)?;
        let mut offset = 0;
        loop {
            let asked = part_len(offset);
            let end = offset + part.bytes.len() as u64;
            if end > max_bytes {
                return Err(StoreError::too_large(key, max_bytes, size));
            }
            file.write_all(&part.bytes).await.map_err(local)?;
            offset = end;
            let short = (part.bytes.len() as u64) < asked;
            if short || size == Some(offset) {
                if size.is_some_and(|size| size != offset) {
                    return Ok(Download::Changed);
                }
                // Not fsynced: a download can be repeated, and the caller
                // decides whether the copy must survive a crash.
                file.flush().await.map_err(local)?;
                return Ok(Download::Done(offset));
            }
            part = self.get_part(key, offset, part_len(offset)).await?;
            if let (Some(first), Some(now)) = (&etag, &part.etag) {
                if first != now {
                    return Ok(Download::Changed);
                }
            }
        }
    }

    /// The `len` bytes of an object from `offset` (fewer at its end),
    /// retried.
    async fn get_part(&self, key: &str, offset: u64, len: u64) -> Result<Tagged, StoreError> {
        let range = offset..offset + len;
        self.retry
            .run("get_to_file", || self.get_range_tagged(key, &range))
            .await
    }
}

/// A ranged read's bytes, with what the answer said of the whole object.
struct Tagged {
    bytes: Vec<u8>,
    /// The ETag of the object version the bytes came from.
    etag: Option<String>,
    /// The object's size, from `Content-Range: bytes 0-99/1234`.
    size: Option<u64>,
}

/// How one pass of [`S3Store::download_once`] ended.
enum Download {
    /// The whole object, this many bytes, is in the file.
    Done(u64),
    /// The object was replaced mid-download; the file holds a mix.
    Changed,
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        self.retry
            .run("put", || async {
                let command = Command::PutObject {
                    content: bytes,
                    content_type: CONTENT_TYPE,
                    custom_headers: None,
                    multipart: None,
                };
                let response = self
                    .send_once(&path, command)
                    .await
                    .map_err(|e| self.s3_error(key, e))?;
                check_status(response.status_code(), key, response.as_slice())
            })
            .await
    }

    async fn get(&self, key: &str, max_bytes: u64) -> Result<Vec<u8>, StoreError> {
        // One ranged GET of the first `max_bytes + 1` bytes: an object that
        // fills it (or whose `Content-Range` says so) is too large, and no
        // more of it is read. An empty object answers 416, read as empty.
        let range = 0..max_bytes.saturating_add(1);
        let part = self
            .retry
            .run("get", || self.get_range_tagged(key, &range))
            .await?;
        if part.size.is_some_and(|size| size > max_bytes) || part.bytes.len() as u64 > max_bytes {
            return Err(StoreError::too_large(key, max_bytes, part.size));
        }
        Ok(part.bytes)
    }

    async fn put_file(&self, key: &str, source: &Path) -> Result<(), StoreError> {
        use tokio::io::AsyncReadExt;

        self.path_of(key)?;
        let local = |e: std::io::Error| StoreError::local_file(source, &e);
        let mut file = tokio::fs::File::open(source).await.map_err(local)?;
        // The file must not change while it uploads: its size now decides
        // what is sent, and a file that shrinks fails as a local-file error.
        let size = file.metadata().await.map_err(local)?.len();
        if size > Self::PART_SIZE {
            return self.put_multipart(key, source, &mut file, size).await;
        }
        // At most one part: a single PUT (multipart needs at least one part,
        // and costs three requests).
        let mut bytes = vec![0; size as usize];
        file.read_exact(&mut bytes).await.map_err(local)?;
        self.put(key, &bytes).await
    }

    async fn get_to_file(&self, key: &str, dest: &Path, max_bytes: u64) -> Result<u64, StoreError> {
        // A replaced object restarts the download, a bounded number of times.
        for _ in 0..self.retry.max_attempts.max(1) {
            match self.download_once(key, dest, max_bytes).await? {
                Download::Done(size) => return Ok(size),
                Download::Changed => {
                    tracing::warn!(key, "object replaced during download; starting over");
                }
            }
        }
        Err(StoreError::transient(format!(
            "{key}: object kept changing during download"
        )))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, StoreError> {
        clamp_range(&range, u64::MAX)?;
        if range.is_empty() {
            // HTTP cannot ask for zero bytes; still report a missing object.
            self.head(key).await?;
            return Ok(Vec::new());
        }
        self.retry
            .run("get_range", || self.get_range_once(key, &range))
            .await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let path = self.path_of(key)?;
        self.retry
            .run("head", || async {
                let response = self
                    .send_once(&path, Command::HeadObject)
                    .await
                    .map_err(|e| self.s3_error(key, e))?;
                check_status(response.status_code(), key, &[])?;
                let size = response
                    .headers()
                    .get("content-length")
                    .and_then(|len| len.parse().ok())
                    .ok_or_else(|| StoreError::Corrupt {
                        key: key.to_owned(),
                        detail: "HEAD without a Content-Length".into(),
                    })?;
                Ok(ObjectMeta { size })
            })
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix)?;
        self.retry.run("list", || self.list_once(prefix)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        self.retry
            .run("delete", || async {
                let response = self
                    .send_once(&path, Command::DeleteObject)
                    .await
                    .map_err(|e| self.s3_error(key, e))?;
                match check_status(response.status_code(), key, response.as_slice()) {
                    Err(StoreError::NotFound { .. }) => Ok(()),
                    other => other,
                }
            })
            .await
    }
}

fn normalize_prefix(prefix: &str) -> Result<String, StoreError> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    validate_key(trimmed)?;
    Ok(format!("{trimmed}/"))
}

/// Maps an HTTP status to the error a caller can act on.
pub(crate) fn status_error(status: u16, key: &str, body: &[u8]) -> Option<StoreError> {
    let detail = || {
        let text = String::from_utf8_lossy(&body[..body.len().min(512)]);
        format!("HTTP {status} for {key}: {text}")
    };
    match status {
        200..=299 => None,
        404 => Some(StoreError::not_found(key)),
        401 | 403 => Some(StoreError::PermissionDenied { detail: detail() }),
        408 | 429 | 500 | 502..=599 => Some(StoreError::transient(detail())),
        _ => Some(StoreError::backend(detail())),
    }
}

fn check_status(status: u16, key: &str, body: &[u8]) -> Result<(), StoreError> {
    status_error(status, key, body).map_or(Ok(()), Err)
}

/// Why a connection could not be set up, from the error's causes: the
/// OS's refusal, the resolver's failure (hyper-util names it "dns error"),
/// or the TLS library's (tokio-rustls reports it as invalid data).
fn connect_failure(e: &reqwest::Error) -> Option<Unreachable> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.to_string().starts_with("dns error") {
            return Some(Unreachable::Dns);
        }
        source = err.source();
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Some(Unreachable::Refused),
                std::io::ErrorKind::InvalidData => {
                    return Some(Unreachable::Tls {
                        detail: io.to_string(),
                    })
                }
                // An io::Error's source() skips the error it wraps (where
                // hyper-rustls wraps the TLS library's): step into it.
                _ => source = io.get_ref().map(|inner| inner as _).or(source),
            }
        }
    }
    None
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `scheme://host:port` of a request URL (never its path or query).
fn endpoint_of(url: &reqwest::Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port().map_or_else(String::new, |p| format!(":{p}"))
    )
}

fn config_error(e: impl fmt::Display) -> ConfigError {
    ConfigError::S3(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_statuses_are_not_retryable() {
        for status in [400, 401, 403, 404, 405, 409, 411, 501] {
            let e = status_error(status, "k", b"").unwrap();
            assert!(!e.is_retryable(), "{status} retryable");
        }
        assert!(status_error(404, "k", b"").unwrap().is_not_found());
        assert!(matches!(
            status_error(403, "k", b"").unwrap(),
            StoreError::PermissionDenied { .. }
        ));
    }

    #[test]
    fn throttling_timeouts_and_server_errors_are_retryable() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(status_error(status, "k", b"").unwrap().is_retryable());
        }
        assert!(status_error(200, "k", b"").is_none());
        assert!(status_error(206, "k", b"").is_none());
    }

    #[test]
    fn store_prefix_is_normalized_and_validated() {
        assert_eq!(normalize_prefix("").unwrap(), "");
        assert_eq!(normalize_prefix("/lib/a/").unwrap(), "lib/a/");
        assert!(normalize_prefix("lib/../x").is_err());
    }

    #[test]
    fn new_leaves_rust_s3s_process_wide_retry_count_alone() {
        // What a host app that uses rust-s3 for its own buckets may have set.
        s3::set_retries(7);
        let mut config = S3Config::new("bucket");
        config.endpoint = Some("http://127.0.0.1:9".into());
        config.credentials = Some(S3Credentials::new("AKID", "secret"));
        S3Store::new(config).unwrap();
        assert_eq!(s3::get_retries(), 7);
    }

    #[test]
    fn credentials_debug_hides_secrets() {
        let c = S3Credentials::new("AKID", "very-secret").with_session_token("tok-secret");
        let shown = format!("{c:?}");
        assert!(shown.contains("AKID"));
        assert!(!shown.contains("very-secret") && !shown.contains("tok-secret"));
    }
}
