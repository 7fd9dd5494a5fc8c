//! Conditional writes, deletes and moves on a cloud path.

use std::sync::atomic::Ordering;

use cairn_engine::replica::{Content, NewEntry, Outcome, ReplicaEntry, Version};
use cairn_engine::{Error, Result};
use cairn_model::{ContentHash, EntryKind, RelPath};
use futures_util::StreamExt;

use super::listing::{dir_entry, entry_of, etag_of};
use super::{
    buffer, is_marker, make_dir, make_dir_key, marker_key, user_metadata, versions, CloudReplica,
    STAGING,
};

pub(super) async fn write(
    r: &CloudReplica,
    path: &RelPath,
    entry: &NewEntry,
    content: Content<'_>,
    expect: Option<&Version>,
) -> Result<Outcome> {
    match entry.kind {
        EntryKind::Dir => write_dir(r, path, expect).await,
        EntryKind::File => write_file(r, path, entry, content, expect).await,
        EntryKind::Symlink | EntryKind::Deleted => Err(Error::Refused(format!(
            "{}/{path}: a cloud path holds no symbolic links; the link is left alone here",
            r.describe
        ))),
    }
}

async fn write_dir(r: &CloudReplica, path: &RelPath, expect: Option<&Version>) -> Result<Outcome> {
    if let (Some(dav), None) = (commits_itself(r), expect) {
        return super::dav::make_new_dir(r, dav, path).await;
    }
    match r.current(path).await? {
        Some(now) if now.kind == EntryKind::Dir => return Ok(Outcome::Done(Some(now))),
        Some(now) if Some(&now.version) != expect => return Ok(Outcome::Changed(Some(now))),
        // The file the caller expected gives way to the folder.
        Some(_) => {
            versions::save(r, path).await?;
            r.op.delete(path.as_str())
                .await
                .map_err(|e| r.fail("deleting", path.as_str(), e))?;
        }
        None if expect.is_some() => return Ok(Outcome::Changed(None)),
        None => {}
    }
    make_dir(r, path).await?;
    Ok(Outcome::Done(Some(dir_entry())))
}

