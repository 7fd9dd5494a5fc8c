//! A full destination is a final answer: [`FullIsFinalLayer`] sits under OpenDAL's retry layer
//! and marks an error whose cause is a full disk (ENOSPC), a file-size limit (EFBIG) or a
//! quota (EDQUOT) permanent, so the retry layer gives up at once.
//!
//! Why: OpenDAL calls every I/O error it has no kind for temporary (a mounted folder's EFBIG
//! among them), so its retry layer wrote into a full destination five more times with
//! backoff (a 2 MB file under a file-size limit took 49 s to fail), and then the task's pass
//! still failed. Only these three causes are changed; every other error keeps its status, so a
//! dropped connection or a timed-out mount is still retried as before. The alternative, no
//! retry layer for mounted folders, would have stopped retrying their temporary errors too.

use std::sync::Arc;

use opendal::raw::{
    oio, Layer, OpCopy, OpCreateDir, OpList, OpPresign, OpRead, OpRename, OpRestore, OpStat,
    OpWrite, RpCreateDir, RpPresign, RpRename, RpRestore, RpStat, Service, ServiceInfo, Servicer,
};
use opendal::{Buffer, BytesRange, Capability, Error, Metadata, OperationContext, Result};

/// Whether `e` comes from a destination that is full, over its quota, or will not grow the
/// file (a mounted folder's disk, an SFTP server's quota).
pub(crate) fn is_full(e: &Error) -> bool {
    use std::io::ErrorKind as K;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                K::StorageFull | K::FileTooLarge | K::QuotaExceeded
            ) {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

/// The I/O error behind a full destination, for a message that says it plainly.
pub(crate) fn full_cause(e: &Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>().is_some() {
            return Some(c.to_string());
        }
        cause = c.source();
    }
    None
}

/// `e`, permanent when the destination is full.
fn finalize(e: Error) -> Error {
    if is_full(&e) {
        e.set_permanent()
    } else {
        e
    }
}

/// Add it before the retry layer (layers added later wrap the ones added before).
#[derive(Debug, Default)]
pub(crate) struct FullIsFinalLayer;

impl Layer for FullIsFinalLayer {
    fn apply_service(&self, inner: Servicer) -> Servicer {
        Arc::new(FullIsFinal { inner })
    }
}

#[derive(Debug)]
struct FullIsFinal {
    inner: Servicer,
}

impl Service for FullIsFinal {
    type Reader = oio::Reader;
    type Writer = FinalWriter;
    type Lister = oio::Lister;
    type Deleter = oio::Deleter;
    type Copier = FinalCopier;
    type Composer = oio::Composer;

    fn info(&self) -> ServiceInfo {
        self.inner.info()
    }

    fn capability(&self) -> Capability {
        self.inner.capability()
    }

    async fn create_dir(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpCreateDir,
    ) -> Result<RpCreateDir> {
        self.inner
            .create_dir(ctx, path, args)
            .await
            .map_err(finalize)
    }

    async fn stat(&self, ctx: &OperationContext, path: &str, args: OpStat) -> Result<RpStat> {
        self.inner.stat(ctx, path, args).await
    }

    fn read(&self, ctx: &OperationContext, path: &str, args: OpRead) -> Result<Self::Reader> {
        self.inner.read(ctx, path, args)
    }

    fn write(&self, ctx: &OperationContext, path: &str, args: OpWrite) -> Result<Self::Writer> {
        self.inner
            .write(ctx, path, args)
            .map(FinalWriter)
            .map_err(finalize)
    }

    fn delete(&self, ctx: &OperationContext) -> Result<Self::Deleter> {
        self.inner.delete(ctx)
    }

    fn list(&self, ctx: &OperationContext, path: &str, args: OpList) -> Result<Self::Lister> {
        self.inner.list(ctx, path, args)
    }

    fn copy(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpCopy,
    ) -> Result<Self::Copier> {
        self.inner
            .copy(ctx, from, to, args)
            .map(FinalCopier)
            .map_err(finalize)
    }

    async fn rename(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpRename,
    ) -> Result<RpRename> {
        self.inner
            .rename(ctx, from, to, args)
            .await
            .map_err(finalize)
    }

    async fn restore(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpRestore,
    ) -> Result<RpRestore> {
        self.inner.restore(ctx, path, args).await
    }

    async fn presign(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpPresign,
    ) -> Result<RpPresign> {
        self.inner.presign(ctx, path, args).await
    }
}

struct FinalWriter(oio::Writer);

impl oio::Write for FinalWriter {
    async fn write(&mut self, bs: Buffer) -> Result<()> {
        self.0.write(bs).await.map_err(finalize)
    }

    async fn copy_from(&mut self, path: &str, args: OpRead, range: BytesRange) -> Result<()> {
        self.0.copy_from(path, args, range).await.map_err(finalize)
    }

    async fn close(&mut self) -> Result<Metadata> {
        self.0.close().await.map_err(finalize)
    }

    async fn abort(&mut self) -> Result<()> {
        self.0.abort().await
    }
}

struct FinalCopier(oio::Copier);

impl oio::Copy for FinalCopier {
    async fn next(&mut self) -> Result<Option<usize>> {
        self.0.next().await.map_err(finalize)
    }

    async fn close(&mut self) -> Result<Metadata> {
        self.0.close().await.map_err(finalize)
    }

    async fn abort(&mut self) -> Result<()> {
        self.0.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_destination_is_told_from_other_failures() {
        let full = std::io::Error::from(std::io::ErrorKind::FileTooLarge);
        let e = Error::new(opendal::ErrorKind::Unexpected, "file too large")
            .set_source(full)
            .set_temporary();
        assert!(is_full(&e));
        let e = finalize(e);
        assert!(!e.is_temporary() && e.is_permanent(), "{e:?}");
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let e = Error::new(opendal::ErrorKind::Unexpected, "reset")
            .set_source(reset)
            .set_temporary();
        assert!(!is_full(&e));
        assert!(finalize(e).is_temporary(), "other errors keep their status");
    }
}
