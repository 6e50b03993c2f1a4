//! The `[lake]` settings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreScheme, RetryConfig};
use serde::Deserialize;
use url::Url;

/// How the lake writer batches, as written in the TOML file. Every field is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// Whether to write the lake [default true]. Turned off, the lake's consumer is
    /// removed from the log, so retention no longer waits for it.
    pub enabled: bool,
    /// Longest time an event waits before it is written to the lake, in seconds
    /// [default 30]. Each flush writes one file per partition it touches, so shorter means
    /// fresher SQL and more, smaller files.
    pub flush_seconds: f64,
    /// Events gathered in memory before a flush regardless of the time [default 50,000].
    pub max_rows: usize,
    /// Size up to which compaction merges a partition's files into one, in MiB
    /// [default 128]: large enough that a query opens few files, small enough that a
    /// partition is read in parallel pieces.
    pub compact_target_mib: u64,
    /// Where the lake is [default: the folder `lake` of the data folder]: a bucket and
    /// path of an object store (`s3://bucket/path`, `gs://bucket/path`,
    /// `az://container/path`, `abfss://…`) or another local folder (`file:///path`).
    pub url: Option<String>,
    /// Settings of the object store, by `object_store`'s names (`aws_endpoint`,
    /// `aws_region`, `aws_access_key_id`, `aws_allow_http`, `google_service_account`,
    /// `azure_storage_account_name`, …). The store's usual environment variables
    /// (`AWS_*`, `GOOGLE_*`, `AZURE_*`) are read too; these win over them.
    pub options: BTreeMap<String, String>,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            enabled: true,
            flush_seconds: 30.0,
            max_rows: 50_000,
            compact_target_mib: 128,
            url: None,
            options: BTreeMap::new(),
        }
    }
}

/// The settings checked.
#[derive(Debug, Clone)]
pub struct ValidLakeConfig {
    pub enabled: bool,
    pub flush_interval: Duration,
    pub max_rows: usize,
    pub compact_target_bytes: u64,
    pub location: LakeLocation,
}

/// Where the lake is.
#[derive(Debug, Clone)]
pub enum LakeLocation {
    /// The folder `lake` of the data folder.
    DataFolder,
    /// Another local folder.
    Folder(PathBuf),
    /// A bucket of an object store.
    Remote(RemoteLake),
}

/// A lake in an object store: the store, built from the settings (no call made yet), and
/// where in it the lake is.
#[derive(Debug, Clone)]
pub struct RemoteLake {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// The lake's URL, ending in `/`.
    pub(crate) url: Url,
    pub(crate) prefix: ObjectPath,
    /// What the store was built from, to build another client of it (none for a store
    /// given whole, as tests do).
    options: Option<(ObjectStoreScheme, BTreeMap<String, String>)>,
}

impl RemoteLake {
    /// A lake in `store`, at `url` (test stores, such as `object_store`'s in-memory one).
    pub fn new(store: Arc<dyn ObjectStore>, url: &str) -> Result<RemoteLake, String> {
        let url = folder_url(url)?;
        let (_, prefix) = ObjectStoreScheme::parse(&url).map_err(|e| format!("lake.url: {e}"))?;
        Ok(RemoteLake {
            store,
            url,
            prefix,
            options: None,
        })
    }

    /// Another client of the same store, with connections of its own; none for a store
    /// given whole.
    pub(crate) fn rebuild(&self) -> Result<Option<Arc<dyn ObjectStore>>, String> {
        self.options
            .as_ref()
            .map(|(scheme, options)| build_store(&self.url, scheme, options))
            .transpose()
    }
}