async fn write_file(
    r: &CloudReplica,
    path: &RelPath,
    entry: &NewEntry,
    content: Content<'_>,
    expect: Option<&Version>,
) -> Result<Outcome> {
    let caps = r.caps();
    // A new object on a store that enforces If-None-Match needs no look first: the write
    // itself fails if anything is there (the look cost three requests per new file).
    // Only where a live server showed it enforced (the GCS emulator ignores it).
    let enforced = expect.is_none()
        && r.atomic_put
        && r.use_etags
        && caps.write_with_if_not_exists
        && matches!(r.op.info().scheme(), "s3" | "azblob");
    // On WebDAV the move into place guards a new file (`Overwrite: F`).
    let guarded = expect.is_none() && commits_itself(r).is_some();
    let mut generation = None;
    if !enforced && !guarded {
        let looked = match expect.filter(|_| names_generations(r)) {
            Some(v) => generation_of(r, path, v).await?,
            None => r.check(path, expect).await?.map(Err).unwrap_or(Ok(None)),
        };
        match looked {
            Ok(g) => generation = g,
            Err(changed) => return Ok(changed),
        }
    }
    if expect.is_some() {
        versions::save(r, path).await?;
    }
    let key = path.as_str();
    let target = if r.atomic_put {
        key.to_string()
    } else {
        format!(
            "{STAGING}/{}",
            super::staging::temp_name(r.opts.staging_owner.as_deref())
        )
    };
    if !r.atomic_put {
        ensure_staging(r).await?;
    }
    if let Some(dav) = commits_itself(r) {
        let (meta, hash) = match super::dav_put::put_streamed(r, dav, &target, content, entry).await
        {
            Ok(put) => put,
            Err(e) => {
                // The staging folder may be gone: the next write makes it again.
                r.staging_ready.store(false, Ordering::Relaxed);
                return Err(e);
            }
        };
        let replacing = expect.is_some();
        return super::dav::commit(r, dav, &target, path, replacing, &meta, entry.size, hash).await;
    }
    let mut w = r.op.writer_with(&target);
    let multi = caps.write_can_multi;
    if multi {
        w = w
            .chunk(r.opts.part_size)
            .concurrent(r.opts.part_concurrency);
    }
    // Only where the metadata rides on the write itself: a file-like service sets it with a
    // request of its own, which some servers refuse (wsgidav answers PROPPATCH with 403).
    if caps.write_with_user_metadata && r.atomic_put {
        w = w.user_metadata(user_metadata(entry));
    }
    // Some services (the GCS emulator among them) refuse an object without a content type.
    if caps.write_with_content_type {
        w = w.content_type("application/octet-stream");
    }
    if let Some(g) = &generation {
        w = w.if_version_match(g);
    } else if r.atomic_put {
        // The service checks again as it writes: nothing slips in between check and write.
        match expect.and_then(etag_of) {
            Some(tag) if r.use_etags && caps.write_with_if_match => w = w.if_match(&tag),
            None if expect.is_none() && caps.write_with_if_not_exists => w = w.if_not_exists(true),
            _ => {}
        }
    }
    let mut writer = w.await.map_err(|e| r.fail("writing", key, e))?;
    // A service whose writer takes an object in one request only gets it whole: the content
    // is gathered first (a file's size in memory). WebDAV streams instead (`dav_put`).
    let content = if multi {
        content
    } else if entry.size > ONE_SHOT_MAX {
        let _ = writer.abort().await;
        return Err(Error::Refused(format!(
            "{}/{key}: {} takes a file in one request, and files over {} MiB are not sent \
             that way (they would be held in memory whole)",
            r.describe,
            r.op.info().scheme(),
            ONE_SHOT_MAX >> 20
        )));
    } else {
        gathered(content, entry.size).await?
    };
    let sent = match send(r, key, &mut writer, content, entry).await {
        Err(Failed::Changed) => {
            let _ = writer.abort().await;
            return Ok(Outcome::Changed(r.current(path).await?));
        }
        Err(Failed::Other(e)) => Err(e),
        Ok(hash) => Ok(hash),
    };
    let (meta, hash) = match sent {
        Ok(hash) => match writer.close().await {
            Ok(_) if entry.size == 0 && r.op.info().scheme() == "ftp" => {
                write_empty_ftp(r, &target)
                    .await
                    .map_err(|e| r.fail("writing", key, e))?;
                (opendal::MetadataBuilder::unknown().build(), hash)
            }
            Ok(meta) => (meta, hash),
            Err(e) if e.kind() == opendal::ErrorKind::ConditionNotMatch => {
                return Ok(Outcome::Changed(r.current(path).await?));
            }
            Err(e) => {
                // The staging folder may be gone: the next write makes it again.
                r.staging_ready.store(false, Ordering::Relaxed);
                return Err(r.fail("writing", key, e));
            }
        },
        Err(e) => {
            let _ = writer.abort().await;
            return Err(e);
        }
    };
    if !r.atomic_put {
        place(r, &target, key).await?;
    }
    let mut done = match meta.etag() {
        Some(_) if r.use_etags && r.atomic_put && caps.write_with_user_metadata => ReplicaEntry {
            mtime_ns: entry.mtime_ns,
            mode: entry.mode,
            ..entry_of(&meta_with_size(meta, entry.size), true, 1, key)
        },
        _ => match r.current(path).await? {
            Some(now) => now,
            None => {
                return Err(Error::remote(format!(
                    "{}/{key}: written, but not there when checked",
                    r.describe
                )))
            }
        },
    };
    // The hash of what was sent: an upload-only pass hashes no local file it sees changed,
    // so without it the next pass could not tell an edit of this file from no change.
    done.hash = Some(hash);
    Ok(Outcome::Done(Some(done)))
}

/// Whether an edit names the object generation it replaces: on GCS, where a write with a
/// precondition goes through a resumable session (which the transport hook resumes after an
/// interruption) and an unconditional one of several parts through the XML API's multipart
/// upload, which the emulator does not implement (docs/cloud.md, "GCS edits").
fn names_generations(r: &CloudReplica) -> bool {
    r.atomic_put
        && r.use_etags
        && r.op.info().scheme() == "gcs"
        && r.caps().write_with_if_version_match
}

/// The generation of the object at `path` while it is still `expect` (`None` when the
/// service gives none); the outcome to report when it is not. One stat, as the check it
/// replaces.
async fn generation_of(
    r: &CloudReplica,
    path: &RelPath,
    expect: &Version,
) -> Result<std::result::Result<Option<String>, Outcome>> {
    match r.op.stat(path.as_str()).await {
        Ok(meta) if !meta.is_dir() => {
            let now = r.entry_of(&meta, path.as_str());
            if &now.version != expect {
                return Ok(Err(Outcome::Changed(Some(now))));
            }
            Ok(Ok(meta.version().map(str::to_string)))
        }
        Ok(_) => Ok(Err(Outcome::Changed(r.current(path).await?))),
        Err(e) if e.kind() == opendal::ErrorKind::NotFound => {
            Ok(Err(Outcome::Changed(r.current(path).await?)))
        }
        Err(e) => Err(r.fail("stat", path.as_str(), e)),
    }
}

/// Why sending a file's content stopped.
enum Failed {
    /// The service refused the write's precondition: the object changed since it was looked at.
    Changed,
    Other(Error),
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        Failed::Other(e)
    }
}

