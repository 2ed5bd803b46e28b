//! The OCI distribution client: resolves a `docker://` reference to one image for the
//! wanted platform and brings its config and layers into the blob cache, each verified
//! against its digest and size while it streams (nothing is held in memory but manifests
//! and the config).

pub mod auth;
pub mod client;
pub mod http;
pub mod manifest;
pub mod platform;
pub mod progress;
pub mod reference;

pub use auth::CredentialStore;
pub use client::ClientOptions;
pub use platform::Platform;
pub use reference::Reference;

use crate::cache::growing::Growing;
use crate::cache::{BlobRef, BlobSlot, Cache, Digest};
use crate::oci::{FetchedImage, Layer};

use anyhow::{bail, Context, Result};
use client::{read_document, Client};
use manifest::{Descriptor, ImageManifest, Parsed};
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A connection to one image's repository.
pub struct Remote {
    client: Client,
}

impl Remote {
    pub fn new(reference: &Reference, opts: &ClientOptions) -> Remote {
        Remote {
            client: Client::new(reference, opts),
        }
    }

    pub fn reference(&self) -> &Reference {
        self.client.reference()
    }

    /// The digest the reference resolves to now (an index digest for multi-arch images),
    /// from a HEAD request's `Docker-Content-Digest`, else by hashing the manifest.
    pub fn resolve_digest(&mut self) -> Result<Digest> {
        let what = format!("docker://{}", self.reference());
        let mref = self.reference().manifest_ref();
        let resp = self.client.request(
            "HEAD",
            &format!("manifests/{mref}"),
            manifest::ACCEPT,
            &what,
        )?;
        if let Some(d) = resp
            .header("docker-content-digest")
            .and_then(|d| Digest::parse(d).ok())
        {
            if let Some(pinned) = &self.reference().digest {
                if &d != pinned {
                    bail!("{what}: registry returned digest {d}, expected {pinned}");
                }
            }
            return Ok(d);
        }
        let (body, _) = self.get_manifest(&mref, &what)?;
        Ok(Digest::of_bytes(&body))
    }

    /// Fetches the image for `platform` into `cache` and describes it for the conversion.
    /// `on_layers` gets the layers, bottom first, as soon as the manifest is known, so
    /// another thread can read each one while it downloads; every feed is finished or
    /// failed when this returns.
    pub fn fetch_following(
        &mut self,
        platform: &Platform,
        cache: &Cache,
        on_layers: &mut dyn FnMut(Vec<LayerFeed>),
    ) -> Result<FetchedImage> {
        let what = format!("docker://{}", self.reference());
        let (manifest_digest, image) = self.resolve_image(platform, &what)?;
        let config_blob = fetch_blob(&mut self.client, &image.config, cache, None, None)?;
        let config = read_config(&config_blob)?;
        let image_platform = config_platform(&config).unwrap_or_else(|| platform.to_string());
        if !image_platform.starts_with(&format!("{}/{}", platform.os, platform.architecture)) {
            crate::warning!(
                "the image's platform {image_platform} does not match the requested {platform}"
            );
        }
        let feeds: Vec<Arc<Growing>> = image.layers.iter().map(|_| Growing::new()).collect();
        on_layers(
            image
                .layers
                .iter()
                .zip(&feeds)
                .map(|(d, g)| LayerFeed {
                    media_type: d.media_type.clone(),
                    blob: Arc::clone(g),
                })
                .collect(),
        );
        let blobs = self.fetch_layers(&image.layers, cache, &feeds);
        // Layers never started (another one failed) would keep a follower waiting.
        for g in &feeds {
            g.failed();
        }
        let blobs = blobs?;
        let layers = image
            .layers
            .iter()
            .zip(blobs)
            .map(|(desc, blob)| Layer {
                digest: blob.digest.to_string(),
                size: blob.size,
                media_type: desc.media_type.clone(),
                path: blob.path,
            })
            .collect();
        Ok(FetchedImage {
            reference: what,
            manifest_digest: manifest_digest.to_string(),
            config,
            layers,
            platform: image_platform,
        })
    }

    /// Follows an index to the platform's manifest; returns that manifest's digest.
    fn resolve_image(
        &mut self,
        platform: &Platform,
        what: &str,
    ) -> Result<(Digest, ImageManifest)> {
        let mref = self.reference().manifest_ref();
        let (body, content_type) = self.get_manifest(&mref, what)?;
        let digest = Digest::of_bytes(&body);
        if let Some(pinned) = &self.reference().digest {
            if &digest != pinned {
                bail!("{what}: manifest digest mismatch: expected {pinned}, got {digest}");
            }
        }
        match manifest::parse(&body, content_type.as_deref(), what)? {
            Parsed::Image(m) => Ok((digest, m)),
            Parsed::Index(entries) => {
                let chosen = manifest::choose(&entries, platform)
                    .with_context(|| format!("{what}: choosing an image"))?;
                let chosen_digest = Digest::parse(&chosen.digest)?;
                crate::verbose!("{what}: using {chosen_digest} for {platform}");
                let (body, ct) = self.get_manifest(&chosen_digest.to_string(), what)?;
                let got = Digest::of_bytes(&body);
                if got != chosen_digest {
                    bail!("{what}: manifest digest mismatch: expected {chosen_digest}, got {got}");
                }
                match manifest::parse(&body, ct.as_deref(), what)? {
                    Parsed::Image(m) => Ok((got, m)),
                    Parsed::Index(_) => bail!("{what}: nested manifest lists are not supported"),
                }
            }
        }
    }