impl LakeConfig {
    /// Checks every field; an error names the field and the reason.
    pub fn validate(self) -> Result<ValidLakeConfig, String> {
        if !(self.flush_seconds.is_finite()
            && self.flush_seconds > 0.0
            && self.flush_seconds <= 86_400.0)
        {
            return Err(format!(
                "lake.flush_seconds must be more than 0 and at most 86400 (a day), not {}",
                self.flush_seconds
            ));
        }
        if !(1..=10_000_000).contains(&self.max_rows) {
            return Err(format!(
                "lake.max_rows must be from 1 to 10000000, not {}",
                self.max_rows
            ));
        }
        if !(1..=16_384).contains(&self.compact_target_mib) {
            return Err(format!(
                "lake.compact_target_mib must be from 1 to 16384, not {}",
                self.compact_target_mib
            ));
        }
        let location = location(self.url.as_deref(), &self.options)?;
        Ok(ValidLakeConfig {
            location,
            enabled: self.enabled,
            flush_interval: Duration::from_secs_f64(self.flush_seconds),
            max_rows: self.max_rows,
            compact_target_bytes: self.compact_target_mib << 20,
        })
    }
}

/// Where `[lake] url` and `[lake.options]` put the lake; the store is built, not called.
fn location(url: Option<&str>, options: &BTreeMap<String, String>) -> Result<LakeLocation, String> {
    let Some(url) = url else {
        return match options.keys().next() {
            Some(key) => Err(format!(
                "lake.options.{key}: options are for a lake in an object store, and lake.url is not set"
            )),
            None => Ok(LakeLocation::DataFolder),
        };
    };
    let url = folder_url(url)?;
    // The schemes that name a bucket, not the endpoint URLs object_store also reads
    // (`https://s3.…/bucket`), where the bucket is part of the path.
    if !matches!(
        url.scheme(),
        "s3" | "s3a" | "gs" | "az" | "adl" | "azure" | "abfs" | "abfss" | "file"
    ) {
        return Err(unsupported(&url));
    }
    let (scheme, prefix) =
        ObjectStoreScheme::parse(&url).map_err(|e| format!("lake.url {url}: {e}"))?;
    if scheme == ObjectStoreScheme::Local {
        if let Some(key) = options.keys().next() {
            return Err(format!(
                "lake.options.{key}: options are for a lake in an object store, not a local folder"
            ));
        }
        let folder = url
            .to_file_path()
            .map_err(|()| format!("lake.url {url}: not a local folder"))?;
        return Ok(LakeLocation::Folder(folder));
    }
    let store = build_store(&url, &scheme, options)?;
    Ok(LakeLocation::Remote(RemoteLake {
        store,
        url,
        prefix,
        options: Some((scheme, options.clone())),
    }))
}

/// The object store of `url`, built with `options` (and the store's environment
/// variables); no call is made.
fn build_store(
    url: &Url,
    scheme: &ObjectStoreScheme,
    options: &BTreeMap<String, String>,
) -> Result<Arc<dyn ObjectStore>, String> {
    let named = |key: &str, kind: &str| {
        format!(
            "lake.options.{key}: not a setting of {kind} (see object_store's names: {})",
            match kind {
                "S3" =>
                    "aws_endpoint, aws_region, aws_access_key_id, aws_secret_access_key, aws_allow_http, …",
                "Google Cloud Storage" => "google_service_account, google_service_account_key, …",
                _ => "azure_storage_account_name, azure_storage_account_key, azure_use_emulator, …",
            }
        )
    };
    let built = |e: object_store::Error| format!("lake.url {url}: {e}");
    Ok(match scheme {
        ObjectStoreScheme::AmazonS3 => {
            let mut builder = AmazonS3Builder::from_env()
                .with_url(url.as_str())
                .with_retry(retries());
            for (key, value) in options {
                let key: AmazonS3ConfigKey = key.parse().map_err(|_| named(key, "S3"))?;
                builder = builder.with_config(key, value);
            }
            Arc::new(builder.build().map_err(built)?)
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            let mut builder = GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retries());
            for (key, value) in options {
                let key: GoogleConfigKey = key
                    .parse()
                    .map_err(|_| named(key, "Google Cloud Storage"))?;
                builder = builder.with_config(key, value);
            }
            Arc::new(builder.build().map_err(built)?)
        }
        ObjectStoreScheme::MicrosoftAzure => {
            let mut builder = MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retries());
            for (key, value) in options {
                let key: AzureConfigKey = key.parse().map_err(|_| named(key, "Azure"))?;
                builder = builder.with_config(key, value);
            }
            Arc::new(builder.build().map_err(built)?)
        }
        _ => return Err(unsupported(url)),
    })
}