/// The WebDAV requests of a commit, where this replica makes them itself (`replica/dav.rs`).
fn commits_itself(r: &CloudReplica) -> Option<&super::dav::DavAccess> {
    r.dav.as_ref().filter(|_| !r.atomic_put)
}

/// Makes the staging folder once per replica, where the service's writes make no folders
/// (WebDAV's PUT looked for its folder with a PROPFIND before every file).
async fn ensure_staging(r: &CloudReplica) -> Result<()> {
    if r.op.info().scheme() != "webdav" || r.staging_ready.load(Ordering::Relaxed) {
        return Ok(());
    }
    r.op.create_dir(&format!("{STAGING}/"))
        .await
        .map_err(|e| r.fail("making the folder", STAGING, e))?;
    r.staging_ready.store(true, Ordering::Relaxed);
    Ok(())
}

/// An empty file on FTP. OpenDAL's `Writer` passes no empty write on, and its FTP writer
/// opens no data connection before a first write, so no file would be made: the service's
/// own writer is given the empty write directly.
async fn write_empty_ftp(r: &CloudReplica, key: &str) -> opendal::Result<()> {
    use opendal::raw::oio::WriteDyn;
    use opendal::raw::{OpWrite, ServiceDyn};
    let mut w =
        r.op.service()
            .write_dyn(r.op.context(), key, OpWrite::default())?;
    w.write_dyn(opendal::Buffer::new()).await?;
    w.close_dyn().await.map(|_| ())
}

/// The close answer may not repeat the length: it is what was sent.
fn meta_with_size(meta: opendal::Metadata, size: u64) -> opendal::Metadata {
    let mut b = meta.into_builder();
    b.set_file(size);
    b.build()
}

/// Streams `content` into `writer`, checking it against the length and hash it was
/// announced with (the caller aborts the write when it does not match); returns its hash.
async fn send(
    r: &CloudReplica,
    key: &str,
    writer: &mut opendal::Writer,
    mut content: Content<'_>,
    entry: &NewEntry,
) -> std::result::Result<ContentHash, Failed> {
    let mut total = 0u64;
    let mut hasher = blake3::Hasher::new();
    if entry.size == 0 {
        // An empty file is one empty write: some services (FTP) make no file without one.
        writer
            .write(opendal::Buffer::new())
            .await
            .map_err(|e| write_failed(r, key, e))?;
    }
    while let Some(piece) = content.next().await {
        let piece = piece?;
        total += piece.len() as u64;
        hasher.update(&piece);
        r.own_transport_sent(piece.len() as u64).await;
        writer
            .write(buffer(piece))
            .await
            .map_err(|e| write_failed(r, key, e))?;
    }
    if total != entry.size {
        return Err(Failed::Other(Error::Refused(format!(
            "{}/{key}: the file changed while it was sent ({total} bytes instead of {})",
            r.describe, entry.size
        ))));
    }
    let got = ContentHash::from_bytes(*hasher.finalize().as_bytes());
    if entry.hash.is_some_and(|h| h != got) {
        return Err(Failed::Other(Error::Refused(format!(
            "{}/{key}: the content sent does not match its hash; not written",
            r.describe
        ))));
    }
    Ok(got)
}

/// A failed write of a piece; a refused precondition (GCS checks it when the session starts,
/// with the first part) is the object having changed.
fn write_failed(r: &CloudReplica, key: &str, e: opendal::Error) -> Failed {
    match e.kind() {
        opendal::ErrorKind::ConditionNotMatch => Failed::Changed,
        _ => Failed::Other(r.fail("writing", key, e)),
    }
}

/// The largest file sent to a service that takes a file in one request.
const ONE_SHOT_MAX: u64 = 1 << 30;

/// All of `content` as one piece.
async fn gathered(mut content: Content<'_>, size: u64) -> Result<Content<'static>> {
    let mut all = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(64 << 20));
    while let Some(piece) = content.next().await {
        all.extend_from_slice(&piece?);
    }
    Ok(cairn_engine::replica::content_of(bytes::Bytes::from(all)))
}

/// Renames a complete temporary into place on a file-like service. Where the service will
/// not rename over a file, the old one steps aside under a temporary name until the new one
/// is in place, and comes back if the new one cannot be put there: at no point is the path
/// left with neither (deleting the old one first lost it whenever the rename then failed).
pub(super) async fn place(r: &CloudReplica, temp: &str, key: &str) -> Result<()> {
    if let Some((parent, _)) = key.rsplit_once('/') {
        r.op.create_dir(&format!("{parent}/"))
            .await
            .map_err(|e| r.fail("making the folder", parent, e))?;
    }
    if r.op.rename(temp, key).await.is_ok() {
        return Ok(());
    }
    let aside = format!(
        "{STAGING}/{}",
        super::staging::temp_name(r.opts.staging_owner.as_deref())
    );
    if r.op.rename(key, &aside).await.is_err() {
        // Nothing there to move (or it will not move): one more try as is, and the old stays.
        return match r.op.rename(temp, key).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = r.op.delete(temp).await;
                Err(r.fail("placing the written file", key, e))
            }
        };
    }
    match r.op.rename(temp, key).await {
        Ok(()) => {
            // The old one was saved as a version already when versions are kept.
            let _ = r.op.delete(&aside).await;
            Ok(())
        }
        Err(e) => {
            let _ = r.op.delete(temp).await;
            let what = match r.op.rename(&aside, key).await {
                Ok(()) => "placing the written file (the previous one is back in place)".into(),
                Err(_) => format!(
                    "placing the written file (the previous one could not be put back: it is \
                     kept as {aside})"
                ),
            };
            Err(r.fail(&what, key, e))
        }
    }
}