    fn get_manifest(&mut self, mref: &str, what: &str) -> Result<(Vec<u8>, Option<String>)> {
        let resp =
            self.client
                .request("GET", &format!("manifests/{mref}"), manifest::ACCEPT, what)?;
        let content_type = resp.header("content-type").map(String::from);
        let body = read_document(resp).with_context(|| format!("{what}: reading the manifest"))?;
        Ok((body, content_type))
    }

    /// Downloads the layers, a few at a time: registries (and CDNs behind them) serve one
    /// connection well below the link's speed. Each blob still streams straight to disk.
    fn fetch_layers(
        &mut self,
        layers: &[Descriptor],
        cache: &Cache,
        feeds: &[Arc<Growing>],
    ) -> Result<Vec<BlobRef>> {
        let multi = progress::multi();
        if layers.len() <= 1 {
            return layers
                .iter()
                .zip(feeds)
                .map(|(d, g)| fetch_blob(&mut self.client, d, cache, Some(&multi), Some(g)))
                .collect();
        }
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Mutex<Vec<Option<Result<BlobRef>>>> =
            Mutex::new((0..layers.len()).map(|_| None).collect());
        let workers = layers.len().min(PARALLEL_DOWNLOADS);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let mut client = self.client.fork();
                let (next, failed, results, multi) = (&next, &failed, &results, &multi);
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= layers.len() || failed.load(Ordering::SeqCst) {
                        break;
                    }
                    let r =
                        fetch_blob(&mut client, &layers[i], cache, Some(multi), Some(&feeds[i]));
                    if r.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                });
            }
        });
        let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut blobs = Vec::with_capacity(layers.len());
        for r in results {
            match r {
                Some(r) => blobs.push(r?),
                // Not started because another download failed; that error is reported.
                None => continue,
            }
        }
        if blobs.len() != layers.len() {
            bail!("{}: a layer download failed", self.reference());
        }
        Ok(blobs)
    }
}

/// How many layers download at once.
const PARALLEL_DOWNLOADS: usize = 3;

/// Brings one blob into the cache (unless it is there), verifying digest and size.
/// Interrupted transfers are retried; a mismatch is not.
fn fetch_blob(
    client: &mut Client,
    desc: &Descriptor,
    cache: &Cache,
    bars: Option<&indicatif::MultiProgress>,
    feed: Option<&Growing>,
) -> Result<BlobRef> {
    let digest = Digest::parse(&desc.digest)
        .with_context(|| format!("{}: bad blob digest", client.reference()))?;
    let mut writer = match cache.begin_blob(&digest, Some(desc.size))? {
        BlobSlot::Present(b) => {
            crate::verbose!("using cached blob {digest}");
            if let Some(g) = feed {
                g.finished(&b.path, b.size);
            }
            return Ok(b);
        }
        BlobSlot::Missing(w) => w,
    };
    let what = format!("blob {digest}");
    let bar = progress::bytes_bar(bars, desc.size, &short(&digest));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let resp = client.request("GET", &format!("blobs/{digest}"), "", &what)?;
        let mut reader = resp.into_reader();
        if let Some(g) = feed {
            g.started(writer.temp_path());
        }
        let on_bytes = |n| {
            bar.set_position(n);
            if let Some(g) = feed {
                g.grew(n);
            }
        };
        match writer.fill(&mut reader as &mut dyn Read, &on_bytes) {
            Ok(()) => break,
            Err(e) if is_transport(&e) && attempt < 3 => {
                crate::warning!("{what}: transfer interrupted ({e:#}), retrying");
            }
            Err(e) if e.downcast_ref::<crate::cache::BlobError>().is_some() => return Err(e),
            Err(e) => return Err(e.context(format!("downloading {what}"))),
        }
    }
    bar.finish_and_clear();
    let blob = writer.commit()?;
    if let Some(g) = feed {
        g.finished(&blob.path, blob.size);
    }
    Ok(blob)
}

/// A layer of the image being fetched, readable while it downloads.
pub struct LayerFeed {
    pub media_type: String,
    pub blob: Arc<Growing>,
}

fn is_transport(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::cache::BlobError>().is_none()
        && e.downcast_ref::<std::io::Error>().is_some()
}

fn short(d: &Digest) -> String {
    d.hex()[..12].to_string()
}

/// Reads an image config from the cache (configs are small JSON documents).
pub fn read_config(blob: &BlobRef) -> Result<Vec<u8>> {
    if blob.size > client::MAX_DOCUMENT {
        bail!("image config {} is larger than 8 MiB", blob.digest);
    }
    let config =
        std::fs::read(&blob.path).with_context(|| format!("reading {}", blob.path.display()))?;
    serde_json::from_slice::<serde_json::Value>(&config)
        .with_context(|| format!("image config {} is not valid JSON", blob.digest))?;
    Ok(config)
}

/// `os/arch[/variant]` from an image config.
pub fn config_platform(config: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(config).ok()?;
    let os = v.get("os")?.as_str()?;
    let arch = v.get("architecture")?.as_str()?;
    match v
        .get("variant")
        .and_then(|x| x.as_str())
        .filter(|s| !s.is_empty())
    {
        Some(var) => Some(format!("{os}/{arch}/{var}")),
        None => Some(format!("{os}/{arch}")),
    }
}