/// How often a call to the store is tried before it fails: briefly, since the lake writer
/// tries its whole flush again every second, and a call waiting out object_store's
/// default of three minutes would hold up a stop and hide a failure from the metrics.
fn retries() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(15),
        ..RetryConfig::default()
    }
}

/// `url` parsed, its path ending in `/`.
fn folder_url(url: &str) -> Result<Url, String> {
    let mut parsed = Url::parse(url).map_err(|e| format!("lake.url {url:?}: {e}"))?;
    if !parsed.path().ends_with('/') {
        let path = format!("{}/", parsed.path());
        parsed.set_path(&path);
    }
    Ok(parsed)
}

fn unsupported(url: &Url) -> String {
    format!(
        "lake.url {url}: the scheme {:?} is not one persona writes a lake to (s3://, gs://, az://, abfss://, file://)",
        url.scheme()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        let ok = LakeConfig::default().validate().unwrap();
        assert_eq!(ok.flush_interval, Duration::from_secs(30));
        let bad = LakeConfig {
            flush_seconds: 0.0,
            ..LakeConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("lake.flush_seconds"));
        let bad = LakeConfig {
            max_rows: 0,
            ..LakeConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("lake.max_rows"));
        let bad = LakeConfig {
            compact_target_mib: 0,
            ..LakeConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .contains("lake.compact_target_mib")
        );
    }

    #[test]
    fn a_lake_url_builds_its_store_and_bad_ones_are_named() {
        let remote = |url: &str, options: &[(&str, &str)]| {
            LakeConfig {
                url: Some(url.into()),
                options: options
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..LakeConfig::default()
            }
            .validate()
        };
        let ok = remote(
            "s3://lake/persona",
            &[
                ("aws_endpoint", "http://127.0.0.1:9000"),
                ("aws_allow_http", "true"),
            ],
        )
        .unwrap();
        let LakeLocation::Remote(lake) = ok.location else {
            panic!("{:?}", ok.location)
        };
        assert_eq!(lake.url.as_str(), "s3://lake/persona/");
        assert_eq!(lake.prefix.as_ref(), "persona");
        assert!(matches!(
            remote("file:///srv/lake", &[]).unwrap().location,
            LakeLocation::Folder(ref f) if f == std::path::Path::new("/srv/lake/")
        ));
        let error = remote("s3://lake/p", &[("aws_endpoit", "x")]).unwrap_err();
        assert!(
            error.starts_with("lake.options.aws_endpoit: not a setting of S3"),
            "{error}"
        );
        let LakeLocation::Remote(whole_bucket) = remote("s3://lake", &[]).unwrap().location else {
            panic!("s3://lake is a bucket")
        };
        assert_eq!(whole_bucket.url.as_str(), "s3://lake/");
        assert_eq!(whole_bucket.prefix.as_ref(), "");
        // An endpoint URL with the bucket in its path is not taken for a lake's URL.
        let error = remote("https://s3.eu-west-1.amazonaws.com/lake/p", &[]).unwrap_err();
        assert!(error.contains("the scheme \"https\""), "{error}");
        let error = remote("ftp://host/lake", &[]).unwrap_err();
        assert!(error.contains("the scheme \"ftp\""), "{error}");
        let error = remote("not a url", &[]).unwrap_err();
        assert!(error.starts_with("lake.url \"not a url\""), "{error}");
        let error = LakeConfig {
            options: [("aws_region".to_string(), "x".to_string())].into(),
            ..LakeConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(error.contains("lake.url is not set"), "{error}");
    }
}