pub(super) async fn delete(r: &CloudReplica, path: &RelPath, expect: &Version) -> Result<Outcome> {
    let Some(now) = r.current(path).await? else {
        return Ok(Outcome::Done(None));
    };
    if &now.version != expect {
        return Ok(Outcome::Changed(Some(now)));
    }
    if now.kind == EntryKind::Dir {
        match r.op.delete(&marker_key(r, path.as_str())).await {
            Ok(()) => {}
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => {}
            Err(e) => return Err(r.fail("deleting the folder", path.as_str(), e)),
        }
        return Ok(Outcome::Done(None));
    }
    versions::save(r, path).await?;
    r.op.delete(path.as_str())
        .await
        .map_err(|e| r.fail("deleting", path.as_str(), e))?;
    Ok(Outcome::Done(None))
}

pub(super) async fn rename(
    r: &CloudReplica,
    from: &RelPath,
    to: &RelPath,
    expect: &Version,
) -> Result<Outcome> {
    match r.current(from).await? {
        Some(now) if &now.version == expect => {}
        now => return Ok(Outcome::Changed(now)),
    }
    if let Some(there) = r.current(to).await? {
        return Ok(Outcome::Changed(Some(there)));
    }
    let is_dir = expect.0 == "dir";
    if r.caps().rename {
        if let Some(parent) = to.parent().filter(|p| !p.is_root()) {
            make_dir(r, &parent).await?;
        }
        r.op.rename(from.as_str(), to.as_str())
            .await
            .map_err(|e| r.fail("moving", from.as_str(), e))?;
    } else if is_dir {
        move_tree(r, from, to).await?;
    } else {
        copy_then_delete(r, from.as_str(), to.as_str()).await?;
    }
    Ok(Outcome::Done(r.current(to).await?))
}

/// An object store's folder move: every object under it, copied before it is deleted.
async fn move_tree(r: &CloudReplica, from: &RelPath, to: &RelPath) -> Result<()> {
    let prefix = format!("{}/", from.as_str());
    let entries =
        r.op.list_with(&prefix)
            .recursive(true)
            .await
            .map_err(|e| r.fail("listing", &prefix, e))?;
    let mut keys: Vec<String> = entries.iter().map(|e| e.path().to_string()).collect();
    let marker = marker_key(r, from.as_str());
    if !keys.iter().any(|k| k == &marker) {
        keys.push(marker.clone());
        make_dir_key(r, &marker).await?;
    }
    // Markers last: a folder is gone only when what was in it is.
    keys.sort_by_key(|k| (is_marker(r, k), std::cmp::Reverse(k.len())));
    for key in keys {
        let rest = &key[prefix.len().min(key.len())..];
        let dest = format!("{}/{rest}", to.as_str());
        if key.ends_with('/') {
            make_dir_key(r, &dest).await?;
            r.op.delete(&key)
                .await
                .map_err(|e| r.fail("deleting", &key, e))?;
        } else {
            copy_then_delete(r, &key, &dest).await?;
        }
    }
    Ok(())
}

async fn copy_then_delete(r: &CloudReplica, from: &str, to: &str) -> Result<()> {
    copy_object(r, from, to)
        .await
        .map_err(|e| r.fail("copying", from, e))?;
    r.op.delete(from)
        .await
        .map_err(|e| r.fail("deleting", from, e))
}

/// Copies object `from` to `to`: on the service where it can, else streamed down and up
/// again (FTP has neither copy nor rename).
pub(super) async fn copy_object(r: &CloudReplica, from: &str, to: &str) -> opendal::Result<()> {
    if r.caps().copy {
        return r.op.copy(from, to).await.map(|_| ());
    }
    let mut stream = r.op.reader(from).await?.into_bytes_stream(..).await?;
    let mut w = r.op.writer(to).await?;
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| {
            opendal::Error::new(opendal::ErrorKind::Unexpected, "reading to copy").set_source(e)
        })?;
        w.write(piece).await?;
    }
    w.close().await.map(|_| ())
}
